// `int21 generate <model> --prompt "..." [--tokenizer --adapter --temperature --top-p --seed --steps]`
import { generate as generateText } from "@int21/model-llama";
import { Command, Option } from "commander";
import { type CliIo, CliError, EXIT } from "../cli-io";
import { runProgram, threadsOption, withBackend, writeJson } from "../command";
import { attachAdapterDir, openModel, openTokenizer } from "../model-loading";
import { intIn, numberIn } from "../options";

/** The options of `int21 generate`. */
export function generateProgram(): Command {
  return new Command("generate")
    .description(
      "generate text: streams the prompt and the continuation to stdout (as llama2.c prints it), statistics to stderr",
    )
    .argument("<model>", "llama2.c .bin, Hugging Face directory or id, or int21 checkpoint")
    .option("--prompt <text>", "text to continue", "")
    .option(
      "--tokenizer <file>",
      "llama2.c tokenizer.bin or Hugging Face tokenizer.json (default: found beside the model)",
    )
    .option("--adapter <dir...>", "PEFT LoRA adapter directories to apply (stacked in order)")
    .addOption(new Option("--temperature <t>", "0 = greedy").argParser(numberIn(0, 100)).default(1))
    .addOption(
      new Option("--top-p <p>", "nucleus sampling mass (≥ 1 turns it off)")
        .argParser(numberIn(0, 1))
        .default(0.9),
    )
    .addOption(
      new Option("--seed <n>", "sampling seed (default: the time, as llama2.c)").argParser(
        intIn(1, 2 ** 32 - 1),
      ),
    )
    .addOption(
      new Option("--steps <n>", "positions to run, prompt included (0 = the model's seqLen)")
        .argParser(intIn(0))
        .default(256),
    )
    .addOption(threadsOption())
    .option("--json", "print one JSON document (text and statistics) instead of streaming", false)
    .option("--quiet", "no progress bars or statistics", false);
}

interface GenerateOpts {
  prompt: string;
  tokenizer?: string;
  adapter?: string[];
  temperature: number;
  topP: number;
  seed?: number;
  steps: number;
  threads?: number;
  json: boolean;
  quiet: boolean;
}

/** `int21 generate`. */
export function generate(argv: readonly string[], io: CliIo): Promise<number> {
  return runProgram(generateProgram(), argv, io, async ([model], opts) => {
    const o = opts as unknown as GenerateOpts;
    return withBackend(o.threads, async (backend) => {
      const m = await openModel(model as string, io, { backend, quiet: o.quiet });
      let lora = m.lora;
      for (const dir of o.adapter ?? []) lora = await attachAdapterDir(m.weights, dir, lora);
      const c = m.weights.config;
      const tok = await openTokenizer(m.path, c.vocabSize, o.tokenizer);
      const promptText = o.prompt === "" ? "" : tok.decodeAll(tok.encode(o.prompt, { bos: true }).slice(1));
      if (!o.json) io.stdout.write(promptText);
      let r: ReturnType<typeof generateText>;
      try {
        r = generateText(m.weights, tok, {
          prompt: o.prompt,
          steps: o.steps,
          temperature: o.temperature,
          topP: o.topP,
          ...(o.seed !== undefined ? { seed: o.seed } : {}),
          ...(o.json ? {} : { onToken: (piece: string) => io.stdout.write(piece) }),
        });
      } catch (e) {
        throw new CliError((e as Error).message);
      }
      const stats = {
        promptTokens: r.promptTokens,
        generatedTokens: r.generatedTokens,
        stop: r.stop,
        prefillTokensPerSec: r.prefillTokensPerSec,
        decodeTokensPerSec: r.decodeTokensPerSec,
      };
      if (o.json)
        writeJson(io, {
          model: m.path,
          text: r.text,
          generatedText: r.generatedText,
          tokens: r.tokens,
          ...stats,
        });
      else {
        io.stdout.write("\n");
        if (!o.quiet)
          io.stderr.write(
            `${r.promptTokens} prompt tokens (with BOS), ${r.generatedTokens} generated, stop: ${r.stop}; ` +
              `prefill ${r.prefillTokensPerSec.toFixed(0)} tok/s, decode ${r.decodeTokensPerSec.toFixed(1)} tok/s\n`,
          );
      }
      return EXIT.ok;
    });
  });
}
