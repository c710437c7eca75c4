// `int21 lrec <quantized> --teacher <model> --data <text> [--holdout <text>] [--rank --alpha --lambda --steps --lr --schedule] -o <out>`
import { existsSync, readFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { writeFileAtomic } from "@int21/io";
import { contentHasher } from "@int21/lora";
import {
  type AdapterDtype,
  effectiveBits,
  LREC_TARGETS,
  type LrecOptions,
  lrecChartSvg,
  lrecCheckpointStatus,
  lrecRunIdentity,
  runLrec,
  storeAdaptersAs,
  windowData,
} from "@int21/lrec";
import { calibrationWindows, type Tokenizer, saveInt21Checkpoint } from "@int21/model-llama";
import { Command, Option } from "commander";
import { baseWeights } from "../base-weights";
import { type CliIo, CliError, EXIT, UsageError } from "../cli-io";
import { runProgram, withBackend, writeJson } from "../command";
import { checkpointAdaptersOf, openModel, openTokenizer } from "../model-loading";
import { intIn, nameList, numberIn } from "../options";
import { progressBar } from "../progress";
import {
  contentHash,
  divergenceOf,
  mismatchMessage,
  resumedDespiteNote,
  addTrainingRunOptions,
  runsHelp,
  trainingFailure,
} from "../training-runs";

/** The options of `int21 lrec`. */
export function lrecProgram(): Command {
  const cmd = new Command("lrec")
    .description("LREC: train LoRA layers so a packed model matches its float teacher (KL + λ·CE); resumable")
    .argument("<quantized>", "int21 checkpoint written by `int21 quantize`")
    .requiredOption("--teacher <model>", "the float model it was quantized from")
    .requiredOption("--data <text>", "training text: the teacher and student see random windows of it")
    .option(
      "--holdout <text>",
      "held-out text scored before and after; without it the last --eval-tokens tokens of --data are held out of training and scored",
    )
    .requiredOption("-o, --output <file>", "int21 checkpoint to write: the packed base plus the LREC adapter")
    .addOption(new Option("--rank <r>", "LoRA rank").argParser(intIn(1, 4096)).default(8))
    .addOption(new Option("--alpha <a>", "LoRA alpha (default 2 × rank)").argParser(numberIn(0)))
    .addOption(
      new Option(
        "--lambda <λ>",
        "weight of the cross-entropy term (the KL is summed over positions, the CE averaged)",
      )
        .argParser(numberIn(0))
        .default(64),
    )
    .addOption(new Option("--steps <n>", "optimizer steps").argParser(intIn(1)).default(100))
    .addOption(new Option("--lr <lr>", "peak learning rate (Adam)").argParser(numberIn(0)).default(2e-3))
    .addOption(
      new Option(
        "--schedule <kind>",
        "learning-rate schedule: cosine (warmup of min(10, steps/10) steps, then cosine down to lr/10: the recipe of the LREC methods table) or constant",
      )
        .choices(["cosine", "constant"])
        .default("cosine"),
    )
    .addOption(new Option("--seq <n>", "tokens per window").argParser(intIn(2)).default(64))
    .addOption(new Option("--batch <n>", "windows per step").argParser(intIn(1)).default(4))
    .addOption(
      new Option("--targets <names>", "projections to correct (default: all seven per layer)").argParser(
        nameList,
      ),
    )
    .addOption(
      new Option(
        "--init <how>",
        "zero: B = 0; svd: truncated SVD of W − Ŵ; svd-act: SVD of the error weighted by the inputs each projection sees on 16 training windows (whitened, LQER / CLoQ style)",
      )
        .choices(["zero", "svd", "svd-act"])
        .default("svd-act"),
    )
    .option(
      "--no-train-scales",
      "keep the packed group scales and zeros fixed (by default they train with the adapter and are saved in place of the old ones: same format, same size)",
    )
    .addOption(
      new Option(
        "--scale-rate <ρ>",
        "how fast trained scales and zeros move: scale s₀·exp(ρ·u), zero z₀ + ρ·v (10 recovered more of the INT2 gap than 1 on stories260K)",
      )
        .argParser(numberIn(0.001, 1000))
        .default(10),
    )
    .addOption(
      new Option(
        "--adapter-dtype <dtype>",
        "precision the adapter is rounded to before the final evaluation and stored in (int8: codes + an f16 scale per row); the bits per weight count it",
      )
        .choices(["f16", "bf16", "int8", "f32"])
        .default("f16"),
    )
    .addOption(
      new Option(
        "--eval-tokens <n>",
        "held-out tokens scored before and after (the first of --holdout, or the end of --data)",
      )
        .argParser(intIn(0))
        .default(2048),
    )
    .addOption(new Option("--seed <n>", "seed of the window order").argParser(intIn(0)).default(0))
    .option(
      "--fresh",
      "delete an existing LREC state file (<output>.lrec-state.safetensors) and start over",
      false,
    );
  return addTrainingRunOptions(
    cmd,
    "tokenizer (default: found beside the teacher or the student)",
  ).addHelpText("after", runsHelp("the state file <output without .safetensors>.lrec-state.safetensors"));
}

interface LrecOpts {
  teacher: string;
  data: string;
  output: string;
  rank: number;
  alpha?: number;
  lambda: number;
  steps: number;
  lr: number;
  schedule: "cosine" | "constant";
  seq: number;
  batch: number;
  targets?: string[];
  holdout?: string;
  init: "zero" | "svd" | "svd-act";
  trainScales: boolean;
  scaleRate: number;
  adapterDtype: AdapterDtype;
  evalTokens: number;
  seed: number;
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

/** The resumable state file of an LREC run writing `output`. */
export function lrecStatePath(output: string): string {
  return join(dirname(output), `${basename(output).replace(/\.safetensors$/, "")}.lrec-state.safetensors`);
}

/**
 * `int21 lrec`: trains an LREC adapter on the packed student against the float teacher, prints the
 * held-out KL and NLL before and after, and writes the packed base with the adapter inside one int21
 * checkpoint (plus the loss chart beside it). Rerunning the same command resumes from the state file.
 */
export function lrec(argv: readonly string[], io: CliIo): Promise<number> {
  return runProgram(lrecProgram(), argv, io, async ([quantized], opts) => {
    const o = opts as unknown as LrecOpts;
    if (!existsSync(o.data)) throw new CliError(`--data ${o.data}: no such file`);
    if (o.holdout !== undefined && !existsSync(o.holdout))
      throw new CliError(`--holdout ${o.holdout}: no such file`);
    return withBackend(
      o.threads,
      async (backend) => {
        const student = await openModel(quantized as string, io, { backend, quiet: o.quiet });
        if (student.kind !== "int21")
          throw new UsageError(
            `${student.path} is a float model; LREC trains a packed one: run \`int21 quantize\` first`,
          );
        const teacher = await openModel(o.teacher, io, { backend, quiet: o.quiet, what: "teacher" });
        const c = student.weights.config;
        for (const k of ["dim", "nLayers", "vocabSize"] as const)
          if (teacher.weights.config[k] !== c[k])
            throw new CliError(
              `--teacher ${o.teacher}: its ${k} is ${teacher.weights.config[k]}, the student's is ${c[k]}`,
            );
        if (o.seq + 1 > c.seqLen)
          throw new UsageError(`--seq ${o.seq} must be below the model's context (seqLen ${c.seqLen})`);
        let tok: Tokenizer;
        try {
          tok = await openTokenizer(teacher.path, c.vocabSize, o.tokenizer);
        } catch {
          tok = await openTokenizer(student.path, c.vocabSize, o.tokenizer);
        }
        // BOS as the tokenizer's own rule says (HF add_bos_token / post-processor, GGUF add_bos_token,
        // llama2.c always), as eval and generate do
        const bos = tok.addBos ?? true;
        const encode = (file: string) =>
          tok.encode(readFileSync(file, "utf8").replace(/<\|endoftext\|>/g, "\n"), { bos });
        // Trained scales need affine group scales; a ggml block or codebook format keeps its own inside.
        const fixedScales = student.weights.layers
          .flatMap((L) => [L.wq, L.wk, L.wv, L.wo, L.w1, L.w2, L.w3])
          .map(
            (l) =>
              ((l as { base?: unknown }).base ?? l) as { q?: { format: { name: string; decode?: string } } },
          )
          .map((l) => l.q?.format)
          .find((f) => f !== undefined && (f.decode ?? "affine") !== "affine");
        if (o.trainScales && fixedScales !== undefined) {
          o.trainScales = false;
          if (!o.quiet)
            io.stderr.write(
              `note: the student's ${fixedScales.name} projections keep their scales inside their blocks (decode "${fixedScales.decode}"): training the adapter only (--no-train-scales)\n`,
            );
        }
        const all = encode(o.data);
        let train: number[];
        let held: number[];
        if (o.holdout !== undefined) {
          train = all;
          held = encode(o.holdout).slice(0, o.evalTokens);
        } else {
          const nEval = Math.min(o.evalTokens, Math.floor(all.length / 5));
          train = all.slice(0, all.length - nEval);
          held = all.slice(all.length - nEval);
        }
        if (train.length < o.seq + 1)
          throw new CliError(
            `--data ${o.data}: ${train.length} training tokens, fewer than one window (--seq ${o.seq} + 1)`,
          );
        const statePath = lrecStatePath(o.output);
        if (o.fresh) {
          const { rm } = await import("node:fs/promises");
          await rm(statePath, { force: true });
        }
        const trainHash = (await contentHasher()).update(Int32Array.from(train)).digest();
        const runOpts: LrecOptions = {
          steps: o.steps,
          r: o.rank,
          alpha: o.alpha ?? 2 * o.rank,
          lr: o.lr,
          schedule:
            o.schedule === "cosine"
              ? { kind: "cosine", warmupSteps: Math.min(10, Math.floor(o.steps / 10)), minLr: o.lr / 10 }
              : { kind: "constant" },
          lambda: o.lambda,
          targets: o.targets ?? LREC_TARGETS,
          init: o.init === "zero" ? "zero" : "svd",
          ...(o.init === "zero" ? {} : { backend }),
          ...(o.init === "svd-act"
            ? {
                calib: calibrationWindows(train, 16, Math.min(o.seq + 1, train.length), tok.bosId),
                weighting: "cholesky" as const,
              }
            : {}),
          trainScales: o.trainScales ? { rate: o.scaleRate } : false,
          checkpointPath: statePath,
          checkpointEvery: 10,
          identity: {
            teacher: await contentHash(teacher.path, "--teacher"),
            student: await contentHash(student.path, "student"),
            data: await contentHash(o.data, "--data"),
            trainTokens: trainHash,
            seq: o.seq,
            batch: o.batch,
            windowSeed: o.seed,
            initWeighting: o.init === "svd-act" ? "cholesky over 16 training windows" : "none",
          },
          forceResume: o.resume,
          divergence: divergenceOf(o),
        };
        const chart = `${o.output.replace(/\.safetensors$/, "")}.lrec-loss.svg`;
        // a finished or a different run is told apart from the state file's header, before any work
        const status = await lrecCheckpointStatus(statePath, lrecRunIdentity(runOpts)).catch((e: Error) => {
          throw new CliError(e.message);
        });
        if (status.differences.length > 0 && !o.resume)
          throw new CliError(mismatchMessage(statePath, status.step, status.differences));
        if (status.differences.length > 0)
          io.stderr.write(resumedDespiteNote(statePath, status.step, status.differences));
        if (status.finished && existsSync(o.output) && existsSync(chart)) {
          if (o.json)
            writeJson(io, { output: o.output, lossChart: chart, alreadyFinished: true, steps: status.step });
          else
            io.stdout.write(
              `this run is already finished (${status.step} of ${o.steps} steps; state ${statePath}); nothing was trained or written.\n` +
                `its outputs: ${o.output} (packed base + LREC adapter) and ${chart}\n` +
                `(--fresh trains it again from the start; change a setting and add --resume to continue it)\n`,
            );
          return EXIT.ok;
        }
        const bar = progressBar(io, "lrec", { quiet: o.quiet });
        let res: Awaited<ReturnType<typeof runLrec>>;
        try {
          res = await runLrec(
            teacher.weights,
            student.weights,
            windowData(train, { batch: o.batch, seq: o.seq, seed: o.seed }),
            {
              ...runOpts,
              // scored before and after, the adapter rounded to what the file stores
              ...(held.length >= 2 ? { heldOut: held, heldOutCtx: Math.min(c.seqLen, 256) } : {}),
              adapterDtype: o.adapterDtype,
              log: (m) => io.stderr.write(`${m}\n`),
              onProgress: (p) =>
                bar.update(p.step, p.totalSteps, `KL/token ${p.klPerToken.toFixed(4)} CE ${p.ce.toFixed(4)}`),
            },
          );
        } catch (e) {
          bar.finish();
          throw trainingFailure(e, statePath);
        }
        bar.finish();
        const { before, after } = res.heldOut ?? {};
        const bpw = effectiveBits(student.weights, { adapterDtype: o.adapterDtype });
        await saveInt21Checkpoint(o.output, baseWeights(student.weights), {
          // stored in the dtype it was rounded to and counted at (int8: codes + f16 row scales)
          adapters: storeAdaptersAs(checkpointAdaptersOf(res.model, ["lrec"]), o.adapterDtype),
        });
        await writeFileAtomic(chart, lrecChartSvg(res.history, `LREC (${res.steps} steps)`));
        const summary = {
          output: o.output,
          lossChart: chart,
          steps: res.steps,
          lr: { peak: o.lr, schedule: o.schedule, first: res.history[0]?.lr, last: res.history.at(-1)?.lr },
          resumed: res.resumed,
          resumedDespite: res.resumedDespite.map((d) => d.field),
          skippedSteps: res.skippedSteps,
          trainableParameters: res.model.parameterCount("lrec"),
          heldOutTokens: held.length,
          heldOutSource: o.holdout ?? `the last ${held.length} tokens of --data`,
          adapterDtype: o.adapterDtype,
          trainScales: o.trainScales,
          scaleRate: o.trainScales ? o.scaleRate : null,
          bitsPerWeight: bpw,
          before: before && {
            meanKl: before.meanKl,
            meanNll: before.meanNll,
            perplexity: before.perplexity,
            teacherPerplexity: Math.exp(before.teacherMeanNll),
          },
          after: after && { meanKl: after.meanKl, meanNll: after.meanNll, perplexity: after.perplexity },
          gapRecovered:
            before && after && before.meanNll - before.teacherMeanNll > 1e-9
              ? (before.meanNll - after.meanNll) / (before.meanNll - before.teacherMeanNll)
              : null,
          seconds: res.seconds,
        };
        if (o.json) writeJson(io, summary);
        else {
          io.stdout.write(
            `LREC: ${res.steps} steps${res.resumed ? " (resumed)" : ""}, r ${o.rank}, ${summary.trainableParameters} parameters, ${res.seconds.toFixed(1)} s` +
              `${res.skippedSteps > 0 ? `; ${res.skippedSteps} steps skipped (non-finite loss or gradient; no update)` : ""}\n`,
          );
          if (before && after)
            io.stdout.write(
              `held-out (${summary.heldOutSource}, ${held.length} tokens): NLL ${before.meanNll.toFixed(4)} → ${after.meanNll.toFixed(4)} ` +
                `(teacher ${before.teacherMeanNll.toFixed(4)}${summary.gapRecovered === null ? "" : `, ${(100 * summary.gapRecovered).toFixed(1)}% of the gap recovered`}), ` +
                `KL to teacher ${before.meanKl.toFixed(4)} → ${after.meanKl.toFixed(4)} nats/token, ` +
                `perplexity ${before.perplexity.toFixed(3)} → ${after.perplexity.toFixed(3)} (teacher ${Math.exp(before.teacherMeanNll).toFixed(3)})\n`,
            );
          else
            io.stdout.write(
              "held-out: no evaluation (fewer than 2 held-out tokens; see --eval-tokens / --holdout)\n",
            );
          io.stdout.write(
            `bits per weight of the block projections: ${bpw.toFixed(3)} (packed codes, scales, zeros${o.trainScales ? " (trained)" : ""} and the adapter at ${o.adapterDtype})\n`,
          );
          io.stdout.write(`wrote ${o.output} (packed base + LREC adapter) and ${chart}\n`);
        }
        return EXIT.ok;
      },
      o.maxResidentMb,
    );
  });
}
