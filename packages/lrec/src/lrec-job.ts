// One LREC job, the whole of what `int21 lrec` does between reading its files and writing its outputs:
// tokenize the texts, hold out the evaluation tokens, pick the start (B = 0, SVD, activation-weighted SVD,
// LoftQ's re-quantization), train through runLrec (lora's Trainer: schedule, resumable state, divergence),
// score the held-out tokens with model-llama's evaluateNll against the teacher, count the bits.
import {
  contentHasher,
  type DivergenceOptions,
  type LoRAModel,
  type RunDifference,
  type RunIdentity,
  RunMismatchError,
} from "@int21/lora";
import {
  calibrationWindows,
  evaluateNll,
  LINEAR_NAMES,
  type LinearName,
  type LlamaWeights,
  quantizeModel,
  type Tokenizer,
} from "@int21/model-llama";
import type { Backend, QuantFormat } from "@int21/quant-kernels";
import { type AdapterDtype, effectiveBits, LREC_TARGETS } from "./adapter";
import { windowData } from "./data";
import { loftqQuantize } from "./init-methods";
import {
  type LrecCheckpointStatus,
  type LrecHeldOutScore,
  type LrecOptions,
  type LrecProgress,
  type LrecStep,
  lrecChartSvg,
  lrecCheckpointStatus,
  lrecRunIdentity,
  runLrec,
} from "./run-lrec";

/** How the adapter starts: B = 0, the SVD of `W − Ŵ`, or that SVD weighted by the inputs each projection sees. */
export type LrecInit = "zero" | "svd" | "svd-act";

/**
 * The recipe of an LREC job: what `int21 lrec` trains by default. These are the settings of the row of
 * the LREC methods table (benchmarks/results/lrec-methods.md) that recovers 90.6 % of the INT2 GPTQ
 * gap of stories260K on held-out stories: rank 8 on all seven projections, an activation-weighted
 * (Cholesky-whitened) SVD start after 3 LoftQ alternations, group scales and zeros trained at rate 10,
 * Adam at 1.5e-3 with 10 warmup steps and a cosine down to lr/10, batches of 4 × 128 tokens, 1000 steps.
 */
export interface LrecRecipe {
  /** Optimizer steps. Default 1000. */
  steps: number;
  /** LoRA rank. Default 8. */
  rank: number;
  /** LoRA alpha. Default 2 × rank. */
  alpha?: number;
  /**
   * λ, the weight of the cross-entropy term (the KL is summed over positions, the CE averaged). Default
   * by the student's bits, as the table: 120 at 2 bits, 40 at 3, 10 at 4 or more.
   */
  lambda?: number;
  /** Peak learning rate (Adam). Default 1.5e-3. */
  lr: number;
  /** cosine: warmup of min(10, steps / 10) steps, then a cosine down to lr / 10; or constant. Default cosine. */
  schedule: "cosine" | "constant";
  /** Tokens per training window. Default 128. */
  seq: number;
  /** Windows per step. Default 4. */
  batch: number;
  /** Projections to correct. Default all seven per layer ({@link LREC_TARGETS}). */
  targets: readonly string[];
  /** Default `svd-act`. */
  init: LrecInit;
  /**
   * LoftQ alternations before training (`loftqQuantize`): the teacher is quantized again, in the
   * student's own format with `loftqMethod`, as `quantize(W − L)` with `L` the rank-r part of the
   * error, `loftqIterations` times; the adapter then starts at the last `L`. 0 keeps the given packed
   * student. Default 3; needs an SVD start (0 with `init: "zero"`), and a student whose projections
   * share one affine group format (by default LoftQ is skipped, with a note, where they do not).
   */
  loftqIterations: number;
  /** The quantizer LoftQ re-quantizes with (a registered name: `gptq`, `rtn`, …). Default `gptq`. */
  loftqMethod: string;
  /**
   * Train the packed group scales (and zeros) with the adapter; they are stored in place of the old
   * ones (same format, same size). Formats that keep their scales inside their blocks (ggml k-quants,
   * codebooks) train the adapter only. Default true.
   */
  trainScales: boolean;
  /** ρ: scale `s₀·exp(ρ·u)`, zero `z₀ + ρ·v`. Default 10. */
  scaleRate: number;
  /** Precision the adapter is rounded to before the final evaluation (and stored in). Default f16. */
  adapterDtype: AdapterDtype;
  /** Held-out tokens scored before and after. Default 2048. */
  evalTokens: number;
  /** Seed of the window order. Default 0. */
  seed: number;
  /** Calibration windows of the activation-weighted SVD and of LoftQ's quantizer. Default 16. */
  calibWindows: number;
}

/** The default recipe (see {@link LrecRecipe}); λ is chosen by the student's bits ({@link recipeLambda}). */
export const LREC_RECIPE: Readonly<Omit<LrecRecipe, "alpha" | "lambda">> = Object.freeze({
  steps: 1000,
  rank: 8,
  lr: 1.5e-3,
  schedule: "cosine",
  seq: 128,
  batch: 4,
  targets: LREC_TARGETS,
  init: "svd-act",
  loftqIterations: 3,
  loftqMethod: "gptq",
  trainScales: true,
  scaleRate: 10,
  adapterDtype: "f16",
  evalTokens: 2048,
  seed: 0,
  calibWindows: 16,
});

/** λ of the methods table for a student of `bits` bits: 120 at 2, 40 at 3, 10 at 4 or more. */
export function recipeLambda(bits: number): number {
  return bits <= 2 ? 120 : bits === 3 ? 40 : 10;
}

/** Options of {@link lrecJob}: the loaded models and texts, the recipe, and how the run is kept. */
export interface LrecJobOptions extends Partial<LrecRecipe> {
  /** The float model the student was quantized from. */
  teacher: LlamaWeights;
  /** The packed student (its projections packed; a LoRA wrapper on them is looked through). */
  student: LlamaWeights;
  /** Encodes the texts (with BOS by its own rule, `addBos`, default on). */
  tokenizer: Pick<Tokenizer, "encode" | "bosId" | "addBos">;
  /** Training text (`<|endoftext|>` separators read as newlines). */
  trainText: string;
  /**
   * Held-out text: its first `evalTokens` tokens are scored. Without it the last
   * min(`evalTokens`, tokens / 5) tokens of `trainText` are held out of training and scored.
   */
  heldOutText?: string;
  /** How messages name the inputs (e.g. `--data story.txt`). Default "the training text" / "the teacher". */
  labels?: { train?: string; teacher?: string };
  /** Resumable state file (a lora Trainer checkpoint); without it the run is not resumable. */
  statePath?: string;
  /** Steps between state writes. Default 10. */
  checkpointEvery?: number;
  /** Continue from a state file of a different run (`resumedDespite` lists what differs). Default false. */
  forceResume?: boolean;
  /**
   * When the state file holds every step of this very run, return `{ alreadyFinished: true }` before
   * any work (the caller knows its outputs are still there). Default false: such a run is resumed,
   * trains nothing, and is evaluated again.
   */
  skipIfFinished?: boolean;
  /** What else identifies the run (content hashes of the files read); saved in the state file. */
  identity?: RunIdentity;
  divergence?: DivergenceOptions;
  /** Kernel backend of the SVD starts and of LoftQ's quantizer. Default: the student's own. */
  backend?: Backend;
  /** Stop after this step (a later run resumes). */
  until?: number;
  /** What the state file holds, against this run, read before any work (with `statePath`). */
  onStatus?: (status: LrecCheckpointStatus) => void;
  /** Each step: losses, lr, tokens/s and the ETA. */
  onProgress?: (p: LrecProgress) => void;
  /** Stages and notes (LoftQ iterations, scoring, scales kept fixed). */
  onNote?: (message: string) => void;
  /** Warnings (skipped steps). Default `console.warn`. */
  log?: (message: string) => void;
}

/** The held-out evaluation of a job: the plain quantized student, the corrected one, the teacher. */
export interface LrecJobHeldOut {
  /** Scored tokens. */
  tokens: number;
  /** `heldOut`: the first tokens of `heldOutText`; `train-tail`: the held-out end of `trainText`. */
  source: "heldOut" | "train-tail";
  /** The packed student as given (before LoftQ and the adapter). */
  quantized: LrecHeldOutScore;
  /** The trained student: adapter rounded to `adapterDtype`, trained scales in place. */
  corrected: LrecHeldOutScore;
  /** The float teacher's mean NLL and perplexity on the same tokens. */
  teacher: { meanNll: number; perplexity: number };
  /** (NLL_quantized − NLL_corrected) / (NLL_quantized − NLL_teacher); null when the gap is ≤ 1e-9. */
  gapRecovered: number | null;
}

/** What {@link lrecJob} returns when the state file already holds the whole run (`skipIfFinished`). */
export interface LrecJobFinished {
  alreadyFinished: true;
  /** The step the state file holds. */
  steps: number;
  /** The recipe as resolved (defaults filled in). */
  recipe: LrecRecipe & { alpha: number; lambda: number };
}

/** What {@link lrecJob} returns after training. */
export interface LrecJobResult {
  alreadyFinished: false;
  recipe: LrecRecipe & { alpha: number; lambda: number };
  /**
   * The student the adapter sits on: LoftQ's re-quantization of the teacher when `loftqIterations` > 0,
   * else the given one; trained scales written into its packed layers; projections LoRA-wrapped.
   * Save its base with `model`'s adapter `lrec`.
   */
  student: LlamaWeights;
  /** The LoRA state; the trained adapter is `lrec` (rounded to `adapterDtype`). */
  model: LoRAModel;
  /** Per step, including steps before a resume. */
  history: LrecStep[];
  steps: number;
  resumed: boolean;
  resumedDespite: readonly RunDifference[];
  skippedSteps: number;
  /** Wall time of this process's training steps. */
  seconds: number;
  trainableParameters: number;
  trainTokens: number;
  /** Whether scales were trained (false when asked but the format keeps them inside its blocks). */
  trainScales: boolean;
  /** Absent with fewer than 2 held-out tokens. */
  heldOut?: LrecJobHeldOut;
  /** Bits per weight of the block projections with the adapter at `adapterDtype`. */
  bitsPerWeight: number;
  /** The loss curves (SVG) of `history`. */
  lossChartSvg: string;
}

/** The packed formats of the student's block projections (a LoRA wrapper looked through). */
function studentFormats(student: LlamaWeights): QuantFormat[] {
  const out = new Map<string, QuantFormat>();
  for (const L of student.layers)
    for (const k of Object.keys(LINEAR_NAMES) as LinearName[]) {
      let l = L[k] as unknown as { base?: unknown; q?: { format: QuantFormat } };
      while (l.base !== undefined) l = l.base as typeof l;
      if (l.q?.format) out.set(l.q.format.name, l.q.format);
    }
  return [...out.values()];
}

/**
 * Runs one LREC job on loaded models: encodes `trainText` (and `heldOutText`), holds out the evaluation
 * tokens, scores the packed student against the teacher (model-llama's `evaluateNll` with `teacher`),
 * re-quantizes with LoftQ when asked, adds the adapter (B = 0 / SVD / activation-weighted SVD), trains
 * it with {@link runLrec} (resuming from `statePath`), scores the corrected student and counts its bits.
 * Writes nothing but the state file: the caller saves `student`'s base with `model`'s adapter and the
 * chart. A state file of a different run throws lora's `RunMismatchError` (unless `forceResume`).
 */
export async function lrecJob(opts: LrecJobOptions): Promise<LrecJobFinished | LrecJobResult> {
  const { teacher, tokenizer } = opts;
  const given = opts.student;
  const c = given.config;
  const formats = studentFormats(given);
  if (formats.length === 0)
    throw new Error("lrec: lrecJob: the student has no packed projections (quantize it first)");
  for (const k of ["dim", "nLayers", "vocabSize"] as const)
    if (teacher.config[k] !== c[k])
      throw new Error(
        `${opts.labels?.teacher ?? "lrec: lrecJob: the teacher"}: its ${k} is ${teacher.config[k]}, the student's is ${c[k]}`,
      );
  const recipe = resolveRecipe(opts, formats);
  const r = recipe;
  const trainLabel = opts.labels?.train ?? "the training text";
  if (r.seq + 1 > c.seqLen)
    throw new Error(`lrec: lrecJob: seq ${r.seq} must be below the model's context (seqLen ${c.seqLen})`);
  const note = opts.onNote ?? (() => {});
  // trained scales need affine group scales; a ggml block or codebook format keeps its own inside
  const fixed = formats.find((f) => (f.decode ?? "affine") !== "affine");
  // LoftQ re-quantizes in the student's one affine format; by default it is skipped where that is not so
  const loftqBlocked =
    formats.length > 1
      ? `the student's projections have ${formats.length} formats (${formats.map((f) => f.name).join(", ")}) and LoftQ re-quantizes in one`
      : fixed
        ? `the student's ${fixed.name} projections are not affine group formats (decode "${fixed.decode}")`
        : undefined;
  if (loftqBlocked && r.loftqIterations > 0) {
    if (opts.loftqIterations !== undefined)
      throw new Error(`lrec: lrecJob: LoftQ (loftqIterations ${r.loftqIterations}): ${loftqBlocked}; set 0`);
    r.loftqIterations = 0;
    note(`LoftQ skipped: ${loftqBlocked}`);
  }
  let trainScales = r.trainScales;
  if (trainScales && fixed) {
    trainScales = false;
    note(
      `the student's ${fixed.name} projections keep their scales inside their blocks (decode "${fixed.decode}"): training the adapter only`,
    );
  }
  // BOS as the tokenizer's own rule says (HF add_bos_token / post-processor, GGUF, llama2.c always)
  const bos = tokenizer.addBos ?? true;
  const encode = (text: string) => tokenizer.encode(text.replace(/<\|endoftext\|>/g, "\n"), { bos });
  const all = encode(opts.trainText);
  let train: number[];
  let held: number[];
  if (opts.heldOutText !== undefined) {
    train = all;
    held = encode(opts.heldOutText).slice(0, r.evalTokens);
  } else {
    const nEval = Math.min(r.evalTokens, Math.floor(all.length / 5));
    train = all.slice(0, all.length - nEval);
    held = all.slice(all.length - nEval);
  }
  if (train.length < r.seq + 1)
    throw new Error(
      `${trainLabel}: ${train.length} training tokens, fewer than one window (seq ${r.seq} + 1)`,
    );
  const svdStart = r.init !== "zero";
  const calib =
    svdStart || r.loftqIterations > 0
      ? calibrationWindows(train, r.calibWindows, Math.min(r.seq + 1, train.length), tokenizer.bosId)
      : undefined;
  const runOpts: LrecOptions = {
    steps: r.steps,
    r: r.rank,
    alpha: r.alpha,
    lr: r.lr,
    schedule:
      r.schedule === "cosine"
        ? { kind: "cosine", warmupSteps: Math.min(10, Math.floor(r.steps / 10)), minLr: r.lr / 10 }
        : { kind: "constant" },
    lambda: r.lambda,
    targets: r.targets,
    init: svdStart ? "svd" : "zero",
    ...(r.init === "svd-act" ? { calib, weighting: "cholesky" as const } : {}),
    trainScales: trainScales ? { rate: r.scaleRate } : false,
    ...(opts.statePath !== undefined
      ? { checkpointPath: opts.statePath, checkpointEvery: opts.checkpointEvery ?? 10 }
      : {}),
    identity: {
      ...opts.identity,
      trainTokens: (await contentHasher()).update(Int32Array.from(train)).digest(),
      seq: r.seq,
      batch: r.batch,
      windowSeed: r.seed,
      initWeighting: r.init === "svd-act" ? `cholesky over ${r.calibWindows} training windows` : "none",
      // only when on, so state files of runs without it keep their identity
      ...(r.loftqIterations > 0
        ? { loftq: `${r.loftqIterations} iterations, ${r.loftqMethod} in ${formats[0].name}` }
        : {}),
    },
    forceResume: opts.forceResume === true,
    ...(opts.divergence ? { divergence: opts.divergence } : {}),
    adapterDtype: r.adapterDtype,
    ...(opts.until !== undefined ? { until: opts.until } : {}),
    ...(opts.log ? { log: opts.log } : {}),
    ...(opts.onProgress ? { onProgress: opts.onProgress } : {}),
  };
  if (opts.statePath !== undefined) {
    // a finished or a different run is told apart from the state file's header, before any work
    const status = await lrecCheckpointStatus(opts.statePath, lrecRunIdentity(runOpts));
    opts.onStatus?.(status);
    if (status.differences.length > 0 && !opts.forceResume)
      throw new RunMismatchError(opts.statePath, status.step, status.differences);
    if (status.finished && opts.skipIfFinished) return { alreadyFinished: true, steps: status.step, recipe };
  }
  const ctx = Math.min(c.seqLen, 256);
  const score = (w: LlamaWeights): LrecHeldOutScore => evaluateNll(w, held, { ctx, teacher });
  if (held.length >= 2) note(`scoring ${held.length} held-out tokens (quantized student)`);
  const quantized = held.length >= 2 ? score(given) : undefined;
  let student = given;
  if (r.loftqIterations > 0) {
    const format = formats[0];
    const loftq = loftqQuantize(teacher, {
      quantize: (w) =>
        quantizeModel(w, {
          format,
          quantizer: r.loftqMethod,
          ...(calib ? { calib } : {}),
          ...(opts.backend ? { backend: opts.backend } : {}),
        }).weights,
      r: r.rank,
      alpha: r.alpha,
      iterations: r.loftqIterations,
      targets: r.targets,
      ...(r.init === "svd-act" && calib ? { calib, weighting: "cholesky" as const } : {}),
      ...(opts.backend ? { backend: opts.backend } : {}),
      onIteration: (i, e) =>
        note(`LoftQ iteration ${i} of ${r.loftqIterations}: weighted error left ${(100 * e).toFixed(1)} %`),
    });
    // the student's own embedding and classifier (packed or not) with LoftQ's projections
    student = { ...given, layers: loftq.layers.map((L, l) => ({ ...given.layers[l], ...pick(L) })) };
  }
  const backend = opts.backend;
  const res = await runLrec(
    teacher,
    student,
    windowData(train, { batch: r.batch, seq: r.seq, seed: r.seed }),
    {
      ...runOpts,
      ...(svdStart && backend ? { backend } : {}),
    },
  );
  if (held.length >= 2) note(`scoring ${held.length} held-out tokens (corrected student)`);
  const corrected = held.length >= 2 ? score(student) : undefined;
  let heldOut: LrecJobHeldOut | undefined;
  if (quantized && corrected) {
    const gap = quantized.meanNll - quantized.teacherMeanNll;
    heldOut = {
      tokens: held.length,
      source: opts.heldOutText !== undefined ? "heldOut" : "train-tail",
      quantized,
      corrected,
      teacher: { meanNll: quantized.teacherMeanNll, perplexity: Math.exp(quantized.teacherMeanNll) },
      gapRecovered: gap > 1e-9 ? (quantized.meanNll - corrected.meanNll) / gap : null,
    };
  }
  return {
    alreadyFinished: false,
    recipe,
    student,
    model: res.model,
    history: res.history,
    steps: res.steps,
    resumed: res.resumed,
    resumedDespite: res.resumedDespite,
    skippedSteps: res.skippedSteps,
    seconds: res.seconds,
    trainableParameters: res.model.parameterCount("lrec"),
    trainTokens: train.length,
    trainScales,
    ...(heldOut ? { heldOut } : {}),
    bitsPerWeight: effectiveBits(student, { adapterDtype: r.adapterDtype }),
    lossChartSvg: lrecChartSvg(res.history, `LREC (${res.steps} steps)`),
  };
}

/** The block projections of a layer. */
function pick(L: LlamaWeights["layers"][number]): Pick<LlamaWeights["layers"][number], LinearName> {
  const out = {} as Pick<LlamaWeights["layers"][number], LinearName>;
  for (const k of Object.keys(LINEAR_NAMES) as LinearName[]) out[k] = L[k];
  return out;
}

/** The recipe with every default filled in, checked. */
function resolveRecipe(
  o: Partial<LrecRecipe>,
  formats: readonly QuantFormat[],
): LrecRecipe & { alpha: number; lambda: number } {
  const d = LREC_RECIPE;
  const rank = o.rank ?? d.rank;
  const init = o.init ?? d.init;
  const loftqIterations = o.loftqIterations ?? (init === "zero" ? 0 : d.loftqIterations);
  const bits = Math.min(...formats.map((f) => f.bits));
  const r = {
    steps: o.steps ?? d.steps,
    rank,
    alpha: o.alpha ?? 2 * rank,
    lambda: o.lambda ?? recipeLambda(bits),
    lr: o.lr ?? d.lr,
    schedule: o.schedule ?? d.schedule,
    seq: o.seq ?? d.seq,
    batch: o.batch ?? d.batch,
    targets: o.targets ?? d.targets,
    init,
    loftqIterations,
    loftqMethod: o.loftqMethod ?? d.loftqMethod,
    trainScales: o.trainScales ?? d.trainScales,
    scaleRate: o.scaleRate ?? d.scaleRate,
    adapterDtype: o.adapterDtype ?? d.adapterDtype,
    evalTokens: o.evalTokens ?? d.evalTokens,
    seed: o.seed ?? d.seed,
    calibWindows: o.calibWindows ?? d.calibWindows,
  };
  const int = (name: string, v: number, min: number) => {
    if (!Number.isSafeInteger(v) || v < min)
      throw new Error(`lrec: lrecJob: ${name} must be an integer ≥ ${min}, got ${v}`);
  };
  int("steps", r.steps, 1);
  int("rank", r.rank, 1);
  int("seq", r.seq, 1);
  int("batch", r.batch, 1);
  int("loftqIterations", r.loftqIterations, 0);
  int("evalTokens", r.evalTokens, 0);
  int("seed", r.seed, 0);
  int("calibWindows", r.calibWindows, 1);
  for (const [name, v] of [
    ["lr", r.lr],
    ["lambda", r.lambda],
    ["alpha", r.alpha],
    ["scaleRate", r.scaleRate],
  ] as const)
    if (!(Number.isFinite(v) && v >= 0))
      throw new Error(`lrec: lrecJob: ${name} must be a finite number ≥ 0, got ${v}`);
  if (!["zero", "svd", "svd-act"].includes(r.init))
    throw new Error(`lrec: lrecJob: init must be zero, svd or svd-act, got ${r.init}`);
  if (!["cosine", "constant"].includes(r.schedule))
    throw new Error(`lrec: lrecJob: schedule must be cosine or constant, got ${r.schedule}`);
  if (r.init === "zero" && r.loftqIterations > 0)
    throw new Error(
      "lrec: lrecJob: LoftQ (loftqIterations > 0) starts the adapter at the low-rank part of the error: it needs init svd or svd-act",
    );
  return r;
}
