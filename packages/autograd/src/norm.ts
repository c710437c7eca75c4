// Fused row-wise ops over the last axis: RMSNorm, softmax, log-softmax (numerically stable).
import { referenceRmsNorm, referenceRmsNormBackward, trainKernels } from "@int21/quant-kernels";
import { allocFloats } from "./memory";
import { defineOp, type OpDef } from "./engine";
import { output } from "./strided";
import { fmtShape, type Tensor } from "./tensor";

function lastDim(op: string, x: Tensor): [number, number] {
  if (x.ndim < 1 || x.shape[x.ndim - 1] === 0)
    throw new Error(`autograd: ${op}: needs a non-empty last axis, got ${x} ${fmtShape(x.shape)}`);
  const d = x.shape[x.ndim - 1];
  return [x.size / d, d];
}

const rmsNormOp: OpDef<number> = {
  name: "rmsNorm",
  forward(ctx, [x, w], eps) {
    const [rows, d] = lastDim("rmsNorm", x);
    const xv = x.values();
    const wv = w.values();
    const out = allocFloats(xv.length);
    const inv = allocFloats(rows);
    const kernels = trainKernels(ctx.backend);
    if (kernels) kernels.rmsNorm(rows, d, xv, wv, eps, out, inv);
    else referenceRmsNorm(rows, d, xv, wv, eps, out, inv);
    // backward needs x, w and the per-row 1/rms (rows floats), not the output
    ctx.save(x, w);
    ctx.saveBuffer(inv, [rows]);
    return output(out, x.shape);
  },
  backward(ctx, gy, [gx, gw]) {
    const [x, w, invT] = ctx.saved;
    const [rows, d] = lastDim("rmsNorm", x);
    const xv = x.values();
    const wv = w.values();
    const inv = invT.values();
    const g = gy.values();
    const gxd = gx ? gx.data : null;
    const gwd = gw ? gw.data : null;
    // y = x·s·w, s = (mean(x²)+eps)^(-1/2): dx = s·(g⊙w) − x·s³/d·Σ(g⊙w⊙x), dw = Σ_rows g⊙x·s
    const kernels = trainKernels(ctx.backend);
    if (kernels) kernels.rmsNormBackward(rows, d, xv, wv, inv, g, gxd, gwd);
    else referenceRmsNormBackward(rows, d, xv, wv, inv, g, gxd, gwd);
  },
};
const applyRmsNorm = defineOp(rmsNormOp);

/**
 * RMSNorm over the last axis (fused): `y = x / sqrt(mean(x²) + eps) · w`, `w` of shape `[d]`.
 * Saves x, w and one float per row for backward. On a wasm backend both directions run quant-kernels'
 * `trainKernels(backend).rmsNorm / rmsNormBackward` (SIMD, rows split across threads); elsewhere their
 * scalar oracles `referenceRmsNorm / referenceRmsNormBackward` (float64 sums; 1/rms rounded to float32).
 */
export function rmsNorm(x: Tensor, w: Tensor, eps = 1e-5): Tensor {
  const d = x.shape[x.ndim - 1];
  if (w.ndim !== 1 || w.shape[0] !== d) {
    throw new Error(
      `autograd: rmsNorm: weight ${w} ${fmtShape(w.shape)} must be [${d}] for x ${fmtShape(x.shape)}`,
    );
  }
  if (!(eps >= 0)) throw new Error(`autograd: rmsNorm: eps ${eps} must be >= 0`);
  return applyRmsNorm([x, w], eps);
}

/** Row-wise softmax into `out` (max-subtracted); also usable on raw arrays. */
export function softmaxRows(x: Float32Array, out: Float32Array, rows: number, d: number): void {
  for (let r = 0; r < rows; r++) {
    const o = r * d;
    let m = Number.NEGATIVE_INFINITY;
    for (let j = 0; j < d; j++) if (x[o + j] > m) m = x[o + j];
    let s = 0;
    for (let j = 0; j < d; j++) {
      const e = Math.exp(x[o + j] - m);
      out[o + j] = e;
      s += e;
    }
    const inv = 1 / s;
    for (let j = 0; j < d; j++) out[o + j] *= inv;
  }
}

/**
 * Row-wise log-sum-exp (max-subtracted, float64 sum) of `rows` rows of `d` values starting at `xOff`.
 * ```
 * for r < rows: out[r] = log Σ_{j<d} exp(x[xOff + r*d + j])
 * ```
 */
export function logSumExpRows(
  x: Float32Array,
  xOff: number,
  rows: number,
  d: number,
  out: Float32Array | Float64Array,
): void {
  for (let r = 0; r < rows; r++) {
    const o = xOff + r * d;
    let m = Number.NEGATIVE_INFINITY;
    for (let j = 0; j < d; j++) if (x[o + j] > m) m = x[o + j];
    let s = 0;
    for (let j = 0; j < d; j++) s += Math.exp(x[o + j] - m);
    out[r] = m + Math.log(s);
  }
}

const softmaxOp: OpDef = {
  name: "softmax",
  forward(ctx, [x]) {
    const [rows, d] = lastDim("softmax", x);
    const out = allocFloats(x.size);
    softmaxRows(x.values(), out, rows, d);
    const y = output(out, x.shape);
    ctx.save(y); // dx = y ⊙ (g − Σ g⊙y)
    return y;
  },
  backward(ctx, gy, [gx]) {
    const y = ctx.saved[0].values();
    const [rows, d] = lastDim("softmax", ctx.saved[0]);
    const g = gy.values();
    const gd = gx!.data;
    for (let r = 0; r < rows; r++) {
      const o = r * d;
      let dot = 0;
      for (let j = 0; j < d; j++) dot += g[o + j] * y[o + j];
      for (let j = 0; j < d; j++) gd[o + j] += y[o + j] * (g[o + j] - dot);
    }
  },
};
const applySoftmax = defineOp(softmaxOp);

/** Softmax over the last axis (fused, max-subtracted). Saves its output for backward. */
export function softmax(x: Tensor): Tensor {
  return applySoftmax([x]);
}

const logSoftmaxOp: OpDef = {
  name: "logSoftmax",
  forward(ctx, [x]) {
    const [rows, d] = lastDim("logSoftmax", x);
    const xv = x.values();
    const lse = new Float64Array(rows);
    logSumExpRows(xv, 0, rows, d, lse);
    const out = allocFloats(x.size);
    for (let r = 0; r < rows; r++) for (let j = 0; j < d; j++) out[r * d + j] = xv[r * d + j] - lse[r];
    const y = output(out, x.shape);
    ctx.save(y); // dx = g − softmax ⊙ Σ g
    return y;
  },
  backward(ctx, gy, [gx]) {
    const y = ctx.saved[0].values();
    const [rows, d] = lastDim("logSoftmax", ctx.saved[0]);
    const g = gy.values();
    const gd = gx!.data;
    for (let r = 0; r < rows; r++) {
      const o = r * d;
      let s = 0;
      for (let j = 0; j < d; j++) s += g[o + j];
      for (let j = 0; j < d; j++) gd[o + j] += g[o + j] - Math.exp(y[o + j]) * s;
    }
  },
};
const applyLogSoftmax = defineOp(logSoftmaxOp);

/** Log-softmax over the last axis (fused: `x − logsumexp(x)`, max-subtracted). Saves its output. */
export function logSoftmax(x: Tensor): Tensor {
  return applyLogSoftmax([x]);
}

/** The op records of this family (forward/backward pairs), for introspection and tests. */
export const normOps = { rmsNormOp, softmaxOp, logSoftmaxOp };
