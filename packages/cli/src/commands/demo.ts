// `int21 demo`: the INT2.1 story on stories260K — float → INT2 RTN and GPTQ (damage) → LREC (recovery) → EMEF fine-tune → greedy samples.
import { existsSync, readFileSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { join, resolve } from "node:path";
import { writeFileAtomic } from "@int21/io";
import { lineChartSvg, textDataset } from "@int21/lora";
import { runLrec, windowData } from "@int21/lrec";
import {
  type LlamaWeights,
  calibrationWindows,
  evaluateStories,
  finetune,
  generate,
  quantizeModel,
} from "@int21/model-llama";
import { Llama2cTokenizer, loadLlama2c, saveInt21Checkpoint, peftAdapterSink } from "@int21/loaders";
import { makeFormat } from "@int21/quant-kernels";
import { Command, Option } from "commander";
import { barChartSvg } from "../charts";
import { type CliIo, CliError, EXIT } from "../cli-io";
import { runProgram, threadsOption, withBackend, writeJson } from "../command";
import { baseWeights } from "../base-weights";
import { checkpointAdaptersOf } from "../model-loading";
import { markdownTable, textTable } from "../format-table";
import { progressBar } from "../progress";
import { intIn } from "../options";

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

/** One configuration in the demo's table. */
export interface DemoRow {
  config: string;
  bitsPerWeight: number;
  meanNll: number;
  perplexity: number;
  sample: string;
}

/** What the demo writes to `summary.json`. */
export interface DemoSummary {
  model: string;
  evalStories: number;
  evalTokens: number;
  rows: DemoRow[];
  lrec: { steps: number; firstKlPerToken: number; lastKlPerToken: number; seconds: number };
  finetune: { steps: number; firstLoss: number; lastLoss: number; heldOutLoss?: number; seconds: number };
  seconds: number;
  checks: { name: string; passed: boolean }[];
}

const PROMPT = "Once upon a time";

/**
 * `int21 demo`: loads the float model, measures perplexity (per-story protocol on held-out stories) and
 * a greedy sample; quantizes to INT2 (RTN and GPTQ, group 64) and shows the damage; runs LREC (LoRA
 * layers trained to match the float teacher) and shows the recovery; trains an EMEF task adapter on top
 * (packed weights and the LREC adapter frozen) on other stories;
 * writes `summary.md`, `summary.json`, `perplexity.svg`, `loss.svg` and the INT2 checkpoint into the
 * output folder. Exits 1 when a check fails (INT2 must hurt, GPTQ must beat RTN, LREC must recover, EMEF must learn).
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
      if (stories.length < 50)
        throw new CliError(`--data ${dataPath}: needs at least 50 stories, has ${stories.length}`);
      // the last stories are held out for evaluation; calibration and fine-tuning use the others
      const nEval = quick ? 20 : 100;
      const evalText = stories.slice(-nEval).join("<|endoftext|>");
      const trainStories = stories.slice(0, -nEval);
      const ctx = Math.min(256, float.config.seqLen);
      const evaluate = (w: LlamaWeights, label: string) => {
        const bar = progressBar(io, `eval ${label}`, { quiet: o.quiet });
        const r = evaluateStories(w, tok, evalText, { ctx, onProgress: (d, n) => bar.update(d, n) });
        bar.finish();
        return r;
      };
      const sample = (w: LlamaWeights) =>
        generate(w, tok, { prompt: PROMPT, temperature: 0, steps: quick ? 40 : 80 }).text;
      const rows: DemoRow[] = [];
      let evalTokens = 0;
      const add = (config: string, w: LlamaWeights, bitsPerWeight: number) => {
        const r = evaluate(w, config);
        evalTokens = r.tokens;
        const row = {
          config,
          bitsPerWeight,
          meanNll: r.meanNll,
          perplexity: r.perplexity,
          sample: sample(w),
        };
        rows.push(row);
        log(
          `\n== ${config}: perplexity ${r.perplexity.toFixed(3)} (NLL ${r.meanNll.toFixed(4)} nats/token)\n${row.sample}\n`,
        );
        return row;
      };

      log(
        `int21 demo: ${modelPath} (${float.config.dim}-dim, ${float.config.nLayers} layers), ${nEval} held-out stories, ctx ${ctx}\n`,
      );
      const fl = add("float32", float, 32);

      const format = makeFormat({ bits: 2, groupSize: 64, symmetric: false, scaleDtype: "f16" });
      const calibIds = tok.encode(trainStories.slice(0, 400).join("\n"), { bos: false });
      const calib = calibrationWindows(calibIds, quick ? 8 : 32, ctx, tok.bosId);
      const qbar = (label: string) => progressBar(io, label, { quiet: o.quiet });
      const rtnBar = qbar("quantize INT2 RTN");
      const rtn = quantizeModel(float, {
        format,
        method: "rtn",
        backend,
        onProgress: (p) => rtnBar.update(p.done, p.total),
      });
      rtnBar.finish();
      const bpw = format.bitsPerWeightAt(float.config.dim);
      const rt = add(`INT2 RTN (${format.name})`, rtn.weights, bpw);
      const gptqBar = qbar("quantize INT2 GPTQ");
      const gptq = quantizeModel(float, {
        format,
        method: "gptq",
        calib,
        backend,
        onProgress: (p) => gptqBar.update(p.done, p.total),
      });
      gptqBar.finish();
      const gp = add(`INT2 GPTQ (${format.name})`, gptq.weights, bpw);
      await mkdir(o.output, { recursive: true });
      await saveInt21Checkpoint(join(o.output, "stories260K-int2-gptq.safetensors"), gptq.weights);

      // LREC: LoRA layers trained so the packed student matches the float teacher (KL + λ·CE)
      const trainIds = tok.encode(trainStories.join("\n"), { bos: true });
      const lrBar = progressBar(io, "LREC", { quiet: o.quiet });
      const lr = await runLrec(float, gptq.weights, windowData(trainIds, { batch: 4, seq: 64, seed: 1 }), {
        steps: lrecSteps,
        r: 8,
        alpha: 16,
        lr: 2e-3,
        lambda: 64,
        log: (m) => io.stderr.write(`${m}\n`),
        onProgress: (p) => lrBar.update(p.step, p.totalSteps, `KL/token ${p.klPerToken.toFixed(3)}`),
      });
      lrBar.finish();
      // Effective bits per weight count the float32 adapters too: on a 260K-parameter model an r-8 adapter is
      // large next to the 2-bit weights, and the table says so rather than hiding it.
      const c = float.config;
      const kv = (c.dim * c.nKvHeads) / c.nHeads;
      const linearWeights = c.nLayers * (2 * c.dim * c.dim + 2 * kv * c.dim + 3 * c.hiddenDim * c.dim);
      const withAdapters = (names: string[]) =>
        bpw + (32 * names.reduce((n, a) => n + lr.model.parameterCount(a), 0)) / linearWeights;
      const lc = add(`INT2 GPTQ + LREC (r 8, ${lrecSteps} steps)`, gptq.weights, withAdapters(["lrec"]));
      await saveInt21Checkpoint(
        join(o.output, "stories260K-int2-gptq-lrec.safetensors"),
        baseWeights(gptq.weights),
        {
          adapters: checkpointAdaptersOf(lr.model, ["lrec"]),
        },
      );

      // EMEF: a task adapter on top (LREC adapter frozen, packed weights frozen), trained on the stories
      lr.model.setTrainable("lrec", false);
      const seq = quick ? 64 : 128;
      const examples = textDataset(trainStories.join("<|endoftext|>"), tok, {
        seqLen: seq,
        separator: "<|endoftext|>",
      });
      const heldOut = examples.slice(0, quick ? 8 : 32);
      const train = examples.slice(heldOut.length);
      const ftBar = progressBar(io, "EMEF fine-tune", { quiet: o.quiet });
      const ft = await finetune(
        gptq.weights,
        { train, heldOut },
        {
          lora: {
            name: "emef",
            targetModules: ["q_proj", "v_proj", "down_proj"],
            r: 8,
            alpha: 16,
            seed: 1,
            baseModel: "stories260K INT2 GPTQ + LREC",
          },
          steps,
          lr: 3e-3,
          schedule: { lr: 3e-3, warmupSteps: Math.min(10, Math.floor(steps / 10)), kind: "cosine" },
          batchSize: 8,
          evalEvery: Math.max(1, Math.floor(steps / 6)),
          seed: 1,
          adapterSink: peftAdapterSink(join(o.output, "emef-adapter"), gptq.weights),
          existing: lr.model,
          onProgress: (p) => ftBar.update(p.step, p.totalSteps, `loss ${p.loss.toFixed(3)}`),
        },
      );
      ftBar.finish();
      const em = add(
        `INT2 GPTQ + LREC + EMEF (r 8, ${steps} steps)`,
        gptq.weights,
        withAdapters(["lrec", "emef"]),
      );

      const hist = ft.history;
      // mean loss over the first (side 1) or last (side −1) fifth of the steps: single batches are noisy
      const tail = (h: [number, number][], side: 1 | -1) => {
        const n = Math.max(1, Math.floor(h.length / 5));
        const part = side === 1 ? h.slice(0, n) : h.slice(-n);
        return part.reduce((a, [, l]) => a + l, 0) / n;
      };
      const checks = [
        { name: "INT2 RTN hurts: its perplexity is above float32's", passed: rt.perplexity > fl.perplexity },
        { name: "GPTQ beats RTN at INT2", passed: gp.perplexity < rt.perplexity },
        {
          name: "LREC recovers: lower held-out perplexity than INT2 GPTQ",
          passed: lc.perplexity < gp.perplexity,
        },
        {
          name: "EMEF lowers the training loss (last fifth of the steps vs the first)",
          passed: tail(hist.train, -1) < tail(hist.train, 1),
        },
        {
          name: "INT2 GPTQ + LREC + EMEF stays below INT2 GPTQ's perplexity",
          passed: em.perplexity < gp.perplexity,
        },
      ];
      const summary: DemoSummary = {
        model: modelPath,
        evalStories: nEval,
        evalTokens,
        rows,
        lrec: {
          steps: lr.steps,
          firstKlPerToken: lr.history[0].klPerToken,
          lastKlPerToken: lr.history[lr.history.length - 1].klPerToken,
          seconds: lr.seconds,
        },
        finetune: {
          steps: ft.steps,
          firstLoss: hist.train[0][1],
          lastLoss: hist.train[hist.train.length - 1][1],
          ...(hist.eval.length > 0 ? { heldOutLoss: hist.eval[hist.eval.length - 1][1] } : {}),
          seconds: ft.seconds,
        },
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
          `stories260K INT2: LREC (${lr.steps} steps) then EMEF (${ft.steps} steps)`,
          [
            {
              name: "LREC: KL to the float teacher",
              points: lr.history
                .filter((h) => !h.skipped)
                .map((h) => [h.step, h.klPerToken] as [number, number]),
            },
            {
              name: "EMEF: training loss",
              points: hist.train.map(([st, l]) => [lr.steps + st, l] as [number, number]),
            },
            {
              name: "EMEF: held-out loss",
              points: hist.eval.map(([st, l]) => [lr.steps + st, l] as [number, number]),
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
