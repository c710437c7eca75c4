// A model-agnostic training loop: deterministic batches, gradient accumulation, LR schedule, clipping,
// periodic evaluation, progress (loss, tokens/s, ETA, memory), checkpoint save / resume.
import {
  backward,
  clipGradNorm,
  memory,
  noGrad,
  type Optimizer,
  type OptimizerState,
  scale,
  type Tensor,
  tidy,
} from "@int21/autograd";
import { type Batch, batchIndices, collate, type Example } from "./dataset";
import { lineChartSvg } from "./loss-chart";
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
}

/** Loss curves: `[step, loss]` points (step counts from 1). */
export interface TrainHistory {
  train: [number, number][];
  eval: [number, number][];
}

/** Options of {@link Trainer}. */
export interface TrainerOptions {
  /** An optimizer over the trainable tensors (autograd Adam / AdamW / SGD). */
  optimizer: Optimizer & { lr: number };
  /** The mean loss of one batch, as a scalar tensor with a graph (it is back-propagated). */
  loss: (batch: Batch, info: LossInfo) => Tensor;
  /** Training examples. */
  train: readonly Example[];
  /** Held-out examples for evaluation. */
  heldOut?: readonly Example[];
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
  checkpointEvery?: number;
  /** Called after a checkpoint is written (e.g. to save the adapter in PEFT format beside it). */
  onCheckpoint?: (dir: string, step: number) => Promise<void> | void;
  /** Seed of the batch order. Default 0. */
  seed?: number;
  /** Input id used to pad short examples. Default 0. */
  padId?: number;
  /** Called before every training micro-batch (e.g. `model.setDropoutStep(micro)`). */
  beforeMicroBatch?: (micro: number) => void;
  /** Progress callback after every step. */
  onProgress?: (p: Progress) => void;
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
    `step ${p.step}/${p.totalSteps} | loss ${p.loss.toFixed(4)}${ev} | lr ${p.lr.toExponential(2)} | ` +
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

function positiveInt(v: number | undefined, name: string, dflt: number): number {
  const x = v ?? dflt;
  if (!Number.isSafeInteger(x) || x < 1)
    throw new Error(`lora: Trainer: ${name} must be a positive integer, got ${String(v)}`);
  return x;
}

/**
 * The training loop. Batches are a pure function of (seed, step), the schedule of the step, dropout of
 * the micro-batch index, so a run resumed from a checkpoint continues exactly as an uninterrupted run.
 */
export class Trainer {
  /** Steps completed (restored by {@link resume}). */
  step = 0;
  readonly history: TrainHistory = { train: [], eval: [] };
  private readonly o: TrainerOptions;
  private readonly batchSize: number;
  private readonly accum: number;
  private readonly schedule?: ScheduleOptions;

  constructor(opts: TrainerOptions) {
    this.o = opts;
    positiveInt(opts.steps, "steps", 1);
    this.batchSize = positiveInt(opts.batchSize, "batchSize", 1);
    this.accum = positiveInt(opts.gradAccum, "gradAccum", 1);
    if (opts.evalEvery !== undefined) positiveInt(opts.evalEvery, "evalEvery", 1);
    if (opts.checkpointEvery !== undefined) positiveInt(opts.checkpointEvery, "checkpointEvery", 1);
    if (opts.maxGradNorm !== undefined && !(opts.maxGradNorm > 0))
      throw new Error(`lora: Trainer: maxGradNorm must be > 0, got ${opts.maxGradNorm}`);
    if (opts.train.length === 0) throw new Error("lora: Trainer: no training examples");
    if (opts.schedule) {
      this.schedule = { ...opts.schedule, totalSteps: opts.schedule.totalSteps ?? opts.steps };
      checkSchedule(this.schedule);
    }
    if (opts.optimizer.params.length === 0)
      throw new Error("lora: Trainer: the optimizer has no parameters (is every adapter frozen?)");
  }

  private params(): readonly Tensor[] {
    return this.o.optimizer.params;
  }

  /** The collated training micro-batch `micro` (over the whole run). */
  trainBatch(micro: number): Batch {
    const idx = batchIndices(this.o.train.length, this.batchSize, this.o.seed ?? 0, micro);
    return collate(
      idx.map((i) => this.o.train[i]),
      this.o.padId ?? 0,
    );
  }

  /** Runs one optimizer step; returns its mean loss, learning rate, gradient norm and input tokens. */
  trainStep(): { loss: number; lr: number; gradNorm: number; tokens: number } {
    const { optimizer } = this.o;
    const params = this.params();
    const step = this.step;
    optimizer.zeroGrad();
    let lossSum = 0;
    let tokens = 0;
    for (let k = 0; k < this.accum; k++) {
      const micro = step * this.accum + k;
      this.o.beforeMicroBatch?.(micro);
      const batch = this.trainBatch(micro);
      tokens += batch.inputTokens;
      const value = tidy(() => {
        const l = this.o.loss(batch, { step, micro, training: true });
        const v = l.item();
        if (!Number.isFinite(v))
          throw new Error(`lora: Trainer: loss is ${v} at step ${step + 1}, micro-batch ${k}`);
        backward(this.accum > 1 ? scale(l, 1 / this.accum) : l);
        return v;
      });
      lossSum += value;
    }
    let gradNorm = Number.NaN;
    if (this.o.maxGradNorm !== undefined) gradNorm = clipGradNorm(params, this.o.maxGradNorm);
    else {
      let ss = 0;
      for (const p of params) if (p.grad) for (const g of p.grad.data) ss += g * g;
      gradNorm = Math.sqrt(ss);
    }
    if (this.schedule) optimizer.lr = learningRate(step, this.schedule);
    const lr = optimizer.lr;
    optimizer.step();
    this.step = step + 1;
    return { loss: lossSum / this.accum, lr, gradNorm, tokens };
  }

  /** Mean loss per trained token over the held-out set (no graph, no dropout). */
  evaluate(): number {
    const held = this.o.heldOut ?? [];
    if (held.length === 0) throw new Error("lora: Trainer.evaluate: no held-out examples");
    const n = Math.min(held.length, this.o.evalExamples ?? held.length);
    let sum = 0;
    let count = 0;
    for (let i = 0; i < n; i += this.batchSize) {
      const batch = collate(held.slice(i, Math.min(n, i + this.batchSize)), this.o.padId ?? 0);
      if (batch.tokens === 0) continue;
      const v = noGrad(() =>
        tidy(() => this.o.loss(batch, { step: this.step, micro: -1, training: false }).item()),
      );
      sum += v * batch.tokens;
      count += batch.tokens;
    }
    return sum / count;
  }

  /**
   * Runs until `steps` (or `opts.until`, to stop early as a killed run would) and returns the history.
   * Evaluates every `evalEvery` steps and after the last; checkpoints every `checkpointEvery` and at the end.
   */
  async run(opts: { until?: number } = {}): Promise<TrainResult> {
    const end = Math.min(opts.until ?? this.o.steps, this.o.steps);
    const t0 = performance.now();
    let tokens = 0;
    const first = this.step;
    while (this.step < end) {
      const s = this.trainStep();
      tokens += s.tokens;
      this.history.train.push([this.step, s.loss]);
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
      const ckptNow =
        this.o.checkpointDir !== undefined &&
        (this.step === this.o.steps ||
          (this.o.checkpointEvery !== undefined && this.step % this.o.checkpointEvery === 0));
      if (ckptNow) await this.save(this.o.checkpointDir as string);
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
        });
      }
    }
    return { history: this.history, steps: this.step, tokens, seconds: (performance.now() - t0) / 1000 };
  }

  /**
   * Writes parameters, optimizer state, step and history to `dir/trainer-state.safetensors` (atomically:
   * a temporary file renamed into place), then calls `onCheckpoint`.
   */
  async save(dir: string): Promise<void> {
    const { writeSafetensors } = await import("@int21/io");
    const { mkdir } = await import("node:fs/promises");
    const { join } = await import("node:path");
    await mkdir(dir, { recursive: true });
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
      optimizer: state.meta,
      history: this.history,
    };
    await writeSafetensors(join(dir, TRAINER_CHECKPOINT_FILE), tensors, {
      format: FORMAT,
      trainer: JSON.stringify(meta),
    });
    await this.o.onCheckpoint?.(dir, this.step);
  }

  /**
   * Restores a checkpoint written by {@link save} (parameters in place, optimizer state, step, history).
   * Returns false when `dir` holds none; throws when it does not fit this run (parameter shapes, batch
   * size, accumulation or seed differ).
   */
  async resume(dir: string): Promise<boolean> {
    const { openSafetensors } = await import("@int21/io");
    const { existsSync } = await import("node:fs");
    const { join } = await import("node:path");
    const path = join(dir, TRAINER_CHECKPOINT_FILE);
    if (!existsSync(path)) return false;
    const f = await openSafetensors(path);
    try {
      if (f.metadata.format !== FORMAT)
        throw new Error(`lora: Trainer.resume: ${path} is not a trainer checkpoint`);
      const meta = JSON.parse(f.metadata.trainer ?? "null") as {
        step: number;
        seed: number;
        batchSize: number;
        gradAccum: number;
        optimizer: OptimizerState["meta"];
        history: TrainHistory;
      };
      const fit: [string, unknown, unknown][] = [
        ["seed", meta.seed, this.o.seed ?? 0],
        ["batchSize", meta.batchSize, this.batchSize],
        ["gradAccum", meta.gradAccum, this.accum],
      ];
      for (const [k, saved, now] of fit) {
        if (saved !== now)
          throw new Error(`lora: Trainer.resume: ${path} was saved with ${k} ${saved}, this run has ${now}`);
      }
      const params = this.params();
      const names = f.names.filter((n) => n.startsWith("param."));
      if (names.length !== params.length) {
        throw new Error(
          `lora: Trainer.resume: ${path} holds ${names.length} parameters, this run trains ${params.length}`,
        );
      }
      const values: Float32Array[] = [];
      for (let i = 0; i < params.length; i++) {
        const info = f.tensors[`param.${i}`];
        const p = params[i];
        if (!info || info.shape.join(",") !== p.shape.join(",")) {
          throw new Error(
            `lora: Trainer.resume: ${path}: param.${i} is [${info?.shape ?? "missing"}], the run's is [${p.shape}]`,
          );
        }
        values.push(await f.readF32(`param.${i}`));
      }
      const tensors: Record<string, Float32Array> = {};
      for (const n of f.names) if (n.startsWith("optim.")) tensors[n.slice(6)] = await f.readF32(n);
      this.o.optimizer.loadStateDict({ meta: meta.optimizer, tensors });
      params.forEach((p, i) => {
        if (!p.isContiguous()) throw new Error(`lora: Trainer.resume: parameter ${i} is not contiguous`);
        p.data.set(values[i], p.offset);
      });
      this.step = meta.step;
      this.history.train = meta.history.train;
      this.history.eval = meta.history.eval;
      return true;
    } finally {
      await f.close();
    }
  }
}
