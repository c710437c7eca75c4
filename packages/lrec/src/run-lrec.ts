// The LREC training loop: the packed student with its LoRA adapter learns to match the frozen float
// teacher (KL + λ·CE) on EMEF (fused packed forward/backward, per-layer checkpointing), with Adam + L2
// decay, a schedule, non-finite step skipping, progress with ETA, and resumable checkpoints.
import { Adam, backward, noGrad, type Tensor, tidy } from "@int21/autograd";
import { openSafetensors, writeFileAtomic, writeSafetensors } from "@int21/io";
import {
  checkSchedule,
  learningRate,
  type LoRAModel,
  lineChartSvg,
  loraParameters,
  type ScheduleOptions,
} from "@int21/lora";
import { type LlamaWeights, trainForward } from "@int21/model-llama";
import { addLrecAdapter, type LrecAdapterOptions, type SvdInitReport } from "./adapter";
import type { LrecData } from "./data";
import { type LossReduction, lrecLoss, type TopKLogits } from "./loss";
import { TeacherCache } from "./teacher-cache";

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
  /** Per-layer activation checkpointing of the student. Default true. */
  checkpointLayers?: boolean;
  /** Resumable checkpoint file (safetensors): resumed from when present, written every `checkpointEvery` steps and at the end. */
  checkpointPath?: string;
  checkpointEvery?: number;
  /** Stop after this step (as if the process were killed there; a later run resumes). */
  until?: number;
  onProgress?: (p: LrecProgress) => void;
  /** Messages (skipped steps). Default `console.warn`. */
  log?: (message: string) => void;
  /** Write the loss curves (SVG) here at the end. */
  lossChart?: string;
}

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
  /** Wall time of this process's steps. */
  seconds: number;
}

const CKPT_FORMAT = "int21-lrec-checkpoint";

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
  const lr = opts.lr ?? 1e-3;
  const schedule: ScheduleOptions = { kind: "constant", ...opts.schedule, lr, totalSteps: steps };
  checkSchedule(schedule);
  const optimizer = new Adam(params, { lr, weightDecay: opts.weightDecay ?? 1e-5 });
  const log = opts.log ?? ((m: string) => console.warn(m));
  const history: LrecStep[] = [];
  let step = 0;
  let resumed = false;
  if (opts.checkpointPath) {
    const { existsSync } = await import("node:fs");
    if (existsSync(opts.checkpointPath)) {
      const st = await loadCheckpoint(opts.checkpointPath, params, optimizer);
      step = st.step;
      history.push(...st.history);
      resumed = true;
    }
  }
  const end = Math.min(opts.until ?? steps, steps);
  const t0 = performance.now();
  const first = step;
  let tokens = 0;
  while (step < end) {
    const batch = source(step);
    const B = batch.input.length;
    const T = batch.input[0].length;
    const rows = B * T;
    optimizer.lr = learningRate(step, schedule);
    optimizer.zeroGrad();
    const r = tidy(() => {
      const tl: Tensor | TopKLogits = cache
        ? cache.topk(step)
        : noGrad(() => trainForward(teacher as LlamaWeights, batch.input, { checkpoint: false }));
      const sl = trainForward(student, batch.input, { checkpoint: opts.checkpointLayers ?? true });
      const l = lrecLoss(tl, sl, batch.target, {
        klWeight: opts.klWeight ?? 1,
        ceWeight: opts.lambda ?? 0,
        klReduction: opts.klReduction ?? "sum",
        ceReduction: opts.ceReduction ?? "mean",
      });
      const v = { loss: l.loss.item(), kl: l.kl.item(), ce: l.ce.item(), finite: true };
      if (!Number.isFinite(v.loss)) v.finite = false;
      else backward(l.loss);
      return v;
    });
    let finite = r.finite;
    if (finite) {
      for (const p of params) {
        const g = p.grad?.data;
        if (g && !g.every(Number.isFinite)) {
          finite = false;
          break;
        }
      }
    }
    if (finite) optimizer.step();
    else {
      optimizer.zeroGrad();
      log(
        `lrec: step ${step + 1}: loss ${r.loss} (KL ${r.kl}, CE ${r.ce}) or its gradient is not finite; step skipped, no update`,
      );
    }
    tokens += rows;
    step++;
    const klPerToken = (opts.klReduction ?? "sum") === "sum" ? r.kl / rows : r.kl;
    const rec: LrecStep = {
      step,
      loss: r.loss,
      kl: r.kl,
      ce: r.ce,
      klPerToken,
      lr: optimizer.lr,
      skipped: !finite,
    };
    history.push(rec);
    if (
      opts.checkpointPath &&
      (step === steps || (opts.checkpointEvery !== undefined && step % opts.checkpointEvery === 0))
    )
      await saveCheckpoint(opts.checkpointPath, params, optimizer, step, history);
    if (opts.onProgress) {
      const elapsed = performance.now() - t0;
      opts.onProgress({
        ...rec,
        totalSteps: steps,
        elapsedMs: elapsed,
        etaMs: (elapsed / (step - first)) * (steps - step),
        tokensPerSec: elapsed > 0 ? (tokens * 1000) / elapsed : 0,
      });
    }
  }
  if (opts.lossChart) {
    await writeFileAtomic(opts.lossChart, lrecChartSvg(history, `LREC (${step} steps)`));
  }
  return { history, model, init, steps: step, resumed, seconds: (performance.now() - t0) / 1000 };
}

async function saveCheckpoint(
  path: string,
  params: readonly Tensor[],
  optimizer: Adam,
  step: number,
  history: readonly LrecStep[],
): Promise<void> {
  const state = optimizer.stateDict();
  const tensors: Record<string, { dtype: "F32"; shape: number[]; data: Float32Array }> = {};
  params.forEach((p, i) => {
    tensors[`param.${i}`] = { dtype: "F32", shape: [...p.shape], data: p.toFloat32Array() };
  });
  for (const [k, v] of Object.entries(state.tensors))
    tensors[`optim.${k}`] = { dtype: "F32", shape: [v.length], data: v };
  await writeSafetensors(path, tensors, {
    format: CKPT_FORMAT,
    state: JSON.stringify({ step, optimizer: state.meta, history }),
  });
}

async function loadCheckpoint(
  path: string,
  params: readonly Tensor[],
  optimizer: Adam,
): Promise<{ step: number; history: LrecStep[] }> {
  const f = await openSafetensors(path);
  try {
    if (f.metadata.format !== CKPT_FORMAT)
      throw new Error(`lrec: runLrec: ${path} is not an LREC checkpoint`);
    const meta = JSON.parse(f.metadata.state ?? "null") as {
      step: number;
      optimizer: ReturnType<Adam["stateDict"]>["meta"];
      history: LrecStep[];
    };
    const names = f.names.filter((n) => n.startsWith("param."));
    if (names.length !== params.length)
      throw new Error(
        `lrec: runLrec: ${path} holds ${names.length} parameters, this run trains ${params.length}`,
      );
    const values: Float32Array[] = [];
    for (let i = 0; i < params.length; i++) {
      const info = f.tensors[`param.${i}`];
      if (!info || info.shape.join(",") !== params[i].shape.join(","))
        throw new Error(
          `lrec: runLrec: ${path}: param.${i} is [${info?.shape ?? "missing"}], the run's is [${params[i].shape}]`,
        );
      values.push(await f.readF32(`param.${i}`));
    }
    const tensors: Record<string, Float32Array> = {};
    for (const n of f.names) if (n.startsWith("optim.")) tensors[n.slice(6)] = await f.readF32(n);
    optimizer.loadStateDict({ meta: meta.optimizer, tensors });
    params.forEach((p, i) => {
      p.data.set(values[i], p.offset);
    });
    return { step: meta.step, history: meta.history };
  } finally {
    await f.close();
  }
}
