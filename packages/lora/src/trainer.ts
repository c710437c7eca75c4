// A model-agnostic training loop: deterministic batches, gradient accumulation, LR schedule, clipping,
// periodic evaluation, progress (loss, tokens/s, ETA, memory), checkpoint save / resume. The loss is
// the caller's (next-token cross-entropy for fine-tuning, KL to a teacher for LREC), and so may be the
// batches (examples collated by the Trainer, or any per-step source).
import {
  BufferPool,
  backward,
  clipGradNorm,
  memory,
  noGrad,
  type Optimizer,
  type OptimizerState,
  scale,
  type Tensor,
  tidy,
  withBackend,
} from "@int21/autograd";
import type { Backend } from "@int21/quant-kernels";
import { type Batch, batchIndices, collate, type Example } from "./dataset";
import { lineChartSvg } from "./loss-chart";
import {
  type ContentHasher,
  contentHasher,
  DivergenceGuard,
  type DivergenceOptions,
  diffRunIdentity,
  type RunDifference,
  type RunIdentity,
  RunMismatchError,
  TrainingDivergedError,
} from "./run-identity";
import { checkSchedule, learningRate, type ScheduleOptions } from "./schedule";

/** Where in the run a loss is computed. */
export interface LossInfo {
  /** Optimizer step (0-based). */
  step: number;
  /** Micro-batch index over the whole run (`step · gradAccum + k`); -1 during evaluation. */
  micro: number;
  /** True for training micro-batches (apply dropout), false for evaluation. */
  training: boolean;
}

/**
 * What a loss function may return instead of a bare scalar: the loss that is back-propagated and named
 * terms that are only reported (e.g. LREC's KL and cross-entropy parts), each a scalar tensor or a number.
 */
export interface LossTerms {
  loss: Tensor;
  terms?: Record<string, Tensor | number>;
}

/** One progress report, after each optimizer step. */
export interface Progress {
  /** Steps done (1-based count). */
  step: number;
  totalSteps: number;
  /** Mean training loss of this step's micro-batches. */
  loss: number;
  /** Learning rate used for this step. */
  lr: number;
  /** Global gradient norm before clipping. */
  gradNorm: number;
  /** Input tokens per second over this process's steps so far. */
  tokensPerSec: number;
  /** Milliseconds since this process started training. */
  elapsedMs: number;
  /** Estimated milliseconds to the last step. */
  etaMs: number;
  /** Resident set size now, bytes (0 outside Node). */
  rssBytes: number;
  /** Tensor bytes the autograd ledger holds now, and its peak. */
  ledgerBytes: number;
  ledgerPeakBytes: number;
  /** Held-out loss, on steps where it was evaluated. */
  evalLoss?: number;
  /** True when this step's loss or gradient was not finite and no update was made. */
  skipped: boolean;
  /** Steps skipped so far in the run (including those before a resume). */
  skippedSteps: number;
  /** The step's mean loss terms, when the loss returns {@link LossTerms} (measured also on a skipped step). */
  terms?: Record<string, number>;
}

/** Loss curves: `[step, loss]` points (step counts from 1). */
export interface TrainHistory {
  train: [number, number][];
  eval: [number, number][];
  /** Steps (from 1) whose loss or gradient was not finite: no update was made and no loss is in `train`. */
  skipped?: number[];
}

/** Options of {@link Trainer}; `B` is the batch type (collated {@link Batch}es of `train` by default). */
export interface TrainerOptions<B = Batch> {
  /** An optimizer over the trainable tensors (autograd Adam / AdamW / SGD). */
  optimizer: Optimizer & { lr: number };
  /**
   * The mean loss of one batch, as a scalar tensor with a graph (it is back-propagated), or that
   * tensor with named terms to report ({@link LossTerms}).
   */
  loss: (batch: B, info: LossInfo) => Tensor | LossTerms;
  /** Training examples (batched by `seed`, `batchSize` and `padId`). Give these or `batches`. */
  train?: readonly Example[];
  /**
   * Instead of `train`: the training micro-batch `micro` (over the whole run), a pure function of it so
   * a resumed run sees the same batches. `batchSize`, `padId`, `seed` and the held-out set do not apply.
   */
  batches?: (micro: number) => B;
  /** Input tokens of a batch from `batches`, for tokens/s. Default: its `inputTokens` field, else 0. */
  batchTokens?: (batch: B) => number;
  /** Held-out examples for evaluation (with `train` only). */
  heldOut?: readonly Example[];
  /**
   * The kernel backend of the loss's ops and the optimizer's update: each step (forward, backward,
   * update) and evaluation runs inside autograd's `withBackend(backend, …)`. Default: autograd's
   * current backend.
   */
  backend?: Backend;
  /**
   * The autograd `BufferPool` each step runs in: its activations, gradients and op scratch reuse the
   * previous step's buffers instead of leaving garbage for the collector (whose timing is what a peak
   * RSS sees); after each step the pool lets go of buffers of shapes the step did not use. Default: one
   * pool per Trainer; `false`: none (every buffer a new array, as before).
   */
  bufferPool?: BufferPool | false;
  /** Optimizer steps in the run. */
  steps: number;
  /** Examples per micro-batch. Default 1. */
  batchSize?: number;
  /** Micro-batches per optimizer step (their gradients are averaged). Default 1. */
  gradAccum?: number;
  /** Learning-rate schedule (its `totalSteps` defaults to `steps`); omit to keep the optimizer's lr. */
  schedule?: Omit<ScheduleOptions, "totalSteps"> & { totalSteps?: number };
  /** Clip the global gradient norm to this. Default: no clipping. */
  maxGradNorm?: number;
  /** Evaluate on `heldOut` every this many steps (and after the last). Default: only after the last. */
  evalEvery?: number;
  /** Evaluate on at most this many held-out examples. Default: all. */
  evalExamples?: number;
  /** Save a checkpoint into this directory every `checkpointEvery` steps and at the end. */
  checkpointDir?: string;
  /** Instead of `checkpointDir/trainer-state.safetensors`: the checkpoint file itself. */
  checkpointFile?: string;
  checkpointEvery?: number;
  /** Called after a checkpoint is written (e.g. to save the adapter in PEFT format beside it); `dir` holds the file. */
  onCheckpoint?: (dir: string, step: number) => Promise<void> | void;
  /**
   * The caller's own state to keep in every checkpoint (JSON: e.g. a per-step history with its loss
   * terms): `save` is called when a checkpoint is written, `load` with what it returned on {@link Trainer.resume}.
   */
  extraState?: { save: () => unknown; load: (saved: unknown) => void };
  /** How errors and messages name the loop. Default `lora: Trainer`. */
  name?: string;
  /** Seed of the batch order. Default 0. */
  seed?: number;
  /** Input id used to pad short examples. Default 0. */
  padId?: number;
  /** Called before every training micro-batch (e.g. `model.setDropoutStep(micro)`). */
  beforeMicroBatch?: (micro: number) => void;
  /** Progress callback after every step. */
  onProgress?: (p: Progress) => void;
  /**
   * What else identifies the run besides what the Trainer knows itself (content hashes of the model and
   * data files, adapter rank, alpha, targets, …). Saved in every checkpoint; {@link Trainer.resume}
   * refuses a checkpoint whose identity differs. The Trainer adds its own fields: `steps`, `batchSize`,
   * `gradAccum`, `seed`, `padId`, `maxGradNorm`, the schedule, the optimizer's kind and
   * hyper-parameters, the parameter shapes, and SHA-256 hashes of the training and held-out token ids.
   */
  identity?: RunIdentity;
  /**
   * When the run counts as diverged (default: the loss or 5-step mean above 1.5 × the running
   * minimum, or a non-finite loss or gradient, for 20 steps in a row): {@link Trainer.run} then throws
   * a {@link TrainingDivergedError} and leaves the last checkpoint written before the loss went bad.
   */
  divergence?: DivergenceOptions;
}

/** What {@link Trainer.run} returns. */
export interface TrainResult {
  history: TrainHistory;
  /** Steps done in total (including those before a resume). */
  steps: number;
  /** Input tokens processed by this process. */
  tokens: number;
  /** Wall time of this process's steps, seconds. */
  seconds: number;
  /** Steps whose loss or gradient was not finite (skipped, no update), including those before a resume. */
  skippedSteps: number;
}

/** What {@link Trainer.trainStep} returns. */
export interface StepResult {
  /** Mean loss of the step's micro-batches (`NaN` when one was not finite). */
  loss: number;
  lr: number;
  /** Global gradient norm before clipping (`NaN` when the step was skipped on its loss). */
  gradNorm: number;
  /** Input tokens of the step's micro-batches. */
  tokens: number;
  /** True when the loss or the gradient was not finite: the gradients were zeroed and no update was made. */
  skipped: boolean;
  /** Mean loss terms of the step's micro-batches, when the loss returns {@link LossTerms}. */
  terms?: Record<string, number>;
}

/** Checkpoint file name inside `checkpointDir`. */
export const TRAINER_CHECKPOINT_FILE = "trainer-state.safetensors";
const FORMAT = "int21-trainer";

function rss(): number {
  return typeof process !== "undefined" && typeof process.memoryUsage === "function"
    ? process.memoryUsage().rss
    : 0;
}

/** Formats a progress report as one log line. */
export function formatProgress(p: Progress): string {
  const eta = p.etaMs >= 60_000 ? `${(p.etaMs / 60_000).toFixed(1)}m` : `${(p.etaMs / 1000).toFixed(1)}s`;
  const ev = p.evalLoss === undefined ? "" : ` | eval ${p.evalLoss.toFixed(4)}`;
  return (
    `step ${p.step}/${p.totalSteps} | loss ${p.skipped ? "skipped (not finite)" : p.loss.toFixed(4)}${ev} | lr ${p.lr.toExponential(2)} | ` +
    `${p.tokensPerSec.toFixed(0)} tok/s | ETA ${eta} | rss ${(p.rssBytes / 2 ** 20).toFixed(0)} MiB | ` +
    `tensors ${(p.ledgerBytes / 2 ** 20).toFixed(1)} MiB (peak ${(p.ledgerPeakBytes / 2 ** 20).toFixed(1)})`
  );
}

/** The loss curves as an SVG line chart. */
export function lossChartSvg(history: TrainHistory, title = "loss"): string {
  const series = [{ name: "train", points: history.train }];
  if (history.eval.length > 0) series.push({ name: "held-out", points: history.eval });
  return lineChartSvg(title, series, { x: "step", y: "cross-entropy (nats/token)" });
}

function positiveInt(v: number | undefined, name: string, dflt: number, who = "lora: Trainer"): number {
  const x = v ?? dflt;
  if (!Number.isSafeInteger(x) || x < 1)
    throw new Error(`${who}: ${name} must be a positive integer, got ${String(v)}`);
  return x;
}

const itemOf = (v: Tensor | number): number => (typeof v === "number" ? v : v.item());

/**
 * The step and run identity a Trainer checkpoint file holds (not its tensors), or undefined when there
 * is no file at `path`; throws when the file is not a Trainer checkpoint.
 */
export async function trainerCheckpointInfo(
  path: string,
): Promise<{ step: number; identity: RunIdentity; extraState?: unknown } | undefined> {
  const { existsSync } = await import("node:fs");
  if (!existsSync(path)) return undefined;
  const { openSafetensors } = await import("@int21/io");
  const f = await openSafetensors(path);
  try {
    if (f.metadata.format !== FORMAT) throw new Error(`${path} is not a trainer checkpoint`);
    const meta = JSON.parse(f.metadata.trainer ?? "null") as {
      step: number;
      identity?: RunIdentity;
      extra?: unknown;
    };
    return {
      step: meta.step,
      identity: meta.identity ?? {},
      ...(meta.extra !== undefined ? { extraState: meta.extra } : {}),
    };
  } finally {
    await f.close();
  }
}

async function hashExamples(h: ContentHasher, examples: readonly Example[]): Promise<string> {
  h.update(`examples ${examples.length}\n`);
  for (const e of examples) {
    h.update(new Uint32Array([e.input.length]));
    h.update(e.input);
    h.update(e.target);
  }
  return h.digest();
}

/**
 * The training loop. Batches are a pure function of (seed, step), the schedule of the step, dropout of
 * the micro-batch index, so a run resumed from a checkpoint continues exactly as an uninterrupted run.
 *
 * Guards: a step whose loss or gradient is not finite makes no update (it is counted in `skippedSteps`
 * and `history.skipped`); a run whose loss keeps rising (see {@link TrainerOptions.divergence}) stops
 * with a {@link TrainingDivergedError}, without overwriting the last good checkpoint. Checkpoints carry
 * the run's identity ({@link TrainerOptions.identity}); {@link resume} refuses one of a different run.
 */
export class Trainer<B = Batch> {
  /** Steps completed (restored by {@link resume}). */
  step = 0;
  readonly history: TrainHistory = { train: [], eval: [], skipped: [] };
  /** Steps skipped (non-finite loss or gradient) so far. */
  skippedSteps = 0;
  /** The step of the last checkpoint written or resumed from (0: none). */
  lastCheckpointStep = 0;
  /** The differences a forced {@link resume} continued despite (empty otherwise). */
  resumedDespite: readonly RunDifference[] = [];
  private readonly o: TrainerOptions<B>;
  private readonly who: string;
  private readonly batchSize: number;
  private readonly accum: number;
  private readonly schedule?: ScheduleOptions;
  private readonly hyper0: Record<string, number>;
  private readonly guardOptions: DivergenceOptions;
  private identityPromise?: Promise<RunIdentity>;
  private readonly pool: BufferPool | undefined;

  constructor(opts: TrainerOptions<B>) {
    this.o = opts;
    this.pool = opts.bufferPool === false ? undefined : (opts.bufferPool ?? new BufferPool());
    const who = opts.name ?? "lora: Trainer";
    this.who = who;
    positiveInt(opts.steps, "steps", 1, who);
    this.batchSize = positiveInt(opts.batchSize, "batchSize", 1, who);
    this.accum = positiveInt(opts.gradAccum, "gradAccum", 1, who);
    if (opts.evalEvery !== undefined) positiveInt(opts.evalEvery, "evalEvery", 1, who);
    if (opts.checkpointEvery !== undefined) positiveInt(opts.checkpointEvery, "checkpointEvery", 1, who);
    if (opts.maxGradNorm !== undefined && !(opts.maxGradNorm > 0))
      throw new Error(`${who}: maxGradNorm must be > 0, got ${opts.maxGradNorm}`);
    if (opts.batches !== undefined) {
      if (opts.train !== undefined) throw new Error(`${who}: give training examples or batches, not both`);
      if ((opts.heldOut?.length ?? 0) > 0)
        throw new Error(`${who}: a held-out set needs training examples (train), not batches`);
    } else if (opts.train === undefined || opts.train.length === 0)
      throw new Error(`${who}: no training examples`);
    if (opts.checkpointDir !== undefined && opts.checkpointFile !== undefined)
      throw new Error(`${who}: give checkpointDir or checkpointFile, not both`);
    if (opts.schedule) {
      this.schedule = { ...opts.schedule, totalSteps: opts.schedule.totalSteps ?? opts.steps };
      checkSchedule(this.schedule);
    }
    if (opts.optimizer.params.length === 0)
      throw new Error(`${who}: the optimizer has no parameters (is every adapter frozen?)`);
    this.guardOptions = opts.divergence ?? {};
    new DivergenceGuard(this.guardOptions, who); // validates the options
    this.hyper0 = { ...opts.optimizer.stateDict().meta.hyper };
  }

  /** True when every step of the run is done. */
  get finished(): boolean {
    return this.step >= this.o.steps;
  }

  /** The checkpoint file: `dir` (or `checkpointDir`)`/trainer-state.safetensors`, or `checkpointFile`. */
  checkpointPath(dir?: string): string | undefined {
    if (dir !== undefined) return `${dir.replace(/[\\/]+$/, "")}/${TRAINER_CHECKPOINT_FILE}`;
    if (this.o.checkpointFile !== undefined) return this.o.checkpointFile;
    return this.o.checkpointDir === undefined ? undefined : this.checkpointPath(this.o.checkpointDir);
  }

  /**
   * The run's identity: {@link TrainerOptions.identity} plus what the Trainer knows (steps, batch
   * size, accumulation, seed, schedule, optimizer, parameter shapes, hashes of the examples; with
   * `batches` instead of examples, only steps, accumulation, clipping, schedule, optimizer and shapes).
   * Node only (the hashes use node:crypto).
   */
  identity(): Promise<RunIdentity> {
    this.identityPromise ??= (async () => {
      const { lr: _lr, ...hyper } = this.hyper0;
      const s = this.schedule;
      const examples = this.o.batches === undefined;
      const own: Record<string, RunIdentity[string]> = {
        steps: this.o.steps,
        ...(examples ? { batchSize: this.batchSize } : {}),
        gradAccum: this.accum,
        ...(examples ? { seed: this.o.seed ?? 0, padId: this.o.padId ?? 0 } : {}),
        maxGradNorm: this.o.maxGradNorm ?? null,
        lr: s ? s.lr : (this.hyper0.lr ?? null),
        schedule: s
          ? `${s.kind ?? "constant"} warmup ${s.warmupSteps ?? 0} total ${s.totalSteps} minLr ${s.minLr ?? 0}`
          : "none",
        optimizer: `${this.o.optimizer.kind} ${Object.entries(hyper)
          .map(([k, v]) => `${k}=${v}`)
          .join(" ")}`,
        parameters: this.params().map((p) => p.shape.join("x")),
      };
      if (examples) {
        own.trainExamples = await hashExamples(await contentHasher(), this.o.train ?? []);
        own.heldOutExamples = await hashExamples(await contentHasher(), this.o.heldOut ?? []);
      }
      return { ...own, ...this.o.identity };
    })();
    return this.identityPromise;
  }

  private params(): readonly Tensor[] {
    return this.o.optimizer.params;
  }

  /** The training micro-batch `micro` (over the whole run): from `batches`, or collated from `train`. */
  trainBatch(micro: number): B {
    if (this.o.batches) return this.o.batches(micro);
    const train = this.o.train ?? [];
    const idx = batchIndices(train.length, this.batchSize, this.o.seed ?? 0, micro);
    return collate(
      idx.map((i) => train[i]),
      this.o.padId ?? 0,
    ) as B;
  }

  private tokensOf(batch: B): number {
    if (this.o.batchTokens) return this.o.batchTokens(batch);
    const n = (batch as { inputTokens?: unknown }).inputTokens;
    return typeof n === "number" ? n : 0;
  }

  /** `fn` on the configured backend (or autograd's current one). */
  private onBackend<T>(fn: () => T): T {
    return this.o.backend ? withBackend(this.o.backend, fn) : fn();
  }

  /**
   * Runs one optimizer step; returns its mean loss, learning rate, gradient norm and input tokens. A
   * step whose loss (any micro-batch's) or gradient norm is not finite zeroes the gradients and makes
   * no update (`skipped`); the step still counts, so the batch order and schedule go on unchanged.
   */
  trainStep(): StepResult {
    const pool = this.pool;
    if (pool === undefined) return this.onBackend(() => this.applyStep(this.computeStep()));
    const s = this.onBackend(() => pool.run(() => this.applyStep(this.computeStep())));
    pool.trim();
    return s;
  }

  /** The gradients of step `this.step + 1` (no update yet). */
  private computeStep(): StepResult {
    const { optimizer } = this.o;
    const params = this.params();
    const step = this.step;
    optimizer.zeroGrad();
    let lossSum = 0;
    let tokens = 0;
    let finite = true;
    let terms: Record<string, number> | undefined;
    let measured = 0;
    for (let k = 0; k < this.accum; k++) {
      const micro = step * this.accum + k;
      this.o.beforeMicroBatch?.(micro);
      const batch = this.trainBatch(micro);
      tokens += this.tokensOf(batch);
      const value = tidy(() => {
        const out = this.o.loss(batch, { step, micro, training: true });
        const l = "shape" in out ? out : out.loss;
        const v = l.item();
        if (!("shape" in out) && out.terms) {
          terms ??= {};
          for (const [name, t] of Object.entries(out.terms)) terms[name] = (terms[name] ?? 0) + itemOf(t);
        }
        if (Number.isFinite(v)) backward(this.accum > 1 ? scale(l, 1 / this.accum) : l);
        return v;
      });
      measured++;
      lossSum += value;
      if (!Number.isFinite(value)) {
        finite = false;
        break;
      }
    }
    if (terms) for (const name of Object.keys(terms)) terms[name] /= measured;
    let gradNorm = Number.NaN;
    if (finite) {
      if (this.o.maxGradNorm !== undefined) gradNorm = clipGradNorm(params, this.o.maxGradNorm);
      else {
        let ss = 0;
        for (const p of params) if (p.grad) for (const g of p.grad.data) ss += g * g;
        gradNorm = Math.sqrt(ss);
      }
      if (!Number.isFinite(gradNorm)) finite = false;
    }
    if (this.schedule) optimizer.lr = learningRate(step, this.schedule);
    const lr = optimizer.lr;
    return {
      loss: finite ? lossSum / this.accum : Number.NaN,
      lr,
      gradNorm,
      tokens,
      skipped: !finite,
      ...(terms ? { terms } : {}),
    };
  }

  /** Applies the update of a computed step (or skips it), and counts the step. */
  private applyStep(s: StepResult): StepResult {
    const { optimizer } = this.o;
    if (!s.skipped) optimizer.step();
    else {
      optimizer.zeroGrad();
      this.skippedSteps++;
      this.history.skipped ??= [];
      this.history.skipped.push(this.step + 1);
    }
    this.step++;
    return s;
  }

  /** Mean loss per trained token over the held-out set (no graph, no dropout). */
  evaluate(): number {
    const held = this.o.heldOut ?? [];
    if (held.length === 0) throw new Error(`${this.who}.evaluate: no held-out examples`);
    const n = Math.min(held.length, this.o.evalExamples ?? held.length);
    let sum = 0;
    let count = 0;
    for (let i = 0; i < n; i += this.batchSize) {
      const batch = collate(held.slice(i, Math.min(n, i + this.batchSize)), this.o.padId ?? 0);
      if (batch.tokens === 0) continue;
      const v = this.onBackend(() =>
        noGrad(() =>
          tidy(() => {
            const out = this.o.loss(batch as B, { step: this.step, micro: -1, training: false });
            return ("shape" in out ? out : out.loss).item();
          }),
        ),
      );
      sum += v * batch.tokens;
      count += batch.tokens;
    }
    return sum / count;
  }

  /**
   * A divergence guard that has seen the steps of the history so far (after a resume, the saved ones;
   * after a forced resume of a different run, none).
   */
  private guard(): DivergenceGuard {
    const g = new DivergenceGuard(this.guardOptions, this.who);
    if (this.resumedDespite.length > 0) return g;
    const losses = new Map(this.history.train);
    for (let s = 1; s <= this.step; s++) g.observe(losses.get(s) ?? Number.NaN);
    return g;
  }

  /**
   * Runs until `steps` (or `opts.until`, to stop early as a killed run would) and returns the history.
   * Evaluates every `evalEvery` steps and after the last; checkpoints every `checkpointEvery` and at the
   * end — but not while the loss is going bad (a checkpoint due then is written once a step is good
   * again, or at the end), so when the run is stopped as diverged ({@link TrainingDivergedError}) the
   * last checkpoint holds the state from before.
   */
  async run(opts: { until?: number } = {}): Promise<TrainResult> {
    const end = Math.min(opts.until ?? this.o.steps, this.o.steps);
    const t0 = performance.now();
    let tokens = 0;
    const first = this.step;
    const guard = this.guard();
    const file = this.checkpointPath();
    // a checkpoint due after step s is written once step s + 1's loss, computed on its parameters, is good
    let checkpointDue = false;
    while (this.step < end) {
      const s = this.onBackend(() => this.computeStep());
      const diverged = guard.observe(s.loss);
      if (file !== undefined && checkpointDue && guard.streak === 0) {
        await this.save();
        checkpointDue = false;
      }
      if (diverged) {
        const where = this.o.checkpointFile ?? this.o.checkpointDir;
        const kept =
          where === undefined
            ? "no checkpoint directory was given"
            : this.lastCheckpointStep > 0
              ? `the last good checkpoint (step ${this.lastCheckpointStep}) is kept in ${where}`
              : `no checkpoint was written before the loss went bad`;
        throw new TrainingDivergedError(
          `${this.who}: training diverged at step ${this.step + 1}: ${guard.describe()}` +
            `${this.skippedSteps > 0 ? `; ${this.skippedSteps} steps skipped on a non-finite loss or gradient` : ""}` +
            `; ${kept}. Lower the learning rate.`,
          this.step + 1,
          this.lastCheckpointStep,
        );
      }
      this.onBackend(() => this.applyStep(s)); // the optimizer's update runs on the backend too
      tokens += s.tokens;
      if (!s.skipped) this.history.train.push([this.step, s.loss]);
      let evalLoss: number | undefined;
      const hasHeld = (this.o.heldOut?.length ?? 0) > 0;
      const evalNow =
        hasHeld &&
        (this.step === this.o.steps ||
          (this.o.evalEvery !== undefined && this.step % this.o.evalEvery === 0));
      if (evalNow) {
        evalLoss = this.evaluate();
        this.history.eval.push([this.step, evalLoss]);
      }
      checkpointDue ||= this.o.checkpointEvery !== undefined && this.step % this.o.checkpointEvery === 0;
      if (this.o.onProgress) {
        const elapsed = performance.now() - t0;
        const done = this.step - first;
        const mem = memory();
        this.o.onProgress({
          step: this.step,
          totalSteps: this.o.steps,
          loss: s.loss,
          lr: s.lr,
          gradNorm: s.gradNorm,
          tokensPerSec: elapsed > 0 ? (tokens * 1000) / elapsed : 0,
          elapsedMs: elapsed,
          etaMs: (elapsed / done) * (this.o.steps - this.step),
          rssBytes: rss(),
          ledgerBytes: mem.liveBytes,
          ledgerPeakBytes: mem.peakBytes,
          ...(evalLoss !== undefined ? { evalLoss } : {}),
          skipped: s.skipped,
          skippedSteps: this.skippedSteps,
          ...(s.terms ? { terms: s.terms } : {}),
        });
      }
      // after the progress report, so state it records (extraState) includes this step
      if (file !== undefined && this.step === this.o.steps) {
        await this.save();
        checkpointDue = false;
      }
    }
    // stopped early (`until`): a checkpoint due now is written unless the loss is going bad
    if (file !== undefined && checkpointDue && guard.streak === 0) await this.save();
    return {
      history: this.history,
      steps: this.step,
      tokens,
      seconds: (performance.now() - t0) / 1000,
      skippedSteps: this.skippedSteps,
    };
  }

  /**
   * Writes parameters, optimizer state, step, history and `extraState` to `dir/trainer-state.safetensors`
   * (default: the configured {@link checkpointPath}) atomically (a temporary file renamed into place),
   * then calls `onCheckpoint`.
   */
  async save(dir?: string): Promise<void> {
    const { writeSafetensors } = await import("@int21/io");
    const { mkdir } = await import("node:fs/promises");
    const { dirname } = await import("node:path");
    const path = this.checkpointPath(dir);
    if (path === undefined) throw new Error(`${this.who}.save: no checkpoint directory or file`);
    const folder = dirname(path);
    await mkdir(folder, { recursive: true });
    const state: OptimizerState = this.o.optimizer.stateDict();
    const tensors: Record<string, { dtype: "F32"; shape: number[]; data: Float32Array }> = {};
    this.params().forEach((p, i) => {
      tensors[`param.${i}`] = { dtype: "F32", shape: [...p.shape], data: p.toFloat32Array() };
    });
    for (const [k, v] of Object.entries(state.tensors))
      tensors[`optim.${k}`] = { dtype: "F32", shape: [v.length], data: v };
    const meta = {
      step: this.step,
      steps: this.o.steps,
      seed: this.o.seed ?? 0,
      batchSize: this.batchSize,
      gradAccum: this.accum,
      skippedSteps: this.skippedSteps,
      optimizer: state.meta,
      history: this.history,
      identity: await this.identity(),
      ...(this.o.extraState ? { extra: this.o.extraState.save() } : {}),
    };
    await writeSafetensors(path, tensors, {
      format: FORMAT,
      trainer: JSON.stringify(meta),
    });
    this.lastCheckpointStep = this.step;
    await this.o.onCheckpoint?.(folder, this.step);
  }

  /**
   * Restores a checkpoint written by {@link save} (parameters in place, optimizer state, step, history).
   * Returns false when `dir` holds none. Throws a {@link RunMismatchError} listing every difference
   * when the checkpoint's run identity differs from this run's (see {@link identity}) — unless `force`,
   * which continues from it anyway (the differences are kept in {@link resumedDespite}; the optimizer
   * takes this run's hyper-parameters) — and an Error when the parameter shapes cannot fit.
   * After it, {@link finished} says whether the run has nothing left to do. `dir` defaults to the
   * configured {@link checkpointPath}.
   */
  async resume(dir?: string, opts: { force?: boolean } = {}): Promise<boolean> {
    const { openSafetensors } = await import("@int21/io");
    const { existsSync } = await import("node:fs");
    const path = this.checkpointPath(dir);
    if (path === undefined) throw new Error(`${this.who}.resume: no checkpoint directory or file`);
    if (!existsSync(path)) return false;
    const f = await openSafetensors(path);
    try {
      if (f.metadata.format !== FORMAT)
        throw new Error(`${this.who}.resume: ${path} is not a trainer checkpoint`);
      const meta = JSON.parse(f.metadata.trainer ?? "null") as {
        step: number;
        seed: number;
        batchSize: number;
        gradAccum: number;
        skippedSteps?: number;
        optimizer: OptimizerState["meta"];
        history: TrainHistory;
        identity?: RunIdentity;
        extra?: unknown;
      };
      // a checkpoint from before run identities: what it recorded
      const saved: RunIdentity = meta.identity ?? {
        seed: meta.seed,
        batchSize: meta.batchSize,
        gradAccum: meta.gradAccum,
      };
      const differences = diffRunIdentity(saved, await this.identity());
      if (differences.length > 0 && !opts.force) throw new RunMismatchError(path, meta.step, differences);
      const params = this.params();
      const names = f.names.filter((n) => n.startsWith("param."));
      if (names.length !== params.length) {
        throw new Error(
          `${this.who}.resume: ${path} holds ${names.length} parameters, this run trains ${params.length}`,
        );
      }
      const values: Float32Array[] = [];
      for (let i = 0; i < params.length; i++) {
        const info = f.tensors[`param.${i}`];
        const p = params[i];
        if (!info || info.shape.join(",") !== p.shape.join(",")) {
          throw new Error(
            `${this.who}.resume: ${path}: param.${i} is [${info?.shape ?? "missing"}], the run's is [${p.shape}]`,
          );
        }
        values.push(await f.readF32(`param.${i}`));
      }
      const tensors: Record<string, Float32Array> = {};
      for (const n of f.names) if (n.startsWith("optim.")) tensors[n.slice(6)] = await f.readF32(n);
      // this run's hyper-parameters (the same as the saved ones unless forced)
      this.o.optimizer.loadStateDict({ meta: { ...meta.optimizer, hyper: { ...this.hyper0 } }, tensors });
      params.forEach((p, i) => {
        if (!p.isContiguous()) throw new Error(`${this.who}.resume: parameter ${i} is not contiguous`);
        p.data.set(values[i], p.offset);
      });
      this.step = meta.step;
      this.history.train = meta.history.train;
      this.history.eval = meta.history.eval;
      this.history.skipped = meta.history.skipped ?? [];
      this.skippedSteps = meta.skippedSteps ?? this.history.skipped.length;
      this.lastCheckpointStep = meta.step;
      this.resumedDespite = differences;
      if (this.o.extraState && meta.extra !== undefined) this.o.extraState.load(meta.extra);
      return true;
    } finally {
      await f.close();
    }
  }
}
