// `int21 lrec <quantized> --teacher <model> --data <text> [--holdout <text>] [--rank --alpha --lambda --steps --lr --schedule --loftq-iters] -o <out>`
// argv → lrec's lrecJob (the whole job on the loaded models) → print, and the output files written here.
import { existsSync, readFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { writeFileAtomic } from "@int21/io";
import { type AdapterDtype, LREC_RECIPE, type LrecInit, lrecJob, storeAdaptersAs } from "@int21/lrec";
import type { Tokenizer } from "@int21/model-llama";
import { saveInt21Checkpoint } from "@int21/loaders";
import { Command, Option } from "commander";
import { baseWeights } from "../base-weights";
import { type CliIo, CliError, EXIT, UsageError } from "../cli-io";
import { runProgram, withBackend, writeJson } from "../command";
import { checkpointAdaptersOf, openModel, openTokenizer } from "../model-loading";
import { intIn, nameList, numberIn } from "../options";
import { progressBar } from "../progress";
import {
  addTrainingRunOptions,
  contentHash,
  divergenceOf,
  resumedDespiteNote,
  runsHelp,
  trainingFailure,
} from "../training-runs";

/** The options of `int21 lrec`; the defaults are lrec's `LREC_RECIPE` (the LREC methods table's winner). */
export function lrecProgram(): Command {
  const d = LREC_RECIPE;
  const cmd = new Command("lrec")
    .description(
      "LREC: train LoRA layers so a packed model matches its float teacher (KL + λ·CE); resumable. The defaults are the recipe " +
        "that recovers 90.6 % of the INT2 GPTQ gap of stories260K on held-out stories (LoftQ 3 iterations + activation-weighted SVD start, " +
        "trained scales and zeros at ρ 10, r 8, 4 × 128 tokens a step, 1000 steps: 75 min on a loaded 2-core machine; " +
        "--steps 150 recovers 83 % in about a tenth of that, 300 86.5 %)",
    )
    .argument("<quantized>", "int21 checkpoint written by `int21 quantize`")
    .requiredOption("--teacher <model>", "the float model it was quantized from")
    .requiredOption("--data <text>", "training text: the teacher and student see random windows of it")
    .option(
      "--holdout <text>",
      "held-out text scored before and after; without it the last --eval-tokens tokens of --data are held out of training and scored",
    )
    .requiredOption("-o, --output <file>", "int21 checkpoint to write: the packed base plus the LREC adapter")
    .addOption(new Option("--rank <r>", "LoRA rank").argParser(intIn(1, 4096)).default(d.rank))
    .addOption(new Option("--alpha <a>", "LoRA alpha (default 2 × rank)").argParser(numberIn(0)))
    .addOption(
      new Option(
        "--lambda <λ>",
        "weight of the cross-entropy term (the KL is summed over positions, the CE averaged; the methods table's: 120 at 2 bits, 40 at 3, 10 at 4 or more) (default by the student's bits)",
      ).argParser(numberIn(0)),
    )
    .addOption(new Option("--steps <n>", "optimizer steps").argParser(intIn(1)).default(d.steps))
    .addOption(new Option("--lr <lr>", "peak learning rate (Adam)").argParser(numberIn(0)).default(d.lr))
    .addOption(
      new Option(
        "--schedule <kind>",
        "learning-rate schedule: cosine (warmup of min(10, steps/10) steps, then cosine down to lr/10: the recipe of the LREC methods table) or constant",
      )
        .choices(["cosine", "constant"])
        .default(d.schedule),
    )
    .addOption(new Option("--seq <n>", "tokens per window").argParser(intIn(2)).default(d.seq))
    .addOption(new Option("--batch <n>", "windows per step").argParser(intIn(1)).default(d.batch))
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
        .default(d.init),
    )
    .addOption(
      new Option(
        "--loftq-iters <n>",
        `LoftQ: quantize the teacher again, in the student's format with --loftq-method, as quantize(W − L) with L the rank-r part of the error, n times; the adapter starts at the last L and the output holds the new packed base. 0 keeps the student as given (default ${d.loftqIterations}; 0 with --init zero or where the projections are not all in one affine group format, e.g. k-quants)`,
      ).argParser(intIn(0, 20)),
    )
    .option(
      "--loftq-method <name>",
      "the quantizer LoftQ re-quantizes with (gptq over 16 training windows, rtn, or another registered one)",
      d.loftqMethod,
    )
    .option(
      "--no-train-scales",
      "keep the packed group scales and zeros fixed (by default they train with the adapter and are saved in place of the old ones: same format, same size)",
    )
    .addOption(
      new Option(
        "--scale-rate <ρ>",
        "how fast trained scales and zeros move: scale s₀·exp(ρ·u), zero z₀ + ρ·v (10 recovered more of the INT2 gap than 1 and 30 on stories260K)",
      )
        .argParser(numberIn(0.001, 1000))
        .default(d.scaleRate),
    )
    .addOption(
      new Option(
        "--adapter-dtype <dtype>",
        "precision the adapter is rounded to before the final evaluation and stored in (int8: codes + an f16 scale per row); the bits per weight count it",
      )
        .choices(["f16", "bf16", "int8", "f32"])
        .default(d.adapterDtype),
    )
    .addOption(
      new Option(
        "--eval-tokens <n>",
        "held-out tokens scored before and after (the first of --holdout, or the end of --data)",
      )
        .argParser(intIn(0))
        .default(d.evalTokens),
    )
    .addOption(new Option("--seed <n>", "seed of the window order").argParser(intIn(0)).default(d.seed))
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
  lambda?: number;
  steps: number;
  lr: number;
  schedule: "cosine" | "constant";
  seq: number;
  batch: number;
  targets?: string[];
  holdout?: string;
  init: LrecInit;
  loftqIters?: number;
  loftqMethod: string;
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
 * `int21 lrec`: trains an LREC adapter on the packed student against the float teacher (lrec's
 * `lrecJob`), prints the held-out KL and NLL before and after, and writes the packed base with the
 * adapter inside one int21 checkpoint (plus the loss chart beside it). Rerunning the same command
 * resumes from the state file.
 */
export function lrec(argv: readonly string[], io: CliIo): Promise<number> {
  return runProgram(lrecProgram(), argv, io, async ([quantized], opts) => {
    const o = opts as unknown as LrecOpts;
    if (!existsSync(o.data)) throw new CliError(`--data ${o.data}: no such file`);
    if (o.holdout !== undefined && !existsSync(o.holdout))
      throw new CliError(`--holdout ${o.holdout}: no such file`);
    if (o.init === "zero" && (o.loftqIters ?? 0) > 0)
      throw new UsageError(
        "--loftq-iters starts the adapter at the low-rank part of the error: it needs --init svd or svd-act",
      );
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
        if (o.seq + 1 > c.seqLen)
          throw new UsageError(`--seq ${o.seq} must be below the model's context (seqLen ${c.seqLen})`);
        let tokenizer: Tokenizer;
        try {
          tokenizer = await openTokenizer(teacher.path, c.vocabSize, o.tokenizer);
        } catch {
          tokenizer = await openTokenizer(student.path, c.vocabSize, o.tokenizer);
        }
        const statePath = lrecStatePath(o.output);
        if (o.fresh) {
          const { rm } = await import("node:fs/promises");
          await rm(statePath, { force: true });
        }
        const chart = `${o.output.replace(/\.safetensors$/, "")}.lrec-loss.svg`;
        const bar = progressBar(io, "lrec", { quiet: o.quiet });
        let res: Awaited<ReturnType<typeof lrecJob>>;
        try {
          res = await lrecJob({
            teacher: teacher.weights,
            student: student.weights,
            tokenizer,
            trainText: readFileSync(o.data, "utf8"),
            ...(o.holdout !== undefined ? { heldOutText: readFileSync(o.holdout, "utf8") } : {}),
            labels: { train: `--data ${o.data}`, teacher: `--teacher ${o.teacher}` },
            steps: o.steps,
            rank: o.rank,
            ...(o.alpha !== undefined ? { alpha: o.alpha } : {}),
            ...(o.lambda !== undefined ? { lambda: o.lambda } : {}),
            lr: o.lr,
            schedule: o.schedule,
            seq: o.seq,
            batch: o.batch,
            ...(o.targets ? { targets: o.targets } : {}),
            init: o.init,
            ...(o.loftqIters !== undefined ? { loftqIterations: o.loftqIters } : {}),
            loftqMethod: o.loftqMethod,
            trainScales: o.trainScales,
            scaleRate: o.scaleRate,
            adapterDtype: o.adapterDtype,
            evalTokens: o.evalTokens,
            seed: o.seed,
            statePath,
            identity: {
              teacher: await contentHash(teacher.path, "--teacher"),
              student: await contentHash(student.path, "student"),
              data: await contentHash(o.data, "--data"),
            },
            forceResume: o.resume,
            // a finished run whose outputs are still there is left alone
            skipIfFinished: existsSync(o.output) && existsSync(chart),
            divergence: divergenceOf(o),
            backend,
            onStatus: (s) => {
              if (s.differences.length > 0 && o.resume)
                io.stderr.write(resumedDespiteNote(statePath, s.step, s.differences));
            },
            onNote: (m) => {
              if (!o.quiet) io.stderr.write(`note: ${m}\n`);
            },
            log: (m) => io.stderr.write(`${m}\n`),
            onProgress: (p) =>
              bar.update(p.step, p.totalSteps, `KL/token ${p.klPerToken.toFixed(4)} CE ${p.ce.toFixed(4)}`),
          });
        } catch (e) {
          bar.finish();
          throw trainingFailure(e, statePath);
        }
        bar.finish();
        if (res.alreadyFinished) {
          if (o.json)
            writeJson(io, { output: o.output, lossChart: chart, alreadyFinished: true, steps: res.steps });
          else
            io.stdout.write(
              `this run is already finished (${res.steps} of ${o.steps} steps; state ${statePath}); nothing was trained or written.\n` +
                `its outputs: ${o.output} (packed base + LREC adapter) and ${chart}\n` +
                `(--fresh trains it again from the start; change a setting and add --resume to continue it)\n`,
            );
          return EXIT.ok;
        }
        const rec = res.recipe;
        await saveInt21Checkpoint(o.output, baseWeights(res.student), {
          // stored in the dtype it was rounded to and counted at (int8: codes + f16 row scales)
          adapters: storeAdaptersAs(checkpointAdaptersOf(res.model, ["lrec"]), rec.adapterDtype),
        });
        await writeFileAtomic(chart, res.lossChartSvg);
        const h = res.heldOut;
        const heldOutSource = o.holdout ?? `the last ${h?.tokens ?? 0} tokens of --data`;
        const summary = {
          output: o.output,
          lossChart: chart,
          steps: res.steps,
          lr: {
            peak: rec.lr,
            schedule: rec.schedule,
            first: res.history[0]?.lr,
            last: res.history.at(-1)?.lr,
          },
          lambda: rec.lambda,
          init: rec.init,
          loftqIterations: rec.loftqIterations,
          loftqMethod: rec.loftqIterations > 0 ? rec.loftqMethod : null,
          resumed: res.resumed,
          resumedDespite: res.resumedDespite.map((d) => d.field),
          skippedSteps: res.skippedSteps,
          trainableParameters: res.trainableParameters,
          heldOutTokens: h?.tokens ?? 0,
          heldOutSource,
          adapterDtype: rec.adapterDtype,
          trainScales: res.trainScales,
          scaleRate: res.trainScales ? rec.scaleRate : null,
          bitsPerWeight: res.bitsPerWeight,
          before: h && {
            meanKl: h.quantized.meanKl,
            meanNll: h.quantized.meanNll,
            perplexity: h.quantized.perplexity,
            teacherPerplexity: h.teacher.perplexity,
          },
          after: h && {
            meanKl: h.corrected.meanKl,
            meanNll: h.corrected.meanNll,
            perplexity: h.corrected.perplexity,
          },
          gapRecovered: h ? h.gapRecovered : null,
          seconds: res.seconds,
        };
        if (o.json) writeJson(io, summary);
        else {
          io.stdout.write(
            `LREC: ${res.steps} steps${res.resumed ? " (resumed)" : ""}, r ${rec.rank}, λ ${rec.lambda}, ${rec.loftqIterations > 0 ? `LoftQ ${rec.loftqIterations} iterations (${rec.loftqMethod}), ` : ""}${summary.trainableParameters} parameters, ${res.seconds.toFixed(1)} s` +
              `${res.skippedSteps > 0 ? `; ${res.skippedSteps} steps skipped (non-finite loss or gradient; no update)` : ""}\n`,
          );
          if (h) {
            const [b, a] = [h.quantized, h.corrected];
            io.stdout.write(
              `held-out (${heldOutSource}, ${h.tokens} tokens): NLL ${b.meanNll.toFixed(4)} → ${a.meanNll.toFixed(4)} ` +
                `(teacher ${h.teacher.meanNll.toFixed(4)}${h.gapRecovered === null ? "" : `, ${(100 * h.gapRecovered).toFixed(1)}% of the gap recovered`}), ` +
                `KL to teacher ${b.meanKl.toFixed(4)} → ${a.meanKl.toFixed(4)} nats/token, ` +
                `perplexity ${b.perplexity.toFixed(3)} → ${a.perplexity.toFixed(3)} (teacher ${h.teacher.perplexity.toFixed(3)})\n`,
            );
          } else
            io.stdout.write(
              "held-out: no evaluation (fewer than 2 held-out tokens; see --eval-tokens / --holdout)\n",
            );
          io.stdout.write(
            `bits per weight of the block projections: ${res.bitsPerWeight.toFixed(3)} (packed codes, scales, zeros${res.trainScales ? " (trained)" : ""} and the adapter at ${rec.adapterDtype})\n`,
          );
          io.stdout.write(`wrote ${o.output} (packed base + LREC adapter) and ${chart}\n`);
        }
        return EXIT.ok;
      },
      o.maxResidentMb,
    );
  });
}
