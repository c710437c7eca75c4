// `int21 finetune <model> --data <alpaca.json|text> [--rank --targets --steps --lr --seq] -o <adapter dir>`
import { existsSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { writeFileAtomic } from "@int21/io";
import { LLAMA_TARGETS, lossChartSvg } from "@int21/lora";
import { makeFormat } from "@int21/quant-kernels";
import { Command, Option } from "commander";
import { type CliIo, CliError, EXIT, UsageError } from "../cli-io";
import { residentOption, runProgram, threadsOption, withBackend, writeJson } from "../command";
import { trainLoRA } from "../emef";
import { openModel, openTokenizer } from "../model-loading";
import { intIn, intOneOf, nameList, numberIn } from "../options";
import { progressBar } from "../progress";
import { readTrainingData } from "../training-data";

/** The options of `int21 finetune`. */
export function finetuneProgram(): Command {
  return new Command("finetune")
    .description("EMEF: train a LoRA adapter on a frozen (packed 2–8 bit or float) model; resumable")
    .argument("<model>", "int21 checkpoint (packed), llama2.c .bin or Hugging Face directory/id")
    .requiredOption("--data <file>", "Alpaca JSON (.json/.jsonl: instruction, input, output) or plain text")
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
      new Option("--seed <n>", "seed of the batch order and adapter init").argParser(intIn(0)).default(0),
    )
    .option("--fresh", "ignore an existing trainer checkpoint in the output directory", false)
    .option("--tokenizer <file>", "tokenizer (default: found beside the model)")
    .addOption(threadsOption())
    .addOption(residentOption())
    .option("--json", "print the result as JSON", false)
    .option("--quiet", "no progress bars", false);
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
  seed: number;
  fresh: boolean;
  tokenizer?: string;
  threads?: number;
  maxResidentMb?: number;
  json: boolean;
  quiet: boolean;
}

/**
 * `int21 finetune`: trains, saves the adapter (PEFT `adapter_config.json` + `adapter_model.safetensors`),
 * `loss.svg` and `history.json` into the output directory. Rerunning the same command continues from
 * the last trainer checkpoint.
 */
export function finetune(argv: readonly string[], io: CliIo): Promise<number> {
  return runProgram(finetuneProgram(), argv, io, async ([model], opts) => {
    const o = opts as unknown as FinetuneOpts;
    if (!existsSync(o.data)) throw new CliError(`--data ${o.data}: no such file`);
    return withBackend(
      o.threads,
      async (backend) => {
        const quantize =
          o.bits !== undefined
            ? { format: makeFormat({ bits: o.bits, groupSize: 64, symmetric: false, scaleDtype: "f16" }) }
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
        const data = readTrainingData(o.data, tok, seq, o.heldOut, o.seed);
        await mkdir(o.output, { recursive: true });
        const trainerDir = join(o.output, "trainer");
        if (o.fresh) {
          const { rm } = await import("node:fs/promises");
          await rm(trainerDir, { recursive: true, force: true });
        }
        const name = m.lora?.adapterNames().includes("default") ? "emef" : "default";
        const bar = progressBar(io, "finetune", { quiet: o.quiet });
        let res: Awaited<ReturnType<typeof trainLoRA>>;
        try {
          res = await trainLoRA(m.weights, data, {
            lora: {
              name,
              targetModules: o.targets.includes("all-linear") ? [...LLAMA_TARGETS] : o.targets,
              r: o.rank,
              alpha: o.alpha ?? 2 * o.rank,
              seed: o.seed,
              baseModel: m.path,
            },
            steps: o.steps,
            lr: o.lr,
            batchSize: o.batch,
            seed: o.seed,
            ...(o.evalEvery !== undefined ? { evalEvery: o.evalEvery } : {}),
            checkpointDir: trainerDir,
            checkpointEvery: o.checkpointEvery,
            adapterDir: o.output,
            existing: m.lora,
            onProgress: (p) =>
              bar.update(
                p.step,
                p.totalSteps,
                `loss ${p.loss.toFixed(4)}${p.evalLoss !== undefined ? ` held-out ${p.evalLoss.toFixed(4)}` : ""}`,
              ),
          });
        } catch (e) {
          throw new CliError((e as Error).message);
        }
        bar.finish();
        await writeFileAtomic(
          join(o.output, "loss.svg"),
          lossChartSvg(res.history, `EMEF fine-tuning (${res.steps} steps)`),
        );
        await writeFileAtomic(join(o.output, "history.json"), `${JSON.stringify(res.history)}\n`);
        const first = res.history.train[0]?.[1];
        const last = res.history.train[res.history.train.length - 1]?.[1];
        const heldOut = res.history.eval[res.history.eval.length - 1]?.[1];
        const summary = {
          output: o.output,
          base: m.path,
          data: {
            file: o.data,
            kind: data.kind,
            train: data.train.length,
            heldOut: data.heldOut.length,
            truncated: data.truncated,
          },
          steps: res.steps,
          resumedFrom: res.resumedFrom,
          trainableParameters: res.model.parameterCount(name),
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
              `steps ${res.steps}: training loss ${first?.toFixed(4) ?? "-"} → ${last?.toFixed(4) ?? "-"}` +
              `${heldOut !== undefined ? `, held-out ${heldOut.toFixed(4)}` : ""}; ${summary.tokensPerSec.toFixed(0)} tok/s\n` +
              `wrote ${o.output}/adapter_config.json, adapter_model.safetensors, loss.svg, history.json\n`,
          );
        return EXIT.ok;
      },
      o.maxResidentMb,
    );
  });
}
