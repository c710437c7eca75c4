// The INT2.1 story as one call (what `int21 demo` runs): a float LLaMA → INT2 RTN and GPTQ (the damage) →
// LREC (the recovery) → an EMEF task adapter on top → held-out perplexity and a greedy sample at every stage,
// and the checks that the story holds. Progress goes to a callback; nothing is printed.
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { setBackend } from "@int21/autograd";
import { checkpointAdaptersOf, baseWeightsOf, peftAdapterSink, saveInt21Checkpoint } from "@int21/loaders";
import { textDataset } from "@int21/lora";
import {
  type LlamaWeights,
  type Tokenizer,
  calibrationWindows,
  evaluateStories,
  finetune,
  generate,
  quantizeModel,
} from "@int21/model-llama";
import { type Backend, makeFormat } from "@int21/quant-kernels";
import { windowData } from "./data";
import { runLrec } from "./run-lrec";

/** {@link runInt2Pipeline} needs at least this many stories (the held-out ones and more to train on). */
export const INT2_PIPELINE_MIN_STORIES = 50;

/** The prompt of every greedy sample. */
const PROMPT = "Once upon a time";

/** What {@link runInt2Pipeline} takes. */
export interface Int2PipelineOptions {
  /**
   * The kernel backend of the whole run (quantizers, evaluation, LREC and EMEF training): explicit, there is
   * no global default. Autograd's backend is set to it for the run and restored after.
   */
  backend: Backend;
  /** LREC steps (LoRA layers trained so the packed student matches the float teacher). */
  lrecSteps: number;
  /** EMEF fine-tuning steps (a task adapter on top of the frozen LREC adapter). */
  steps: number;
  /**
   * Small evaluation and calibration sets (CI): 20 held-out stories instead of 100, 8 calibration windows
   * instead of 32, 40-token samples instead of 80, fine-tuning examples of 64 tokens instead of 128 with 8
   * held out instead of 32. Default false.
   */
  quick?: boolean;
  /** The model's name in labels and file names (`<name>-int2-gptq.safetensors`). Default `model`. */
  name?: string;
  /**
   * Where to write the model files: `<name>-int2-gptq.safetensors` (INT2 GPTQ), `<name>-int2-gptq-lrec.safetensors`
   * (the same with the LREC adapter stored in it) and `emef-adapter/` (the EMEF adapter, PEFT). Created when
   * missing. Without it nothing is written.
   */
  output?: string;
  /** Called as the run goes ({@link Int2PipelineEvent}); a progress display draws from it. */
  onProgress?: (e: Int2PipelineEvent) => void;
}

/**
 * What {@link runInt2Pipeline} reports, in order: `start` once; per stage (`eval <config>`, `quantize INT2 RTN`,
 * `quantize INT2 GPTQ`, `LREC`, `EMEF fine-tune`) a `stage-start`, `progress` events (`note`: the current KL per
 * token or loss) and a `stage-end`; a `row` when a configuration is measured; `log` for LREC's notes.
 */
export type Int2PipelineEvent =
  | { kind: "start"; evalStories: number; ctx: number }
  | { kind: "stage-start"; stage: string }
  | { kind: "progress"; stage: string; done: number; total: number; note?: string }
  | { kind: "stage-end"; stage: string }
  | { kind: "row"; row: Int2Row }
  | { kind: "log"; message: string };

/** One configuration measured by {@link runInt2Pipeline}. */
export interface Int2Row {
  /** e.g. `float32`, `INT2 GPTQ (int2-g64-asym-f16)`, `INT2 GPTQ + LREC (r 8, 150 steps)`. */
  config: string;
  /** Bits per linear weight, the float32 LoRA adapters counted (they are large next to 2-bit weights on a small model). */
  bitsPerWeight: number;
  /** Mean NLL (nats per token) on the held-out stories. */
  meanNll: number;
  perplexity: number;
  /** Greedy continuation of "Once upon a time". */
  sample: string;
}

/** One check of the story (INT2 hurts, GPTQ beats RTN, LREC recovers, EMEF learns). */
export interface Int2Check {
  name: string;
  passed: boolean;
}

/** The summary of a {@link runInt2Pipeline} run: the table, the training runs and the checks. */
export interface Int2Summary {
  /** Held-out stories (the last ones given). */
  evalStories: number;
  /** Tokens scored on them. */
  evalTokens: number;
  /** float32, INT2 RTN, INT2 GPTQ, INT2 GPTQ + LREC, INT2 GPTQ + LREC + EMEF. */
  rows: Int2Row[];
  lrec: { steps: number; firstKlPerToken: number; lastKlPerToken: number; seconds: number };
  /** `heldOutLoss`: the last held-out evaluation, when there was one. */
  finetune: { steps: number; firstLoss: number; lastLoss: number; heldOutLoss?: number; seconds: number };
  checks: Int2Check[];
}

/** What {@link runInt2Pipeline} returns: the summary, the context length and the training curves. */
export interface Int2PipelineResult extends Int2Summary {
  /** The evaluation and training context (min(256, the model's seqLen)). */
  ctx: number;
  /** `[step, value]` points: LREC's KL per token (steps that were not skipped), EMEF's training and held-out loss. */
  curves: {
    lrecKlPerToken: [number, number][];
    emefTrainLoss: [number, number][];
    emefHeldOutLoss: [number, number][];
  };
}

/**
 * The INT2.1 story on a small LLaMA: measures the float model (perplexity with model-llama's per-story
 * protocol on the last held-out stories, and a greedy sample); quantizes it to INT2 (`int2-g64-asym-f16`)
 * with RTN and with GPTQ (calibrated on the first training stories) and measures both; runs LREC (rank 8,
 * KL + 64·CE against the float teacher) on the GPTQ model and measures it; freezes the LREC adapter and
 * fine-tunes an EMEF adapter (rank 8 on q, v and down) on the training stories and measures that. Returns
 * the rows, the runs' summaries and curves, and the checks (INT2 RTN is above float32, GPTQ below RTN, LREC
 * below GPTQ, EMEF's training loss falls, EMEF stays below GPTQ). `stories` are texts, the last ones held
 * out; `float` is used as the teacher and left unchanged. Everything runs on `opts.backend`: it is
 * autograd's backend for the run (the previous one is restored after). Throws when there are fewer than
 * {@link INT2_PIPELINE_MIN_STORIES} stories or a step count is not a positive integer.
 *
 * ```ts
 * const r = await runInt2Pipeline(float, tok, stories, { backend, lrecSteps: 150, steps: 150, output: "out" });
 * for (const row of r.rows) console.log(row.config, row.perplexity.toFixed(3));
 * ```
 */
export async function runInt2Pipeline(
  float: LlamaWeights,
  tokenizer: Tokenizer,
  stories: readonly string[],
  opts: Int2PipelineOptions,
): Promise<Int2PipelineResult> {
  const { lrecSteps, steps } = opts;
  for (const [k, v] of [
    ["lrecSteps", lrecSteps],
    ["steps", steps],
  ] as const)
    if (!Number.isInteger(v) || v < 1)
      throw new Error(`runInt2Pipeline: ${k} must be a positive integer, got ${v}`);
  if (stories.length < INT2_PIPELINE_MIN_STORIES)
    throw new Error(
      `runInt2Pipeline: needs at least ${INT2_PIPELINE_MIN_STORIES} stories, has ${stories.length}`,
    );
  const previous = setBackend(opts.backend);
  try {
    return await pipeline(float, tokenizer, stories, opts);
  } finally {
    setBackend(previous);
  }
}

/** {@link runInt2Pipeline} after its checks, with autograd's backend set. */
async function pipeline(
  float: LlamaWeights,
  tokenizer: Tokenizer,
  stories: readonly string[],
  opts: Int2PipelineOptions,
): Promise<Int2PipelineResult> {
  const { backend, lrecSteps, steps, quick = false, name = "model", output } = opts;
  const report = opts.onProgress ?? (() => {});
  const stage = async <T>(
    label: string,
    run: (progress: (d: number, n: number, note?: string) => void) => Promise<T> | T,
  ) => {
    report({ kind: "stage-start", stage: label });
    const r = await run((done, total, note) =>
      report({ kind: "progress", stage: label, done, total, ...(note !== undefined ? { note } : {}) }),
    );
    report({ kind: "stage-end", stage: label });
    return r;
  };

  // the last stories are held out for evaluation; calibration and fine-tuning use the others
  const nEval = quick ? 20 : 100;
  const evalText = stories.slice(-nEval).join("<|endoftext|>");
  const trainStories = stories.slice(0, -nEval);
  const ctx = Math.min(256, float.config.seqLen);
  report({ kind: "start", evalStories: nEval, ctx });
  const rows: Int2Row[] = [];
  let evalTokens = 0;
  const add = async (config: string, w: LlamaWeights, bitsPerWeight: number) => {
    const r = await stage(`eval ${config}`, (progress) =>
      evaluateStories(w, tokenizer, evalText, { ctx, onProgress: (d, n) => progress(d, n) }),
    );
    evalTokens = r.tokens;
    const sample = generate(w, tokenizer, { prompt: PROMPT, temperature: 0, steps: quick ? 40 : 80 }).text;
    const row = { config, bitsPerWeight, meanNll: r.meanNll, perplexity: r.perplexity, sample };
    rows.push(row);
    report({ kind: "row", row });
    return row;
  };

  const fl = await add("float32", float, 32);

  const format = makeFormat({ bits: 2, groupSize: 64, symmetric: false, scaleDtype: "f16" });
  const calibIds = tokenizer.encode(trainStories.slice(0, 400).join("\n"), { bos: false });
  const calib = calibrationWindows(calibIds, quick ? 8 : 32, ctx, tokenizer.bosId);
  const rtn = await stage("quantize INT2 RTN", (progress) =>
    quantizeModel(float, { format, method: "rtn", backend, onProgress: (p) => progress(p.done, p.total) }),
  );
  const bpw = format.bitsPerWeightAt(float.config.dim);
  const rt = await add(`INT2 RTN (${format.name})`, rtn.weights, bpw);
  const gptq = await stage("quantize INT2 GPTQ", (progress) =>
    quantizeModel(float, {
      format,
      method: "gptq",
      calib,
      backend,
      onProgress: (p) => progress(p.done, p.total),
    }),
  );
  const gp = await add(`INT2 GPTQ (${format.name})`, gptq.weights, bpw);
  if (output !== undefined) {
    await mkdir(output, { recursive: true });
    await saveInt21Checkpoint(join(output, `${name}-int2-gptq.safetensors`), gptq.weights);
  }

  // LREC: LoRA layers trained so the packed student matches the float teacher (KL + λ·CE)
  const trainIds = tokenizer.encode(trainStories.join("\n"), { bos: true });
  const lr = await stage("LREC", (progress) =>
    runLrec(float, gptq.weights, windowData(trainIds, { batch: 4, seq: 64, seed: 1 }), {
      steps: lrecSteps,
      r: 8,
      alpha: 16,
      lr: 2e-3,
      lambda: 64,
      log: (message) => report({ kind: "log", message }),
      onProgress: (p) => progress(p.step, p.totalSteps, `KL/token ${p.klPerToken.toFixed(3)}`),
    }),
  );
  // Effective bits per weight count the float32 adapters too: on a 260K-parameter model an r-8 adapter is
  // large next to the 2-bit weights, and the table says so rather than hiding it.
  const c = float.config;
  const kv = (c.dim * c.nKvHeads) / c.nHeads;
  const linearWeights = c.nLayers * (2 * c.dim * c.dim + 2 * kv * c.dim + 3 * c.hiddenDim * c.dim);
  const withAdapters = (names: string[]) =>
    bpw + (32 * names.reduce((n, a) => n + lr.model.parameterCount(a), 0)) / linearWeights;
  const lc = await add(`INT2 GPTQ + LREC (r 8, ${lrecSteps} steps)`, gptq.weights, withAdapters(["lrec"]));
  if (output !== undefined)
    await saveInt21Checkpoint(
      join(output, `${name}-int2-gptq-lrec.safetensors`),
      baseWeightsOf(gptq.weights),
      {
        adapters: checkpointAdaptersOf(lr.model, ["lrec"]),
      },
    );

  // EMEF: a task adapter on top (LREC adapter frozen, packed weights frozen), trained on the stories
  lr.model.setTrainable("lrec", false);
  const examples = textDataset(trainStories.join("<|endoftext|>"), tokenizer, {
    seqLen: quick ? 64 : 128,
    separator: "<|endoftext|>",
  });
  const heldOut = examples.slice(0, quick ? 8 : 32);
  const train = examples.slice(heldOut.length);
  const ft = await stage("EMEF fine-tune", (progress) =>
    finetune(
      gptq.weights,
      { train, heldOut },
      {
        lora: {
          name: "emef",
          targetModules: ["q_proj", "v_proj", "down_proj"],
          r: 8,
          alpha: 16,
          seed: 1,
          baseModel: `${name} INT2 GPTQ + LREC`,
        },
        steps,
        lr: 3e-3,
        schedule: { lr: 3e-3, warmupSteps: Math.min(10, Math.floor(steps / 10)), kind: "cosine" },
        batchSize: 8,
        evalEvery: Math.max(1, Math.floor(steps / 6)),
        seed: 1,
        ...(output !== undefined
          ? { adapterSink: peftAdapterSink(join(output, "emef-adapter"), gptq.weights) }
          : {}),
        existing: lr.model,
        onProgress: (p) => progress(p.step, p.totalSteps, `loss ${p.loss.toFixed(3)}`),
      },
    ),
  );
  const em = await add(
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
  const checks: Int2Check[] = [
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
  return {
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
    checks,
    ctx,
    curves: {
      lrecKlPerToken: lr.history.filter((h) => !h.skipped).map((h) => [h.step, h.klPerToken]),
      emefTrainLoss: hist.train.map(([st, l]) => [st, l]),
      emefHeldOutLoss: hist.eval.map(([st, l]) => [st, l]),
    },
  };
}
