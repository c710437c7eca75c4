// `int21 demo`: the INT2.1 story on stories260K — float → INT2 (damage) → EMEF fine-tune (recovery) → generate.
import { existsSync, readFileSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { LLAMA_TARGETS, lossChartSvg, textDataset } from "@int21/lora";
import {
  Llama2cTokenizer,
  type LlamaWeights,
  calibrationWindows,
  evaluateStories,
  generate,
  loadLlama2c,
  quantizeModel,
  saveInt21Checkpoint,
} from "@int21/model-llama";
import { makeFormat } from "@int21/quant-kernels";
import { Command, Option } from "commander";
import { barChartSvg } from "../charts";
import { type CliIo, CliError, EXIT } from "../cli-io";
import { runProgram, threadsOption, withBackend, writeJson } from "../command";
import { trainLoRA } from "../emef";
import { markdownTable, textTable } from "../format-table";
import { progressBar } from "../progress";
import { intIn } from "../options";

/** The shared data folder: `INT21_SHARED`, else `../shared` from the working directory. */
function sharedDir(io: CliIo): string {
  return resolve(io.env?.INT21_SHARED ?? join("..", "shared"));
}

/** The options of `int21 demo`. */
export function demoProgram(): Command {
  return new Command("demo")
    .description(
      "the INT2.1 story on stories260K: float → INT2 GPTQ (damage) → EMEF LoRA fine-tune (recovery) → generate; writes a table and charts",
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
      new Option("--steps <n>", "EMEF fine-tuning steps (default 300; 12 with --quick)").argParser(intIn(1)),
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
  finetune: { steps: number; firstLoss: number; lastLoss: number; heldOutLoss?: number; seconds: number };
  seconds: number;
  checks: { name: string; passed: boolean }[];
}

const PROMPT = "Once upon a time";

/**
 * `int21 demo`: loads the float model, measures perplexity (per-story protocol on held-out stories) and
 * a greedy sample; quantizes to INT2 (RTN and GPTQ, group 64) and shows the damage; trains a LoRA
 * adapter on the INT2 GPTQ model (EMEF: packed weights frozen) on other stories and shows the recovery;
 * writes `summary.md`, `summary.json`, `perplexity.svg`, `loss.svg` and the INT2 checkpoint into the
 * output folder. Exits 1 when a check fails (INT2 must hurt, GPTQ must beat RTN, EMEF must recover).
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
    const steps = o.steps ?? (quick ? 12 : 300);
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

      // EMEF: a LoRA adapter on the frozen packed INT2 model, trained on the other stories
      const seq = quick ? 64 : 128;
      const examples = textDataset(trainStories.join("<|endoftext|>"), tok, {
        seqLen: seq,
        separator: "<|endoftext|>",
      });
      const heldOut = examples.slice(0, quick ? 8 : 32);
      const train = examples.slice(heldOut.length);
      const ftBar = progressBar(io, "EMEF fine-tune", { quiet: o.quiet });
      const ft = await trainLoRA(
        gptq.weights,
        { train, heldOut },
        {
          lora: {
            targetModules: [...LLAMA_TARGETS],
            r: 8,
            alpha: 16,
            seed: 1,
            baseModel: "stories260K INT2 GPTQ",
          },
          steps,
          lr: 5e-3,
          batchSize: 8,
          evalEvery: Math.max(1, Math.floor(steps / 6)),
          seed: 1,
          adapterDir: join(o.output, "emef-adapter"),
          onProgress: (p) => ftBar.update(p.step, p.totalSteps, `loss ${p.loss.toFixed(3)}`),
        },
      );
      ftBar.finish();
      const em = add(`INT2 GPTQ + EMEF LoRA (r 8, ${steps} steps)`, gptq.weights, bpw);

      const hist = ft.history;
      const checks = [
        { name: "INT2 RTN hurts: its perplexity is above float32's", passed: rt.perplexity > fl.perplexity },
        { name: "GPTQ beats RTN at INT2", passed: gp.perplexity < rt.perplexity },
        {
          name: "EMEF lowers the training loss",
          passed: hist.train[hist.train.length - 1][1] < hist.train[0][1],
        },
        {
          name: "EMEF lowers INT2 GPTQ perplexity on held-out stories",
          passed: em.perplexity < gp.perplexity,
        },
      ];
      const summary: DemoSummary = {
        model: modelPath,
        evalStories: nEval,
        evalTokens,
        rows,
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
      await writeFile(join(o.output, "summary.md"), md);
      await writeFile(join(o.output, "summary.json"), `${JSON.stringify(summary, null, 2)}\n`);
      await writeFile(
        join(o.output, "perplexity.svg"),
        barChartSvg(
          "stories260K perplexity on held-out TinyStories (lower is better)",
          rows.map((r) => [r.config, r.perplexity]),
        ),
      );
      await writeFile(
        join(o.output, "loss.svg"),
        lossChartSvg(hist, `EMEF on INT2 GPTQ stories260K (${ft.steps} steps)`),
      );
      if (o.json) writeJson(io, summary);
      else {
        io.stdout.write(`\n${textTable(header, tableRows)}`);
        for (const c of checks) io.stdout.write(`${c.passed ? "ok  " : "FAIL"} ${c.name}\n`);
        io.stdout.write(
          `wrote ${o.output}/summary.md, summary.json, perplexity.svg, loss.svg, stories260K-int2-gptq.safetensors, emef-adapter/ (${summary.seconds.toFixed(0)} s)\n`,
        );
      }
      return checks.every((c) => c.passed) ? EXIT.ok : EXIT.failure;
    });
  });
}
