// Losses (fused, numerically stable): cross-entropy with integer targets, KL(teacher‖student), MSE.
import { allocFloats } from "./memory";
import { defineOp, detach, type OpDef } from "./engine";
import { logSumExpRows } from "./norm";
import { output } from "./strided";
import { fmtShape, type Tensor } from "./tensor";

/** How per-token losses are combined. */
export type Reduction = "mean" | "sum";

/** Options of {@link crossEntropy}. */
export interface CrossEntropyOptions {
  /** Targets equal to this are skipped (no loss, no gradient). Default -100. */
  ignoreIndex?: number;
  /** `mean` (default): average over non-ignored tokens (0 when all are ignored); `sum`: their sum. */
  reduction?: Reduction;
}

interface CePlan {
  targets: Int32Array;
  ignore: number;
  rows: number;
  V: number;
  /** 1/count for mean, 1 for sum. */
  factor: number;
}

const crossEntropyOp: OpDef<CePlan> = {
  name: "crossEntropy",
  forward(ctx, [logits], p) {
    const { targets, ignore, rows, V, factor } = p;
    const x = logits.values();
    const lse = allocFloats(rows);
    logSumExpRows(x, 0, rows, V, lse);
    let loss = 0;
    for (let r = 0; r < rows; r++) if (targets[r] !== ignore) loss += lse[r] - x[r * V + targets[r]];
    // backward: softmax rebuilt from the logits and the per-row log-sum-exp (no V-sized copy)
    ctx.save(logits);
    ctx.saveBuffer(lse, [rows]);
    return output(new Float32Array([loss * factor]), []);
  },
  backward(ctx, gy, [gx], p) {
    const { targets, ignore, rows, V, factor } = p;
    const x = ctx.saved[0].values();
    const lse = ctx.saved[1].data;
    const g = gy.data[gy.offset] * factor;
    const d = gx!.data;
    for (let r = 0; r < rows; r++) {
      if (targets[r] === ignore) continue;
      const o = r * V;
      for (let j = 0; j < V; j++) d[o + j] += g * Math.exp(x[o + j] - lse[r]);
      d[o + targets[r]] -= g;
    }
  },
};
const applyCrossEntropy = defineOp(crossEntropyOp);

/**
 * Cross-entropy of `logits` `[..., V]` against integer `targets` (one per row, in `[0, V)` or the
 * ignore index): per token `logsumexp(logits) − logits[target]`, reduced to a scalar `[]`.
 */
export function crossEntropy(
  logits: Tensor,
  targets: ArrayLike<number>,
  opts: CrossEntropyOptions = {},
): Tensor {
  if (logits.ndim < 1)
    throw new Error(`autograd: crossEntropy: logits ${fmtShape(logits.shape)} need a vocabulary axis`);
  const V = logits.shape[logits.ndim - 1];
  const rows = V === 0 ? 0 : logits.size / V;
  if (targets.length !== rows) {
    throw new Error(
      `autograd: crossEntropy: ${targets.length} targets for logits ${fmtShape(logits.shape)} (${rows} rows)`,
    );
  }
  const ignore = opts.ignoreIndex ?? -100;
  const t = Int32Array.from(targets);
  let count = 0;
  for (let r = 0; r < rows; r++) {
    if (t[r] === ignore) continue;
    if (!Number.isInteger(targets[r]) || t[r] < 0 || t[r] >= V) {
      throw new Error(
        `autograd: crossEntropy: target ${targets[r]} at row ${r} out of range [0, ${V}) (ignoreIndex ${ignore})`,
      );
    }
    count++;
  }
  const reduction = opts.reduction ?? "mean";
  if (reduction !== "mean" && reduction !== "sum")
    throw new Error(`autograd: crossEntropy: unknown reduction '${reduction}'`);
  const factor = reduction === "sum" ? 1 : count === 0 ? 0 : 1 / count;
  return applyCrossEntropy([logits], { targets: t, ignore, rows, V, factor });
}

/** Options of {@link klDiv}. */
export interface KlDivOptions {
  /** Softmax temperature τ applied to both logit tensors. Default 1. No τ² factor is applied. */
  temperature?: number;
  /** `mean` (default): average of the per-token KL over rows; `sum`: their sum. */
  reduction?: Reduction;
}

interface KlPlan {
  rows: number;
  V: number;
  tau: number;
  factor: number;
}

const klDivOp: OpDef<KlPlan> = {
  name: "klDiv",
  forward(ctx, [teacher, student], { rows, V, tau, factor }) {
    const tv = teacher.values();
    const sv = student.values();
    const lt = allocFloats(rows);
    const ls = allocFloats(rows);
    // log-sum-exp of row r of x/τ (max-subtracted, float64 sum)
    const lseScaled = (x: Float32Array, r: number): number => {
      const o = r * V;
      let m = Number.NEGATIVE_INFINITY;
      for (let j = 0; j < V; j++) if (x[o + j] > m) m = x[o + j];
      let s = 0;
      for (let j = 0; j < V; j++) s += Math.exp((x[o + j] - m) / tau);
      return m / tau + Math.log(s);
    };
    let kl = 0;
    for (let r = 0; r < rows; r++) {
      lt[r] = lseScaled(tv, r);
      ls[r] = lseScaled(sv, r);
      const o = r * V;
      let k = 0;
      for (let j = 0; j < V; j++) {
        const lp = tv[o + j] / tau - lt[r];
        const lq = sv[o + j] / tau - ls[r];
        k += Math.exp(lp) * (lp - lq);
      }
      kl += k;
    }
    // backward: dKL/ds = (q − p)/τ, both softmaxes rebuilt from saved logits and row log-sum-exps
    ctx.save(teacher, student);
    ctx.saveBuffer(lt, [rows]);
    ctx.saveBuffer(ls, [rows]);
    return output(new Float32Array([kl * factor]), []);
  },
  backward(ctx, gy, [, gs], { rows, V, tau, factor }) {
    if (!gs) return;
    const [teacher, student, ltT, lsT] = ctx.saved;
    const tv = teacher.values();
    const sv = student.values();
    const lt = ltT.data;
    const ls = lsT.data;
    const g = (gy.data[gy.offset] * factor) / tau;
    const d = gs.data;
    for (let r = 0; r < rows; r++) {
      const o = r * V;
      for (let j = 0; j < V; j++) {
        const p = Math.exp(tv[o + j] / tau - lt[r]);
        const q = Math.exp(sv[o + j] / tau - ls[r]);
        d[o + j] += g * (q - p);
      }
    }
  },
};
const applyKlDiv = defineOp(klDivOp);

/**
 * KL(p‖q) between the teacher distribution `p = softmax(teacher/τ)` and the student distribution
 * `q = softmax(student/τ)`, both logits `[..., V]` of the same shape. Per token (row):
 * `KL_r = Σ_v p_v (log p_v − log q_v)` (summed over the vocabulary); then `mean` over rows (default) or `sum`.
 * Only the student gets a gradient (`(q − p)/τ` per token); the teacher is treated as a constant.
 */
export function klDiv(teacherLogits: Tensor, studentLogits: Tensor, opts: KlDivOptions = {}): Tensor {
  if (
    teacherLogits.ndim < 1 ||
    teacherLogits.shape.some((d, i) => d !== studentLogits.shape[i]) ||
    teacherLogits.ndim !== studentLogits.ndim
  ) {
    throw new Error(
      `autograd: klDiv: teacher ${fmtShape(teacherLogits.shape)} and student ${fmtShape(studentLogits.shape)} logits must have the same shape`,
    );
  }
  const V = studentLogits.shape[studentLogits.ndim - 1];
  if (V === 0) throw new Error("autograd: klDiv: empty vocabulary axis");
  const rows = studentLogits.size / V;
  const tau = opts.temperature ?? 1;
  if (!(tau > 0) || !Number.isFinite(tau)) throw new Error(`autograd: klDiv: temperature ${tau} must be > 0`);
  const reduction = opts.reduction ?? "mean";
  if (reduction !== "mean" && reduction !== "sum")
    throw new Error(`autograd: klDiv: unknown reduction '${reduction}'`);
  const factor = reduction === "sum" ? 1 : rows === 0 ? 0 : 1 / rows;
  const teacher = teacherLogits.requiresGrad ? detach(teacherLogits) : teacherLogits;
  return applyKlDiv([teacher, studentLogits], { rows, V, tau, factor });
}

const mseOp: OpDef<number> = {
  name: "mse",
  forward(ctx, [a, b], factor) {
    const av = a.values();
    const bv = b.values();
    let s = 0;
    for (let i = 0; i < av.length; i++) {
      const e = av[i] - bv[i];
      s += e * e;
    }
    ctx.save(a, b);
    return output(new Float32Array([s * factor]), []);
  },
  backward(ctx, gy, [ga, gb], factor) {
    const av = ctx.saved[0].values();
    const bv = ctx.saved[1].values();
    const g = 2 * factor * gy.data[gy.offset];
    for (let i = 0; i < av.length; i++) {
      const e = g * (av[i] - bv[i]);
      if (ga) ga.data[i] += e;
      if (gb) gb.data[i] -= e;
    }
  },
};
const applyMse = defineOp(mseOp);

/** Mean (default) or sum of squared differences `(a − b)²` over all elements; `a` and `b` have the same shape. */
export function mse(a: Tensor, b: Tensor, reduction: Reduction = "mean"): Tensor {
  if (a.shape.some((d, i) => d !== b.shape[i]) || a.ndim !== b.ndim) {
    throw new Error(`autograd: mse: shapes ${fmtShape(a.shape)} and ${fmtShape(b.shape)} must be equal`);
  }
  if (reduction !== "mean" && reduction !== "sum")
    throw new Error(`autograd: mse: unknown reduction '${reduction}'`);
  return applyMse([a, b], reduction === "sum" ? 1 : a.size === 0 ? 0 : 1 / a.size);
}

/** The op records of this family (forward/backward pairs), for introspection and tests. */
export const lossOps = { crossEntropyOp, klDivOp, mseOp };
