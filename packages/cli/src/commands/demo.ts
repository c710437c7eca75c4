// `int21 demo`: the INT2.1 story on stories260K — float → INT2 RTN and GPTQ (damage) → LREC (recovery) → EMEF fine-tune → greedy samples.
import { existsSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { writeFileAtomic } from "@int21/io";
import { Llama2cTokenizer, loadLlama2c } from "@int21/loaders";
import { lineChartSvg } from "@int21/lora";
import { INT2_PIPELINE_MIN_STORIES, type Int2Row, type Int2Summary, runInt2Pipeline } from "@int21/lrec";
import { Command, Option } from "commander";
import { barChartSvg } from "../charts";
import { type CliIo, CliError, EXIT } from "../cli-io";
import { runProgram, threadsOption, withBackend, writeJson } from "../command";
import { markdownTable, textTable } from "../format-table";
import { intIn } from "../options";
import { type ProgressBar, progressBar } from "../progress";

/** The shared data folder: `INT21_SHARED`, else `../shared` from the working directory. */
function sharedDir(io: CliIo): string {
  return resolve(io.env?.INT21_SHARED ?? join("..", "shared"));
}

/** The default LREC and EMEF step counts of the demo (one source for `--help` and the run). */
const DEMO_STEPS = { full: 150, quick: 10 } as const;

/** The options of `int21 demo`. */
export function demoProgram(): Command {
  return new Command("demo")
    .description(
      "the INT2.1 story on stories260K: float → INT2 RTN and GPTQ (the damage) → LREC (the recovery) → EMEF fine-tune → greedy samples; writes a table and charts",
    )
    .option(
      "--model <bin>",
      "llama2.c model with tok512.bin beside it (default: <shared>/models/stories260K/stories260K.bin)",
    )
    .option(
      "--data <text>",
      "TinyStories text (default: <shared>/data/tinystories-valid/tinystories_valid_first1000.txt)",
    )
    .option("-o, --output <dir>", "output folder", "int21-demo-out")
    .addOption(
      new Option(
        "--lrec-steps <n>",
        `LREC steps (default: ${DEMO_STEPS.full}; ${DEMO_STEPS.quick} with --quick)`,
      ).argParser(intIn(1)),
    )
    .addOption(
      new Option(
        "--steps <n>",
        `EMEF fine-tuning steps (default: ${DEMO_STEPS.full}; ${DEMO_STEPS.quick} with --quick)`,
      ).argParser(intIn(1)),
    )
    .option("--quick", "small step counts and evaluation sets (CI); also INT21_EXAMPLE_QUICK=1", false)
    .addOption(threadsOption())
    .option("--json", "print the summary as JSON", false)
    .option("--quiet", "no progress bars", false);
}

interface DemoOpts {
  model?: string;
  data?: string;
  output: string;
  steps?: number;
  lrecSteps?: number;
  quick: boolean;
  threads?: number;
  json: boolean;
  quiet: boolean;
}

/** One configuration in the demo's table (lrec's {@link Int2Row}). */
export type DemoRow = Int2Row;

/** What the demo writes to `summary.json`: the model file, lrec's {@link Int2Summary} and the run's seconds. */
export interface DemoSummary extends Int2Summary {
  /** The llama2.c model file. */
  model: string;
  /** Wall time of the whole command, loading included. */
  seconds: number;
}

/**
 * `int21 demo`: loads the float model, tokenizer and stories, runs lrec's {@link runInt2Pipeline} (float →
 * INT2 RTN and GPTQ → LREC → EMEF, each measured on held-out stories with a greedy sample; the checkpoints
 * and the EMEF adapter go into the output folder) with a progress bar per stage, and writes `summary.md`,
 * `summary.json`, `perplexity.svg` and `loss.svg` beside them. Exits 1 when a check fails (INT2 must hurt,
 * GPTQ must beat RTN, LREC must recover, EMEF must learn).
 */
export function demo(argv: readonly string[], io: CliIo): Promise<number> {
  return runProgram(demoProgram(), argv, io, async (_args, opts) => {
    const o = opts as unknown as DemoOpts;
    const quick = o.quick || io.env?.INT21_EXAMPLE_QUICK === "1";
    const shared = sharedDir(io);
    const modelPath = o.model ?? join(shared, "models", "stories260K", "stories260K.bin");
    const dataPath = o.data ?? join(shared, "data", "tinystories-valid", "tinystories_valid_first1000.txt");
    for (const [flag, p] of [
      ["--model", modelPath],
      ["--data", dataPath],
    ])
      if (!existsSync(p)) throw new CliError(`${flag} ${p}: no such file (set INT21_SHARED or pass ${flag})`);
    const tokPath = join(resolve(modelPath, ".."), "tok512.bin");
    if (!existsSync(tokPath))
      throw new CliError(`${tokPath}: no such file (the demo needs tok512.bin beside the model)`);
    const steps = o.steps ?? (quick ? DEMO_STEPS.quick : DEMO_STEPS.full);
    const lrecSteps = o.lrecSteps ?? (quick ? DEMO_STEPS.quick : DEMO_STEPS.full);
    const t0 = performance.now();
    const log = (s: string) => {
      if (!o.json) io.stdout.write(s);
    };
    return withBackend(o.threads, async (backend) => {
      const float = loadLlama2c(modelPath, { backend });
      const tok = Llama2cTokenizer.fromFile(tokPath, float.config.vocabSize);
      const stories = readFileSync(dataPath, "utf8")
        .split("<|endoftext|>")
        .map((s) => s.trim())
        .filter((s) => s.length > 0);
      if (stories.length < INT2_PIPELINE_MIN_STORIES)
        throw new CliError(
          `--data ${dataPath}: needs at least ${INT2_PIPELINE_MIN_STORIES} stories, has ${stories.length}`,
        );
      // one bar per stage of the pipeline; rows and LREC's notes as they come
      const bars = new Map<string, ProgressBar>();
      const r = await runInt2Pipeline(float, tok, stories, {
        backend,
        lrecSteps,
        steps,
        quick,
        name: "stories260K",
        output: o.output,
        onProgress: (e) => {
          if (e.kind === "start")
            log(
              `int21 demo: ${modelPath} (${float.config.dim}-dim, ${float.config.nLayers} layers), ${e.evalStories} held-out stories, ctx ${e.ctx}\n`,
            );
          else if (e.kind === "stage-start") bars.set(e.stage, progressBar(io, e.stage, { quiet: o.quiet }));
          else if (e.kind === "progress") bars.get(e.stage)?.update(e.done, e.total, e.note);
          else if (e.kind === "stage-end") bars.get(e.stage)?.finish();
          else if (e.kind === "row")
            log(
              `\n== ${e.row.config}: perplexity ${e.row.perplexity.toFixed(3)} (NLL ${e.row.meanNll.toFixed(4)} nats/token)\n${e.row.sample}\n`,
            );
          else io.stderr.write(`${e.message}\n`);
        },
      });
      const { rows, checks, evalStories: nEval, evalTokens, ctx } = r;
      const summary: DemoSummary = {
        model: modelPath,
        evalStories: nEval,
        evalTokens,
        rows,
        lrec: r.lrec,
        finetune: r.finetune,
        seconds: (performance.now() - t0) / 1000,
        checks,
      };
      const header = ["configuration", "bits/weight", "NLL (nats/token)", "perplexity"];
      const tableRows = rows.map((r) => [
        r.config,
        r.bitsPerWeight.toFixed(2),
        r.meanNll.toFixed(4),
        r.perplexity.toFixed(3),
      ]);
      const md =
        `# int21 demo: stories260K at 2 bits\n\nHeld-out: the last ${nEval} TinyStories validation stories (${evalTokens} tokens, ctx ${ctx}). ` +
        `Finished in ${summary.seconds.toFixed(0)} s.\n\n${markdownTable(header, tableRows)}\n## Greedy samples\n\n` +
        rows.map((r) => `**${r.config}**\n\n> ${r.sample.replace(/\n/g, " ")}\n`).join("\n") +
        `\n## Checks\n\n${checks.map((c) => `- [${c.passed ? "x" : " "}] ${c.name}`).join("\n")}\n`;
      await writeFileAtomic(join(o.output, "summary.md"), md);
      await writeFileAtomic(join(o.output, "summary.json"), `${JSON.stringify(summary, null, 2)}\n`);
      await writeFileAtomic(
        join(o.output, "perplexity.svg"),
        barChartSvg(
          "stories260K perplexity on held-out TinyStories (log scale, lower is better)",
          rows.map((r) => [r.config, r.perplexity]),
          { log: true },
        ),
      );
      await writeFileAtomic(
        join(o.output, "loss.svg"),
        lineChartSvg(
          `stories260K INT2: LREC (${r.lrec.steps} steps) then EMEF (${r.finetune.steps} steps)`,
          [
            { name: "LREC: KL to the float teacher", points: r.curves.lrecKlPerToken },
            {
              name: "EMEF: training loss",
              points: r.curves.emefTrainLoss.map(([st, l]) => [r.lrec.steps + st, l] as [number, number]),
            },
            {
              name: "EMEF: held-out loss",
              points: r.curves.emefHeldOutLoss.map(([st, l]) => [r.lrec.steps + st, l] as [number, number]),
            },
          ],
          { x: "step (LREC, then EMEF)", y: "nats per token" },
        ),
      );
      if (o.json) writeJson(io, summary);
      else {
        io.stdout.write(`\n${textTable(header, tableRows)}`);
        for (const c of checks) io.stdout.write(`${c.passed ? "ok  " : "FAIL"} ${c.name}\n`);
        io.stdout.write(
          `wrote ${o.output}/summary.md, summary.json, perplexity.svg, loss.svg, stories260K-int2-gptq.safetensors, stories260K-int2-gptq-lrec.safetensors, emef-adapter/ (${summary.seconds.toFixed(0)} s)\n`,
        );
      }
      return checks.every((c) => c.passed) ? EXIT.ok : EXIT.failure;
    });
  });
}
