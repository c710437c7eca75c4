// Fused classifier + cross-entropy over a frozen Linear, a chunk of rows at a time: the [rows × vocab]
// logits never exist whole (at seq 512 and a 32k vocabulary they are 65 MB, plus their gradient).
import { defineOp, fmtShape, logSumExpRows, type OpDef, Tensor, tensor } from "@int21/autograd";
import { type Linear, TRAIN_CE_CUTOFF, type TrainKernels, trainKernels } from "@int21/quant-kernels";
import { IGNORE_INDEX } from "./dataset";
import type { FrozenLinear } from "./lora-op";

interface Plan {
  lin: FrozenLinear;
  targets: Int32Array;
  rows: number;
  chunk: number;
  /** 1 / (number of trained targets), or 0 when there are none. */
  factor: number;
}

/**
 * Probabilities `exp(z − lse)` below `2^-64` (`z − lse < −44.36`) are taken as 0 in the gradient: their
 * whole row's mass (≤ vocab · 2^-64) is far below float32 resolution, and leaving them in makes the
 * `dlogits · W` GEMM multiply subnormal floats, which x86 runs at a small fraction of its speed
 * (WebAssembly has no flush-to-zero mode).
 */
export const SOFTMAX_GRAD_CUTOFF = TRAIN_CE_CUTOFF;

/**
 * The chunk buffer of a backend with training kernels: `[chunk × vocab]` floats in wasm memory (the
 * classifier GEMMs and the row kernel work in place), allocated once and reused by every call whose
 * chunk fits (grown when one does not).
 */
const chunkBuffers = new WeakMap<TrainKernels, Float32Array>();

function chunkBuffer(k: TrainKernels, n: number): Float32Array {
  let b = chunkBuffers.get(k);
  if (b === undefined || b.length < n) {
    if (b !== undefined) k.freeF32(b);
    b = k.allocF32(n);
    chunkBuffers.set(k, b);
  }
  return b;
}

/**
 * Row `r` of a chunk: `logits[r·V + j] ← softmax_j − [j = t]` (0 for an ignored row or a tiny
 * probability, see {@link SOFTMAX_GRAD_CUTOFF}).
 */
function softmaxGradRows(
  logits: Float32Array,
  lse: Float64Array,
  targets: Int32Array,
  r0: number,
  c: number,
  V: number,
): void {
  for (let r = 0; r < c; r++) {
    const o = r * V;
    const t = targets[r0 + r];
    if (t === IGNORE_INDEX) {
      logits.fill(0, o, o + V);
      continue;
    }
    const l = lse[r];
    for (let j = 0; j < V; j++) {
      const z = logits[o + j] - l;
      logits[o + j] = z < SOFTMAX_GRAD_CUTOFF ? 0 : Math.exp(z);
    }
    logits[o + t] -= 1;
  }
}

// Forward computes the loss and, when x needs a gradient, also dx/dloss (the loss is a scalar, so
// backward only scales it by the incoming gradient): the classifier runs twice per chunk (logits, then
// dlogits·W) instead of three times, and the vocabulary-wide exponentials run once.
const op: OpDef<Plan> = {
  name: "linearCrossEntropy",
  forward(ctx, [x], p) {
    const { lin, targets, rows, chunk } = p;
    const K = lin.inFeatures;
    const V = lin.outFeatures;
    const xv = x.values();
    const grad = ctx.recording && ctx.needsInputGrad[0];
    const dx = grad ? new Float32Array(rows * K) : null;
    const n = Math.min(chunk, rows) * V;
    const kernels = trainKernels(ctx.backend);
    let loss = 0;
    if (kernels) {
      // the wasm row kernel, in place in a reused wasm buffer
      const logits = chunkBuffer(kernels, n).subarray(0, n);
      const rowLoss = new Float32Array(chunk);
      const lse = new Float32Array(chunk);
      for (let r0 = 0; r0 < rows; r0 += chunk) {
        const c = Math.min(chunk, rows - r0);
        const lc = logits.subarray(0, c * V);
        lin.forward(xv.subarray(r0 * K, (r0 + c) * K), c, lc);
        kernels.crossEntropyRows({
          logits: lc,
          rows: c,
          V,
          targets: targets.subarray(r0, r0 + c),
          ignoreIndex: IGNORE_INDEX,
          loss: rowLoss,
          lse,
          grad: dx !== null,
        });
        for (let r = 0; r < c; r++) loss += rowLoss[r];
        if (dx) lin.inputGrad(lc, c, dx.subarray(r0 * K, (r0 + c) * K));
      }
    } else {
      const logits = new Float32Array(n);
      const lse = new Float64Array(chunk);
      for (let r0 = 0; r0 < rows; r0 += chunk) {
        const c = Math.min(chunk, rows - r0);
        lin.forward(xv.subarray(r0 * K, (r0 + c) * K), c, logits);
        logSumExpRows(logits, 0, c, V, lse);
        for (let r = 0; r < c; r++) {
          const t = targets[r0 + r];
          if (t !== IGNORE_INDEX) loss += lse[r] - logits[r * V + t];
        }
        if (dx) {
          softmaxGradRows(logits, lse, targets, r0, c, V);
          lin.inputGrad(logits.subarray(0, c * V), c, dx.subarray(r0 * K, (r0 + c) * K));
        }
      }
    }
    if (dx) ctx.saveBuffer(dx, [rows, K]); // d(loss / factor)/dx
    return tensor(new Float32Array([loss * p.factor]), [], { tag: "activation" });
  },
  backward(ctx, gy, [gx], p) {
    if (!gx) return;
    const g = gy.data[gy.offset] * p.factor;
    const dx = ctx.saved[0].data;
    const d = gx.data;
    for (let i = 0; i < dx.length; i++) d[i] += g * dx[i];
  },
};
const apply = defineOp(op);

/**
 * Mean cross-entropy of the logits `x·Wᵀ` of a frozen `classifier` against integer `targets`
 * (`IGNORE_INDEX` rows skipped), without building the `[rows × vocab]` logits at once:
 * ```
 * loss = (1/n) Σ_{r: t_r ≠ -100} (logsumexp_j (x_r·W_jᵀ) − x_r·W_{t_r}ᵀ)
 * dx_r = (1/n) (softmax(x_r·Wᵀ) − onehot(t_r)) · W            (chunk by chunk, logits recomputed)
 * ```
 * `x` is `[..., K]` with one row per target. Only `x` gets a gradient (the classifier is frozen, so a
 * LoRA-wrapped classifier must go through `linearForward` + `crossEntropy` instead). When `x` needs a
 * gradient, forward computes it too (one `chunk × vocab` buffer and the `[rows × K]` gradient, saved for
 * backward, which only scales it): the classifier runs twice per chunk (`x·Wᵀ`, `dlogits·W`), and
 * probabilities below `2^-64` count as 0 in the gradient (see {@link SOFTMAX_GRAD_CUTOFF}). On a wasm
 * backend (autograd's current one) the row work runs in quant-kernels' `crossEntropyRows` kernel on a
 * `chunk × vocab` buffer in wasm memory that is kept and reused across calls.
 */
export function linearCrossEntropy(
  x: Tensor,
  classifier: Linear,
  targets: ArrayLike<number>,
  opts: { chunk?: number } = {},
): Tensor {
  const lin = classifier as FrozenLinear;
  if (typeof lin.inputGrad !== "function") {
    throw new Error(
      "lora: linearCrossEntropy: the classifier has no inputGrad(g, rows, dx) (a LoRA-wrapped classifier is not frozen)",
    );
  }
  const K = lin.inFeatures;
  const V = lin.outFeatures;
  if (!(x instanceof Tensor) || x.ndim < 1 || x.shape[x.ndim - 1] !== K) {
    throw new Error(
      `lora: linearCrossEntropy: x ${x instanceof Tensor ? fmtShape(x.shape) : String(x)} needs last dimension ${K}`,
    );
  }
  const rows = x.size / K;
  if (targets.length !== rows)
    throw new Error(`lora: linearCrossEntropy: ${targets.length} targets for ${rows} rows`);
  const t = Int32Array.from(targets);
  let n = 0;
  for (let i = 0; i < rows; i++) {
    if (t[i] === IGNORE_INDEX) continue;
    if (!Number.isInteger(t[i]) || t[i] < 0 || t[i] >= V) {
      throw new Error(
        `lora: linearCrossEntropy: target ${t[i]} at row ${i} is outside [0, ${V}) and is not ${IGNORE_INDEX}`,
      );
    }
    n++;
  }
  const chunk = opts.chunk ?? 128;
  if (!Number.isSafeInteger(chunk) || chunk < 1)
    throw new Error(`lora: linearCrossEntropy: chunk must be a positive integer, got ${chunk}`);
  return apply([x], { lin, targets: t, rows, chunk, factor: n > 0 ? 1 / n : 0 });
}
