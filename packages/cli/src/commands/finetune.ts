// `int21 finetune <model> --data <alpaca.json|text> [--rank --targets --steps --lr --seq] -o <adapter dir>`
import { existsSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { writeFileAtomic } from "@int21/io";
import {
  ALPACA_PROMPT_NO_INPUT,
  ALPACA_PROMPT_WITH_INPUT,
  alpacaPrompt,
  alpacaTemplateText,
  LLAMA_TARGETS,
  lossChartSvg,
} from "@int21/lora";
import { isPackedEmbedding, finetune as trainAdapter } from "@int21/model-llama";
import { type FormatBits, makeFormat } from "@int21/quant-kernels";
import { Command, Option } from "commander";
import { type CliIo, CliError, EXIT, UsageError } from "../cli-io";
import { runProgram, withBackend, writeJson } from "../command";
import { openModel, openTokenizer } from "../model-loading";
import { intIn, intOneOf, nameList, numberIn } from "../options";
import { progressBar } from "../progress";
import { describeTrainingData, parseMaxDrop, readTrainingData, type TrainingData } from "../training-data";
import {
  contentHash,
  divergenceOf,
  resumedDespiteNote,
  addTrainingRunOptions,
  runsHelp,
  trainingFailure,
} from "../training-runs";
import { peftAdapterSink } from "@int21/loaders";

/** What `int21 finetune --help` says after the options: the data formats, the prompt template, runs. */
function finetuneHelp(): string {
  return `
Data:
  A .json/.jsonl file is Alpaca records {"instruction", "input" (optional), "output"}; each becomes the
  prompt below followed by the output and EOS, and only the output (and EOS) is trained on. A record
  longer than --seq tokens is cut; one whose prompt alone fills --seq is dropped. Both are counted and
  reported ("kept K of N records …"); --max-drop makes the run fail when too many are dropped. Any other
  file is plain text: documents split on <|endoftext|>, each with BOS, cut into windows of --seq tokens.

Alpaca prompt template (an adapter trained on Alpaca data expects exactly this before its answer; the
output directory's README.md repeats it):
${alpacaTemplateText("  ")}${runsHelp("<output>/trainer/trainer-state.safetensors")}`;
}

/** The options of `int21 finetune`. */
export function finetuneProgram(): Command {
  const cmd = new Command("finetune")
    .description("EMEF: train a LoRA adapter on a frozen (packed 2–8 bit or float) model; resumable")
    .argument("<model>", "int21 checkpoint (packed), llama2.c .bin or Hugging Face directory/id")
    .requiredOption(
      "--data <file>",
      "Alpaca JSON (.json/.jsonl: instruction, input, output), chat JSON/JSONL ({messages: [{role, content}]}: the model's chat template, assistant turns trained) or plain text",
    )
    .requiredOption(
      "-o, --output <dir>",
      "adapter directory (PEFT format; trainer checkpoints in <dir>/trainer)",
    )
    .addOption(new Option("--rank <r>", "LoRA rank").argParser(intIn(1, 4096)).default(8))
    .addOption(
      new Option("--alpha <a>", "LoRA alpha (scaling = alpha / rank; default 2 × rank)").argParser(
        numberIn(0),
      ),
    )
    .addOption(
      new Option(
        "--targets <names>",
        "comma-separated projections (q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj, or all-linear)",
      )
        .argParser(nameList)
        .default(["q_proj", "v_proj"]),
    )
    .addOption(new Option("--steps <n>", "optimizer steps").argParser(intIn(1)).default(100))
    .addOption(
      new Option("--lr <lr>", "peak learning rate (cosine schedule, warmup)")
        .argParser(numberIn(0))
        .default(2e-3),
    )
    .addOption(new Option("--seq <n>", "tokens per example (default: min(256, seqLen))").argParser(intIn(2)))
    .addOption(new Option("--batch <n>", "examples per step").argParser(intIn(1)).default(4))
    .addOption(
      new Option("--held-out <n>", "held-out examples (a count, or a fraction < 1)")
        .argParser(numberIn(0))
        .default(0.05),
    )
    .addOption(
      new Option("--eval-every <n>", "held-out evaluation period in steps (default: at the end)").argParser(
        intIn(1),
      ),
    )
    .addOption(
      new Option("--checkpoint-every <n>", "trainer checkpoint period in steps")
        .argParser(intIn(1))
        .default(25),
    )
    .addOption(
      new Option(
        "--bits <n>",
        "quantize a float base to this many bits (RTN, group 64) before training",
      ).argParser(intOneOf([2, 3, 4, 8] as const)),
    )
    .addOption(
      new Option(
        "--embedding-bits <n>",
        "with --bits: also pack the frozen token embedding (and a tied classifier) at this many bits (RTN, group 64); default float32",
      ).argParser(intOneOf([4, 8] as const)),
    )
    .addOption(
      new Option("--seed <n>", "seed of the batch order and adapter init").argParser(intIn(0)).default(0),
    )
    .addOption(
      new Option(
        "--max-drop <fraction|count>",
        "fail when more Alpaca records than this are dropped (longer prompt than --seq): a fraction < 1 or a count (default: no limit; always reported)",
      ).argParser(parseMaxDrop),
    )
    .option("--fresh", "delete an existing trainer checkpoint in the output directory and start over", false);
  return addTrainingRunOptions(cmd, "tokenizer (default: found beside the model)").addHelpText(
    "after",
    finetuneHelp(),
  );
}

interface FinetuneOpts {
  data: string;
  output: string;
  rank: number;
  alpha?: number;
  targets: string[];
  steps: number;
  lr: number;
  seq?: number;
  batch: number;
  heldOut: number;
  evalEvery?: number;
  checkpointEvery: number;
  bits?: 2 | 3 | 4 | 8;
  embeddingBits?: 4 | 8;
  seed: number;
  maxDrop?: number;
  fresh: boolean;
  resume: boolean;
  divergeFactor: number;
  divergeSteps: number;
  tokenizer?: string;
  threads?: number;
  maxResidentMb?: number;
  json: boolean;
  quiet: boolean;
}

/** The files a finished `int21 finetune` leaves in its output directory. */
export const FINETUNE_OUTPUTS = [
  "adapter_config.json",
  "adapter_model.safetensors",
  "loss.svg",
  "history.json",
  "README.md",
] as const;

/** A bash `$'…'` string of `s` (newlines as `\n`). */
function shellQuote(s: string): string {
  return `$'${s.replace(/\\/g, "\\\\").replace(/'/g, "\\'").replace(/\n/g, "\\n")}'`;
}

/** The README.md written into the adapter directory: what the adapter is and how to prompt it. */
export function adapterReadme(o: {
  output: string;
  base: string;
  baseHash: string;
  bits?: number;
  /** The token embedding's bits when `--embedding-bits` packed it too. */
  embeddingBits?: number;
  data: string;
  dataHash: string;
  kind: TrainingData["kind"];
  rank: number;
  alpha: number;
  targets: readonly string[];
  steps: number;
  seq: number;
}): string {
  const gen = `int21 generate ${o.base} --adapter ${o.output}`;
  const prompting =
    o.kind === "alpaca"
      ? `It was trained on Alpaca records: prompt it with the Alpaca template, filled in, and it answers after
"### Response:" and a newline (it was trained to end the answer with EOS). With an input:

\`\`\`text
${ALPACA_PROMPT_WITH_INPUT}\`\`\`

Without one (the record's "input" empty or absent):

\`\`\`text
${ALPACA_PROMPT_NO_INPUT}\`\`\`

For example (bash's \`$'…'\` turns each \`\\n\` into a newline):

\`\`\`sh
${gen} --temperature 0 \\
  --prompt ${shellQuote(alpacaPrompt({ instruction: "Name three colours.", output: "" }))}
\`\`\`
`
      : `It was trained on plain text (windows of ${o.seq} tokens, each document starting with BOS): prompt it
with the beginning of a text like those it was trained on.

\`\`\`sh
${gen} --prompt "Once upon a time"
\`\`\`
`;
  return `# LoRA adapter (int21 finetune)

A PEFT LoRA adapter (\`adapter_config.json\`, \`adapter_model.safetensors\`) for the base model
\`${o.base}\` (${o.baseHash})${o.bits !== undefined ? `, trained on it quantized to ${o.bits} bits (RTN, group 64${o.embeddingBits !== undefined ? `; token embedding ${o.embeddingBits} bits` : ""}) — load the same base with the same \`--bits\`${o.embeddingBits !== undefined ? " and `--embedding-bits`" : ""}, or a checkpoint quantized that way` : ""}.
Rank ${o.rank}, alpha ${o.alpha}, on ${o.targets.join(", ")}; ${o.steps} step${o.steps === 1 ? "" : "s"} on \`${o.data}\` (${o.dataHash}).

## Prompting

${prompting}
\`loss.svg\` and \`history.json\` hold the training (and held-out) loss; \`trainer/\` the checkpoint a
rerun of the same command continues from (or reports finished).
`;
}

/**
 * \`int21 finetune\`: trains, saves the adapter (PEFT \`adapter_config.json\` + \`adapter_model.safetensors\`),
 * \`loss.svg\`, \`history.json\` and a README.md (how to prompt it) into the output directory. Rerunning the
 * same command continues from the last trainer checkpoint, or reports a finished run and writes nothing;
 * a checkpoint of a different run stops it with the list of differences (\`--fresh\` / \`--resume\`).
 */
export function finetune(argv: readonly string[], io: CliIo): Promise<number> {
  return runProgram(finetuneProgram(), argv, io, async ([model], opts) => {
    const o = opts as unknown as FinetuneOpts;
    if (!existsSync(o.data)) throw new CliError(`--data ${o.data}: no such file`);
    if (o.embeddingBits !== undefined && o.bits === undefined)
      throw new UsageError(
        "--embedding-bits needs --bits (it packs the embedding of a base quantized on load)",
      );
    return withBackend(
      o.threads,
      async (backend) => {
        // --bits and --embedding-bits: RTN, asymmetric, group 64, f16 scales
        const g64 = (bits: FormatBits) =>
          makeFormat({ bits, groupSize: 64, symmetric: false, scaleDtype: "f16" });
        const quantize =
          o.bits !== undefined
            ? {
                format: g64(o.bits),
                quantizer: "rtn", // the registered quantizer; loading has no calibration data for GPTQ
                ...(o.embeddingBits !== undefined ? { embedding: g64(o.embeddingBits) } : {}),
              }
            : undefined;
        const m = await openModel(model as string, io, {
          backend,
          quiet: o.quiet,
          ...(quantize ? { quantize } : {}),
        }).catch((e: Error) => {
          if (quantize && /takes no quantize option/.test(e.message))
            throw new UsageError(
              "--bits applies to float models only; this int21 checkpoint is already packed",
            );
          throw e;
        });
        const c = m.weights.config;
        const seq = o.seq ?? Math.min(256, c.seqLen);
        if (seq > c.seqLen)
          throw new UsageError(`--seq ${seq} is longer than the model's context (seqLen ${c.seqLen})`);
        const tok = await openTokenizer(m.path, c.vocabSize, o.tokenizer);
        const data = readTrainingData(o.data, tok, seq, o.heldOut, o.seed, {
          ...(o.maxDrop !== undefined ? { maxDrop: o.maxDrop } : {}),
        });
        const dataLine = describeTrainingData(data);
        io.stderr.write(`--data ${o.data}: ${dataLine}\n`);
        await mkdir(o.output, { recursive: true });
        const trainerDir = join(o.output, "trainer");
        if (o.fresh) {
          const { rm } = await import("node:fs/promises");
          await rm(trainerDir, { recursive: true, force: true });
        }
        const name = m.lora?.adapterNames().includes("default") ? "emef" : "default";
        const targets = o.targets.includes("all-linear") ? [...LLAMA_TARGETS] : o.targets;
        const alpha = o.alpha ?? 2 * o.rank;
        const baseHash = await contentHash(m.path, "model");
        const dataHash = await contentHash(o.data, "--data");
        const bar = progressBar(io, "finetune", { quiet: o.quiet });
        let res: Awaited<ReturnType<typeof trainAdapter>>;
        try {
          res = await trainAdapter(m.weights, data, {
            lora: { name, targetModules: targets, r: o.rank, alpha, seed: o.seed, baseModel: m.path },
            steps: o.steps,
            lr: o.lr,
            schedule: { lr: o.lr, warmupSteps: Math.min(10, Math.floor(o.steps / 10)), kind: "cosine" },
            batchSize: o.batch,
            seed: o.seed,
            ...(o.evalEvery !== undefined ? { evalEvery: o.evalEvery } : {}),
            checkpointDir: trainerDir,
            checkpointEvery: o.checkpointEvery,
            adapterSink: peftAdapterSink(o.output, m.weights),
            ...(m.lora ? { existing: m.lora } : {}),
            identity: {
              model: baseHash,
              bits: o.bits ?? null,
              ...(o.embeddingBits !== undefined ? { embeddingBits: o.embeddingBits } : {}),
              data: dataHash,
              dataFormat: data.kind,
              seq,
              heldOut: o.heldOut,
            },
            forceResume: o.resume,
            onResume: (step, diffs) => {
              if (diffs.length > 0) io.stderr.write(resumedDespiteNote(`${trainerDir}/`, step, diffs));
            },
            divergence: divergenceOf(o),
            onProgress: (p) =>
              bar.update(
                p.step,
                p.totalSteps,
                `loss ${p.skipped ? "skipped" : p.loss.toFixed(4)}${p.evalLoss !== undefined ? ` held-out ${p.evalLoss.toFixed(4)}` : ""}`,
              ),
          });
        } catch (e) {
          bar.finish();
          throw trainingFailure(e, `${trainerDir}/`);
        }
        bar.finish();
        const outputs = FINETUNE_OUTPUTS.map((f) => join(o.output, f));
        if (res.alreadyFinished && outputs.every((f) => existsSync(f))) {
          if (o.json)
            writeJson(io, {
              output: o.output,
              alreadyFinished: true,
              steps: res.steps,
              outputs: [...FINETUNE_OUTPUTS],
            });
          else
            io.stdout.write(
              `this run is already finished (${res.steps} of ${o.steps} steps; checkpoint ${trainerDir}/); nothing was trained or written.\n` +
                `its outputs are in ${o.output}/: ${FINETUNE_OUTPUTS.join(", ")}\n` +
                `(--fresh trains it again from the start; change a setting and add --resume to continue it)\n`,
            );
          return EXIT.ok;
        }
        await writeFileAtomic(
          join(o.output, "loss.svg"),
          lossChartSvg(res.history, `EMEF fine-tuning (${res.steps} steps)`),
        );
        await writeFileAtomic(join(o.output, "history.json"), `${JSON.stringify(res.history)}\n`);
        await writeFileAtomic(
          join(o.output, "README.md"),
          adapterReadme({
            output: o.output,
            base: m.path,
            baseHash,
            ...(o.bits !== undefined ? { bits: o.bits } : {}),
            ...(o.embeddingBits !== undefined ? { embeddingBits: o.embeddingBits } : {}),
            data: o.data,
            dataHash,
            kind: data.kind,
            rank: o.rank,
            alpha,
            targets,
            steps: res.steps,
            seq,
          }),
        );
        const first = res.history.train[0]?.[1];
        const last = res.history.train[res.history.train.length - 1]?.[1];
        const heldOut = res.history.eval[res.history.eval.length - 1]?.[1];
        const summary = {
          output: o.output,
          base: m.path,
          data: {
            file: o.data,
            kind: data.kind,
            records: data.records,
            kept: data.kept,
            dropped: data.dropped,
            truncated: data.truncated,
            ...(data.kind === "text" ? { tokens: data.tokens, unusedTokens: data.unusedTokens } : {}),
            train: data.train.length,
            heldOut: data.heldOut.length,
          },
          steps: res.steps,
          resumedFrom: res.resumedFrom,
          resumedDespite: res.resumedDespite.map((d) => d.field),
          skippedSteps: res.skippedSteps,
          trainableParameters: res.model.parameterCount(name),
          // the frozen token embedding's storage: "f32", or its packed format (--embedding-bits)
          embedding: isPackedEmbedding(m.weights.tokenEmbedding)
            ? m.weights.tokenEmbedding.format.name
            : "f32",
          firstLoss: first,
          lastLoss: last,
          heldOutLoss: heldOut,
          tokensPerSec: res.seconds > 0 ? res.tokens / res.seconds : 0,
          seconds: res.seconds,
        };
        if (o.json) writeJson(io, summary);
        else
          io.stdout.write(
            `trained ${summary.trainableParameters} LoRA parameters (r ${o.rank}, ${o.targets.join(",")}) on ${data.train.length} ${data.kind} examples` +
              `${res.resumedFrom > 0 ? `, resumed from step ${res.resumedFrom}` : ""}\n` +
              `data: ${dataLine}\n` +
              `${res.skippedSteps > 0 ? `${res.skippedSteps} steps skipped (non-finite loss or gradient; no update)\n` : ""}` +
              `steps ${res.steps}: training loss ${first?.toFixed(4) ?? "-"} → ${last?.toFixed(4) ?? "-"}` +
              `${heldOut !== undefined ? `, held-out ${heldOut.toFixed(4)}` : ""}; ${summary.tokensPerSec.toFixed(0)} tok/s\n` +
              `wrote ${o.output}/${FINETUNE_OUTPUTS.join(", ")} — README.md says how to prompt the adapter\n`,
          );
        return EXIT.ok;
      },
      o.maxResidentMb,
    );
  });
}
