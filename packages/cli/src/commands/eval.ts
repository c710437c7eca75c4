// `int21 eval <model> --data <text> [--ctx --stride --teacher <model>]`: NLL, perplexity, KL to a teacher.
import { existsSync, readFileSync } from "node:fs";
import { evaluateLlamaCppChunks, evaluateNll } from "@int21/model-llama";
import { Command, Option } from "commander";
import { type CliIo, CliError, EXIT, UsageError } from "../cli-io";
import { deviceOption, runProgram, threadsOption, withBackend, writeJson } from "../command";
import { attachAdapterDir, openModel, openTokenizer } from "../model-loading";
import { intIn } from "../options";
import { progressBar } from "../progress";

/** The options of `int21 eval`. */
export function evalProgram(): Command {
  return new Command("eval")
    .description(
      "negative log-likelihood and perplexity of a model on a text (and KL divergence to a teacher)",
    )
    .argument("<model>", "llama2.c .bin, Hugging Face directory or id, or int21 checkpoint")
    .requiredOption("--data <text>", "text file to score (`<|endoftext|>` separators become newlines)")
    .addOption(
      new Option("--ctx <n>", "window length in tokens (default: the model's seqLen)").argParser(intIn(2)),
    )
    .addOption(
      new Option("--stride <n>", "tokens between window starts (default: ctx, no overlap)").argParser(
        intIn(1),
      ),
    )
    .addOption(
      new Option("--max-tokens <n>", "score only the first n tokens of the text").argParser(intIn(2)),
    )
    .option(
      "--llama-cpp",
      "score as llama.cpp's llama-perplexity does: chunks of --ctx tokens, BOS over each chunk's first token (when the tokenizer adds BOS), the second half of each chunk scored",
      false,
    )
    .option("--teacher <model>", "also report KL(teacher ‖ model) and the teacher's NLL on the same tokens")
    .option("--adapter <dir>", "a PEFT LoRA adapter directory to apply first")
    .option("--tokenizer <file>", "tokenizer (default: found beside the model)")
    .option("--bos", "start the text with BOS (default: as the tokenizer's configuration says)")
    .option("--no-bos", "do not start the text with BOS")
    .addOption(threadsOption())
    .addOption(deviceOption())
    .option("--json", "print the result as JSON", false)
    .option("--quiet", "no progress bars", false);
}

interface EvalOpts {
  data: string;
  ctx?: number;
  stride?: number;
  maxTokens?: number;
  teacher?: string;
  llamaCpp: boolean;
  adapter?: string;
  tokenizer?: string;
  bos?: boolean;
  threads?: number;
  json: boolean;
  quiet: boolean;
}

/** `int21 eval`: prints mean NLL (nats per token), perplexity, tokens/s and, with `--teacher`, the KL. */
export function evalCommand(argv: readonly string[], io: CliIo): Promise<number> {
  return runProgram(evalProgram(), argv, io, async ([model], opts) => {
    const o = opts as unknown as EvalOpts;
    if (!existsSync(o.data)) throw new CliError(`--data ${o.data}: no such file`);
    return withBackend(o.threads, async (backend) => {
      const m = await openModel(model as string, io, { backend, quiet: o.quiet });
      if (o.adapter !== undefined) await attachAdapterDir(m.weights, o.adapter, m.lora);
      const c = m.weights.config;
      const ctx = o.ctx ?? c.seqLen;
      if (ctx > c.seqLen)
        throw new UsageError(`--ctx ${ctx} is longer than the model's context (seqLen ${c.seqLen})`);
      const stride = o.stride ?? ctx;
      if (stride > ctx) throw new UsageError(`--stride ${stride} is larger than --ctx ${ctx}`);
      const tok = await openTokenizer(m.path, c.vocabSize, o.tokenizer);
      // BOS as the tokenizer's own rule says (HF add_bos_token / post-processor, GGUF add_bos_token,
      // llama2.c always), like generate and llama.cpp's llama-perplexity; --bos / --no-bos force it
      const bos = o.bos ?? tok.addBos ?? true;
      let tokens = tok.encode(readFileSync(o.data, "utf8").replace(/<\|endoftext\|>/g, "\n"), { bos });
      if (o.maxTokens !== undefined) tokens = tokens.slice(0, o.maxTokens);
      if (tokens.length < 2) throw new CliError(`--data ${o.data}: fewer than 2 tokens to score`);
      const bar = progressBar(io, "eval", { quiet: o.quiet });
      const t0 = performance.now();
      let result: Record<string, unknown>;
      if (o.llamaCpp && o.teacher !== undefined)
        throw new UsageError("--llama-cpp and --teacher cannot be combined");
      if (o.llamaCpp && o.stride !== undefined)
        throw new UsageError("--llama-cpp scores chunks of --ctx tokens; --stride does not apply");
      if (o.llamaCpp) {
        const r = evaluateLlamaCppChunks(m.weights, tokens, {
          ctx,
          ...(bos ? { bosId: tok.bosId } : {}),
          onProgress: (d, n) => bar.update(d, n),
        });
        result = { ...r, protocol: "llama-perplexity" };
      } else if (o.teacher !== undefined) {
        const t = await openModel(o.teacher, io, { backend, quiet: o.quiet, what: "teacher" });
        let r: ReturnType<typeof evaluateNll>;
        try {
          r = evaluateNll(m.weights, tokens, {
            ctx,
            stride,
            teacher: t.weights,
            onProgress: (d, n) => bar.update(d, n),
          });
        } catch (e) {
          throw new CliError(`--teacher ${o.teacher}: ${(e as Error).message}`);
        }
        result = { ...r };
      } else {
        const r = evaluateNll(m.weights, tokens, { ctx, stride, onProgress: (d, n) => bar.update(d, n) });
        result = { ...r };
      }
      bar.finish();
      const summary = {
        model: m.path,
        data: o.data,
        ctx,
        stride,
        bos,
        ...result,
        seconds: (performance.now() - t0) / 1000,
      };
      if (o.json) writeJson(io, summary);
      else {
        const s = summary as typeof summary & {
          meanNll: number;
          perplexity: number;
          tokens: number;
          meanKl?: number;
          teacherMeanNll?: number;
        };
        io.stdout.write(
          `${m.path} on ${o.data}: ${s.tokens} tokens scored (ctx ${ctx}, stride ${stride})\n` +
            `mean NLL ${s.meanNll.toFixed(4)} nats/token, perplexity ${s.perplexity.toFixed(3)}\n`,
        );
        if (s.meanKl !== undefined)
          io.stdout.write(
            `KL(teacher ‖ model) ${s.meanKl.toFixed(4)} nats/token; teacher NLL ${s.teacherMeanNll?.toFixed(4)} (perplexity ${Math.exp(s.teacherMeanNll ?? 0).toFixed(3)})\n`,
          );
      }
      return EXIT.ok;
    });
  });
}
