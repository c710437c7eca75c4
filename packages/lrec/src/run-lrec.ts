// LREC: the packed student with its LoRA adapter learns to match the frozen float teacher (KL + λ·CE)
// on EMEF (fused packed forward/backward, per-layer checkpointing), with Adam + L2 decay. The loop is
// lora's Trainer (schedule, non-finite step skipping, divergence guard, progress with ETA, resumable
// checkpoints that carry the run's identity); this file supplies the batches, the loss and the history.
import { Adam, noGrad, type Tensor } from "@int21/autograd";
import { writeFileAtomic } from "@int21/io";
import {
  diffRunIdentity,
  type DivergenceOptions,
  type LoRAModel,
  lineChartSvg,
  loraParameters,
  type RunDifference,
  type RunIdentity,
  type ScheduleOptions,
  Trainer,
  trainerCheckpointInfo,
} from "@int21/lora";
import { evaluateNll, type LlamaWeights, type NllResult, trainForward } from "@int21/model-llama";
import { type Backend, createReferenceBackend } from "@int21/quant-kernels";
import {
  type AdapterDtype,
  addLrecAdapter,
  type LrecAdapterOptions,
  roundAdapter,
  type SvdInitReport,
} from "./adapter";
import type { LrecBatch, LrecData } from "./data";
import { type LossReduction, lrecLoss, type TopKLogits } from "./loss";
import { TeacherCache } from "./teacher-cache";
import { TrainableScales, type TrainableScalesOptions } from "./trainable-scales";

/** One optimizer step of the history. */
export interface LrecStep {
  /** 1-based step number. */
  step: number;
  /** Weighted total loss. */
  loss: number;
  /** The KL term as reduced (before its weight). */
  kl: number;
  /** The CE term as reduced (before λ). */
  ce: number;
  /** KL per position (nats), whatever the reduction. */
  klPerToken: number;
  lr: number;
  /** True when the step's loss or gradients were not finite and no update was made. */
  skipped: boolean;
}

/** What {@link runLrec} reports after each step. */
export interface LrecProgress extends LrecStep {
  totalSteps: number;
  elapsedMs: number;
  /** Linear extrapolation of the remaining time. */
  etaMs: number;
  tokensPerSec: number;
}

/** Options of {@link runLrec}. */
export interface LrecOptions extends Partial<Omit<LrecAdapterOptions, "teacher">> {
  steps: number;
  /** Peak learning rate. Default 1e-3. */
  lr?: number;
  /** Schedule after `lr` (warmup, constant / linear / cosine). Default constant. */
  schedule?: Omit<ScheduleOptions, "lr" | "totalSteps">;
  /** Adam's L2 weight decay (added to the gradient, as the reference). Default 1e-5. */
  weightDecay?: number;
  /** λ: weight of the cross-entropy term. Default 0. */
  lambda?: number;
  /** Weight of the KL term. Default 1. */
  klWeight?: number;
  /** Default `sum` over positions (the reference). */
  klReduction?: LossReduction;
  /** Default `mean` over real targets (the reference). */
  ceReduction?: LossReduction;
  /** Train an adapter already on `student` (named `name`, default `lrec`) instead of adding one. */
  adapter?: LoRAModel;
  /**
   * Train the packed student's group scales (and zeros) with the adapter (quantization-aware LREC,
   * {@link TrainableScales}); they are written back into the packed layers at the end (same format and
   * size). Default false.
   */
  trainScales?: boolean | TrainableScalesOptions;
  /** Per-layer activation checkpointing of the student. Default true. */
  checkpointLayers?: boolean;
  /**
   * Resumable checkpoint file (a lora Trainer checkpoint, safetensors): resumed from when present,
   * written every `checkpointEvery` steps and at the end. It carries the run's identity ({@link lrecRunIdentity}); a file of a different
   * run is refused with a `RunMismatchError` listing each difference, unless `forceResume`.
   */
  checkpointPath?: string;
  checkpointEvery?: number;
  /**
   * What else identifies the run besides the options (content hashes of the teacher, the student and
   * the data, the window length and batch, …). Saved in the checkpoint.
   */
  identity?: RunIdentity;
  /** Continue from a checkpoint of a different run (its differences are in `resumedDespite`). Default false. */
  forceResume?: boolean;
  /**
   * When the run counts as diverged (default: a loss or 5-step mean above 1.5 × the lowest 5-step mean so far, or a
   * non-finite loss or gradient, for 20 steps in a row); it then throws a `TrainingDivergedError` and
   * leaves the last checkpoint written before the loss went bad.
   */
  divergence?: DivergenceOptions;
  /** Stop after this step (as if the process were killed there; a later run resumes). */
  until?: number;
  onProgress?: (p: LrecProgress) => void;
  /** Messages (skipped steps). Default `console.warn`. */
  log?: (message: string) => void;
  /** Write the loss curves (SVG) here at the end. */
  lossChart?: string;
  /**
   * Round the trained adapter to this precision at the end, as it will be stored (see `roundAdapter`),
   * so the held-out evaluation is of what a reader gets. Default: kept in float32.
   */
  adapterDtype?: AdapterDtype;
  /**
   * Held-out tokens scored against the float teacher (model-llama's `evaluateNll` with `teacher`:
   * NLL, perplexity, KL) before the adapter is added and after training (and `adapterDtype`).
   */
  heldOut?: ArrayLike<number>;
  /** Window (and stride) of the held-out evaluation. Default min(256, seqLen). */
  heldOutCtx?: number;
}

/** A held-out evaluation against the teacher: the student's NLL and perplexity, KL, the teacher's NLL. */
export type LrecHeldOutScore = NllResult & { meanKl: number; teacherMeanNll: number };

/** What {@link runLrec} returns. */
export interface LrecResult {
  /** Per step, including steps before a resume. */
  history: LrecStep[];
  /** The LoRA state of the student (the trained adapter is `name`, default `lrec`). */
  model: LoRAModel;
  /** Per-module SVD-init errors when the adapter was added with `init: "svd"`. */
  init: SvdInitReport[];
  /** Steps done in total. */
  steps: number;
  /** Whether the run continued from `checkpointPath`. */
  resumed: boolean;
  /** True when the checkpoint already held every step of this run: nothing was trained or written. */
  alreadyFinished: boolean;
  /** The differences a `forceResume` continued despite (empty otherwise). */
  resumedDespite: readonly RunDifference[];
  /** Steps skipped on a non-finite loss or gradient (no update), including those before a resume. */
  skippedSteps: number;
  /** Wall time of this process's steps. */
  seconds: number;
  /** With `heldOut`: the scores before (the plain packed student) and after (with the trained adapter). */
  heldOut?: { before: LrecHeldOutScore; after: LrecHeldOutScore };
}

/**
 * The identity of an LREC run: `opts.identity` plus every option that determines the result (steps,
 * rank, alpha, targets, adapter name, seed and init, lr, schedule, weight decay, λ, the KL weight and
 * reductions). What {@link runLrec} saves in, and compares with, its checkpoint (with the parameter
 * shapes added).
 */
export function lrecRunIdentity(opts: LrecOptions): RunIdentity {
  const s = opts.schedule;
  return {
    steps: opts.steps,
    r: opts.adapter ? null : (opts.r ?? null),
    alpha: opts.adapter ? null : (opts.alpha ?? opts.r ?? null),
    targets: opts.adapter ? [] : [...(opts.targets ?? [])],
    name: opts.name ?? "lrec",
    seed: opts.seed ?? 0,
    init: opts.adapter ? "given" : (opts.init ?? "zero"),
    lr: opts.lr ?? 1e-3,
    schedule: `${s?.kind ?? "constant"} warmup ${s?.warmupSteps ?? 0} minLr ${s?.minLr ?? 0}`,
    weightDecay: opts.weightDecay ?? 1e-5,
    lambda: opts.lambda ?? 0,
    klWeight: opts.klWeight ?? 1,
    klReduction: opts.klReduction ?? "sum",
    ceReduction: opts.ceReduction ?? "mean",
    // only when on, so state files of runs without them keep their identity
    ...(opts.rankPattern && !opts.adapter ? { rankPattern: JSON.stringify(opts.rankPattern) } : {}),
    ...(opts.trainScales
      ? {
          trainScales: `zeros ${typeof opts.trainScales === "object" ? (opts.trainScales.zeros ?? true) : true} rate ${typeof opts.trainScales === "object" ? (opts.trainScales.rate ?? 1) : 1}`,
        }
      : {}),
    ...opts.identity,
  };
}

/** What an LREC checkpoint file holds, against a run: see {@link lrecCheckpointStatus}. */
export interface LrecCheckpointStatus {
  /** Whether the file exists. */
  exists: boolean;
  /** The step it holds (0 when none). */
  step: number;
  /** Fields in which its run differs from the one asked for (saved → now). */
  differences: RunDifference[];
  /** True when it holds every step of the run asked for and no field differs: nothing is left to do. */
  finished: boolean;
}

/**
 * Reads the identity and step of the LREC checkpoint at `path` (not its tensors) and compares them with
 * `identity` (from {@link lrecRunIdentity}; the saved parameter shapes are not compared), so a caller
 * can tell a finished or a different run before it loads or evaluates anything.
 */
export async function lrecCheckpointStatus(
  path: string,
  identity: RunIdentity,
): Promise<LrecCheckpointStatus> {
  let info: Awaited<ReturnType<typeof trainerCheckpointInfo>>;
  try {
    info = await trainerCheckpointInfo(path);
  } catch (e) {
    throw new Error(
      `lrec: runLrec: ${(e as Error).message.replace(/trainer checkpoint/, "LREC checkpoint")}`,
    );
  }
  if (!info) return { exists: false, step: 0, differences: [], finished: false };
  // the fields the Trainer adds itself (parameter shapes, accumulation, clipping, optimizer) are fixed
  // by the LREC options compared here
  const saved = { ...info.identity };
  for (const k of TRAINER_OWN_FIELDS) if (!(k in identity)) delete saved[k];
  const differences = diffRunIdentity(saved, identity);
  const steps = identity.steps;
  return {
    exists: true,
    step: info.step,
    differences,
    finished: differences.length === 0 && typeof steps === "number" && info.step >= steps,
  };
}

/** Identity fields the Trainer adds to {@link lrecRunIdentity} in a checkpoint. */
const TRAINER_OWN_FIELDS = ["parameters", "gradAccum", "maxGradNorm", "optimizer"] as const;

function fmtMs(ms: number): string {
  return ms >= 60_000 ? `${(ms / 60_000).toFixed(1)}m` : `${(ms / 1000).toFixed(1)}s`;
}

/** One progress line: step, loss terms, lr, tokens/s, ETA. */
export function formatLrecProgress(p: LrecProgress): string {
  return (
    `lrec step ${p.step}/${p.totalSteps}${p.skipped ? " (skipped)" : ""} | loss ${p.loss.toFixed(4)} | ` +
    `KL/token ${p.klPerToken.toFixed(4)} | CE ${p.ce.toFixed(4)} | lr ${p.lr.toExponential(2)} | ` +
    `${p.tokensPerSec.toFixed(0)} tok/s | ETA ${fmtMs(p.etaMs)}`
  );
}

/** The loss curves of a history as SVG: KL per token and CE per token against the step. */
export function lrecChartSvg(history: readonly LrecStep[], title = "LREC"): string {
  const ok = history.filter((h) => !h.skipped);
  return lineChartSvg(
    title,
    [
      { name: "KL per token", points: ok.map((h) => [h.step, h.klPerToken] as [number, number]) },
      { name: "cross-entropy", points: ok.map((h) => [h.step, h.ce] as [number, number]) },
    ],
    { x: "step", y: "nats per token" },
  );
}

/**
 * LREC: trains the LoRA adapter of `student` (a packed, frozen LLaMA) so that its next-token
 * distribution matches `teacher` (the frozen float model, or a {@link TeacherCache} of its top-k, in
 * which case the batches come from the cache and `data` is omitted). Per step: the batch `data(step)`,
 * teacher logits without a graph, the student's logits through `trainForward` (fused packed matmuls,
 * per-layer checkpointing), {@link lrecLoss}, backward into the adapter only, Adam with L2 decay. A step
 * whose loss or gradient is not finite makes no update and is logged. Batches, schedule and Adam state
 * are functions of the step, so a run resumed from `checkpointPath` ends where an uninterrupted one does.
 */
export async function runLrec(
  teacher: LlamaWeights | TeacherCache,
  student: LlamaWeights,
  data: LrecData | undefined,
  opts: LrecOptions,
): Promise<LrecResult> {
  const cache = teacher instanceof TeacherCache ? teacher : undefined;
  const source: LrecData | undefined = cache ? cache.data : data;
  if (!source)
    throw new Error("lrec: runLrec: no data source (pass `data`, or a TeacherCache as the teacher)");
  if (cache && data)
    throw new Error(
      "lrec: runLrec: with a TeacherCache the batches come from the cache; pass data = undefined",
    );
  const steps = opts.steps;
  if (!Number.isSafeInteger(steps) || steps < 1)
    throw new Error(`lrec: runLrec: steps must be a positive integer, got ${steps}`);
  if (cache && cache.steps < steps)
    throw new Error(`lrec: runLrec: the teacher cache holds ${cache.steps} steps, the run needs ${steps}`);
  if (opts.heldOut !== undefined && cache)
    throw new Error("lrec: runLrec: the held-out evaluation needs the float teacher, not a cache");
  const score = (): LrecHeldOutScore | undefined => {
    if (opts.heldOut === undefined) return undefined;
    const ctx = opts.heldOutCtx ?? Math.min(256, student.config.seqLen);
    return evaluateNll(student, opts.heldOut, { ctx, teacher: teacher as LlamaWeights });
  };
  const before = score();
  const name = opts.name ?? "lrec";
  let model: LoRAModel;
  let init: SvdInitReport[] = [];
  if (opts.adapter) model = opts.adapter;
  else {
    if (opts.r === undefined)
      throw new Error("lrec: runLrec: give the adapter rank `r` (or an existing `adapter`)");
    if (opts.init === "svd" && cache)
      throw new Error("lrec: runLrec: init 'svd' needs the float teacher, not a cache");
    const added = addLrecAdapter(student, {
      ...opts,
      r: opts.r,
      name,
      ...(cache ? {} : { teacher: teacher as LlamaWeights }),
    });
    model = added.model;
    init = added.init;
  }
  const params = loraParameters(model, name);
  if (params.length === 0)
    throw new Error(`lrec: runLrec: adapter "${name}" has no parameters on the student`);
  const scales = opts.trainScales
    ? TrainableScales.attach(student, typeof opts.trainScales === "object" ? opts.trainScales : {})
    : undefined;
  if (scales) params.push(...scales.parameters());
  const lr = opts.lr ?? 1e-3;
  const optimizer = new Adam(params, { lr, weightDecay: opts.weightDecay ?? 1e-5 });
  const log = opts.log ?? ((m: string) => console.warn(m));
  const klReduction = opts.klReduction ?? "sum";
  const loss = {
    klWeight: opts.klWeight ?? 1,
    ceWeight: opts.lambda ?? 0,
    klReduction,
    ceReduction: opts.ceReduction ?? "mean",
  };
  const history: LrecStep[] = [];
  // the one given (also used for the SVD init), else the one the packed student runs on
  const backend = opts.backend ?? ownBackend(student);
  const trainer = new Trainer<LrecBatch>({
    name: "lrec: runLrec",
    optimizer,
    batches: (step) => source(step),
    batchTokens: (b) => b.input.length * b.input[0].length,
    loss: (batch, { step }) => {
      const tl: Tensor | TopKLogits = cache
        ? cache.topk(step)
        : noGrad(() => trainForward(teacher as LlamaWeights, batch.input, { checkpoint: false }));
      const sl = trainForward(student, batch.input, {
        checkpoint: opts.checkpointLayers ?? true,
        ...(scales ? { linearOp: scales.hook } : {}),
      });
      const l = lrecLoss(tl, sl, batch.target, loss);
      const rows = batch.input.length * batch.input[0].length;
      return { loss: l.loss, terms: { loss: l.loss, kl: l.kl, ce: l.ce, rows } };
    },
    steps,
    schedule: { kind: "constant", ...opts.schedule, lr, totalSteps: steps },
    ...(backend ? { backend } : {}),
    ...(opts.checkpointPath !== undefined ? { checkpointFile: opts.checkpointPath } : {}),
    ...(opts.checkpointEvery !== undefined ? { checkpointEvery: opts.checkpointEvery } : {}),
    extraState: {
      save: () => history,
      load: (saved) => {
        history.length = 0;
        history.push(...(saved as LrecStep[]));
      },
    },
    identity: lrecRunIdentity(opts),
    ...(opts.divergence ? { divergence: opts.divergence } : {}),
    onProgress: (p) => {
      const t = p.terms ?? {};
      const [l, kl, ce, rows] = [t.loss, t.kl, t.ce, t.rows];
      if (p.skipped)
        log(
          `lrec: step ${p.step}: loss ${l} (KL ${kl}, CE ${ce}) or its gradient is not finite; step skipped, no update`,
        );
      const rec: LrecStep = {
        step: p.step,
        loss: l,
        kl,
        ce,
        klPerToken: klReduction === "sum" ? kl / rows : kl,
        lr: p.lr,
        skipped: p.skipped,
      };
      history.push(rec);
      opts.onProgress?.({
        ...rec,
        totalSteps: steps,
        elapsedMs: p.elapsedMs,
        etaMs: p.etaMs,
        tokensPerSec: p.tokensPerSec,
      });
    },
  });
  const resumed =
    opts.checkpointPath !== undefined &&
    (await trainer.resume(undefined, { force: opts.forceResume === true }));
  const alreadyFinished = resumed && trainer.finished && trainer.resumedDespite.length === 0;
  const t0 = performance.now();
  await trainer.run(opts.until !== undefined ? { until: opts.until } : {});
  // the learned scales go back into packed layers: the student runs on its fused kernels again
  if (scales) scales.commit(backend ?? createReferenceBackend());
  if (opts.adapterDtype !== undefined) roundAdapter(model, name, opts.adapterDtype);
  const after = score();
  if (opts.lossChart && !alreadyFinished) {
    await writeFileAtomic(opts.lossChart, lrecChartSvg(history, `LREC (${trainer.step} steps)`));
  }
  return {
    history,
    model,
    init,
    steps: trainer.step,
    resumed,
    alreadyFinished,
    resumedDespite: trainer.resumedDespite,
    skippedSteps: trainer.skippedSteps,
    seconds: (performance.now() - t0) / 1000,
    ...(before && after ? { heldOut: { before, after } } : {}),
  };
}

/** The kernel backend of the student's packed projections (the one its fused kernels run on). */
function ownBackend(student: LlamaWeights): Backend | undefined {
  for (const L of student.layers)
    for (const lin of Object.values(L)) {
      const b = (lin as { base?: { backend?: Backend }; backend?: Backend }).base?.backend;
      if (b) return b;
      const own = (lin as { backend?: Backend }).backend;
      if (own) return own;
    }
  return undefined;
}
