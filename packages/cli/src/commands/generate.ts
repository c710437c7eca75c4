// `int21 generate <model> --prompt "..." [--prompt-ids --chat --no-bos --tokenizer --adapter --temperature
// --top-p --seed --steps --json]`
import { type Tokenizer, generate as generateText } from "@int21/model-llama";
import { HfTokenizer, renderChatTemplate } from "@int21/loaders";
import { existsSync, readFileSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { Command, InvalidArgumentError, Option } from "commander";
import { type CliIo, CliError, EXIT } from "../cli-io";
import {
  decodeActivationsOption,
  deviceOption,
  runProgram,
  threadsOption,
  withBackend,
  writeJson,
} from "../command";
import { attachAdapterDir, openModel, openTokenizer } from "../model-loading";
import { intIn, numberIn } from "../options";
import { backendLabel } from "../relaxed-simd";

/** The options of `int21 generate`. */
export function generateProgram(): Command {
  return new Command("generate")
    .description(
      "generate text: streams the prompt and the continuation to stdout (as llama2.c prints it), statistics to stderr",
    )
    .argument("<model>", "llama2.c .bin, Hugging Face directory or id, or int21 checkpoint")
    .option("--prompt <text>", "text to continue", "")
    .addOption(
      new Option(
        "--prompt-ids <ids>",
        "token ids to continue instead of text, comma-separated (used as given: no BOS added)",
      )
        .argParser(idList)
        .conflicts(["prompt", "chat"]),
    )
    .option(
      "--chat",
      "apply the model's chat template to --prompt as one user message (with the assistant's turn opened)",
      false,
    )
    .option("--bos", "start the prompt with BOS (default: as the tokenizer's configuration says)")
    .option("--no-bos", "do not start the prompt with BOS")
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
    .addOption(deviceOption())
    .addOption(decodeActivationsOption())
    .option(
      "--json",
      "print one JSON document (text, promptIds, generatedIds and statistics) instead of streaming",
      false,
    )
    .option("--quiet", "no progress bars or statistics", false);
}

/** Parses `--prompt-ids`: comma-separated non-negative integers. */
function idList(v: string): number[] {
  const parts = v.split(",").map((s) => s.trim());
  if (parts.length === 0 || parts.some((s) => !/^\d+$/.test(s) || !Number.isSafeInteger(Number(s))))
    throw new InvalidArgumentError(`expected comma-separated token ids (integers ≥ 0), got "${v}"`);
  return parts.map(Number);
}

interface GenerateOpts {
  prompt: string;
  promptIds?: number[];
  chat: boolean;
  bos?: boolean;
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
      const { ids: promptIds, rendered } = promptTokens(tok, o, m.path);
      if (!o.json) io.stdout.write(promptText(tok, promptIds));
      let r: ReturnType<typeof generateText>;
      try {
        r = generateText(m.weights, tok, {
          promptIds,
          stopIds: generationStopIds(m.path, tok.vocabSize),
          steps: o.steps,
          temperature: o.temperature,
          topP: o.topP,
          ...(o.seed !== undefined ? { seed: o.seed } : {}),
          ...(o.json ? {} : { onToken: (piece: string) => io.stdout.write(piece) }),
        });
      } catch (e) {
        throw new CliError((e as Error).message);
      }
      const withBos = promptIds[0] === tok.bosId;
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
          ...(rendered !== undefined ? { chatPrompt: rendered } : {}),
          bos: withBos,
          promptIds: r.tokens.slice(0, r.promptTokens),
          generatedIds: r.tokens.slice(r.promptTokens),
          tokens: r.tokens,
          ...stats,
        });
      else {
        io.stdout.write("\n");
        if (!o.quiet)
          io.stderr.write(
            `${r.promptTokens} prompt tokens (${withBos ? "with" : "no"} BOS), ${r.generatedTokens} generated, stop: ${r.stop}; ` +
              `prefill ${r.prefillTokensPerSec.toFixed(0)} tok/s, decode ${r.decodeTokensPerSec.toFixed(1)} tok/s; kernels: ${backendLabel(backend)}\n`,
          );
      }
      return EXIT.ok;
    });
  });
}

/**
 * The prompt's token ids: `--prompt-ids` as given; `--chat`: the chat template rendered around the
 * prompt and encoded without further special tokens (the template holds them, as transformers'
 * `apply_chat_template` does); else the text with BOS as `--bos` / `--no-bos` or the tokenizer says.
 */
function promptTokens(
  tok: Tokenizer,
  o: GenerateOpts,
  modelPath: string,
): { ids: number[]; rendered?: string } {
  if (o.promptIds !== undefined) {
    o.promptIds.forEach((id, i) => {
      if (id >= tok.vocabSize)
        throw new CliError(`--prompt-ids: prompt id ${id} (position ${i}) is outside [0, ${tok.vocabSize})`);
    });
    return { ids: o.promptIds };
  }
  if (o.chat) {
    if (tok.chatTemplate === undefined)
      throw new CliError(
        `${modelPath}: the tokenizer has no chat template (chat_template.jinja or tokenizer_config.json's chat_template); drop --chat`,
      );
    let rendered: string;
    try {
      rendered = renderChatTemplate(tok.chatTemplate, [{ role: "user", content: o.prompt }], {
        tokens: tok instanceof HfTokenizer ? tok.templateTokens : {},
        source: `${modelPath}: chat template`,
      });
    } catch (e) {
      throw new CliError((e as Error).message);
    }
    const ids = tok.encode(rendered);
    // the template decides BOS (as in transformers); --bos / --no-bos still force it either way
    if (o.bos === true && ids[0] !== tok.bosId) ids.unshift(tok.bosId);
    if (o.bos === false && ids[0] === tok.bosId) ids.shift();
    return { ids, rendered };
  }
  try {
    return { ids: tok.encode(o.prompt, { bos: o.bos ?? tok.addBos ?? true }) };
  } catch (e) {
    throw new CliError((e as Error).message);
  }
}

/** The prompt as generation prints it: the text of its tokens after a leading BOS. */
function promptText(tok: Tokenizer, ids: readonly number[]): string {
  const d = tok.streamDecoder();
  let s = "";
  for (let i = ids[0] === tok.bosId ? 1 : 0; i < ids.length; i++)
    s += d.push(i > 0 ? ids[i - 1] : -1, ids[i]);
  return s + d.flush();
}

/**
 * The ids of `generation_config.json`'s `eos_token_id` (a number or a list, as transformers' `generate`
 * stops on each) in the model's directory or beside the model file; none when there is no such file.
 */
function generationStopIds(modelPath: string, vocabSize: number): number[] {
  const dir = statSync(modelPath).isDirectory() ? modelPath : dirname(modelPath);
  const file = join(dir, "generation_config.json");
  if (!existsSync(file)) return [];
  let cfg: unknown;
  try {
    cfg = JSON.parse(readFileSync(file, "utf8"));
  } catch (e) {
    throw new CliError(`${file}: cannot read generation_config.json: ${(e as Error).message}`);
  }
  const eos = (cfg as { eos_token_id?: unknown } | null)?.eos_token_id;
  if (eos === undefined || eos === null) return [];
  const ids = Array.isArray(eos) ? eos : [eos];
  for (const id of ids)
    if (typeof id !== "number" || !Number.isInteger(id) || id < 0 || id >= vocabSize)
      throw new CliError(
        `${file}: eos_token_id ${JSON.stringify(id)} is not a token id (the tokenizer has ${vocabSize})`,
      );
  return ids as number[];
}
