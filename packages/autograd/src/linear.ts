// y = x·Wᵀ for a float weight tensor (matmul) or a packed quantized weight (a custom op).
import type { QuantizedLinear } from "@int21/quant-kernels";
import { defineOp, type OpDef } from "./engine";
import { denseOf, matmul } from "./linalg";
import { scratch } from "./memory";
import { output } from "./strided";
import { fmtShape, Tensor } from "./tensor";
import { reshape } from "./view";

/** A linear layer's weight: a float tensor `[N, K]` (trainable or frozen) or a packed quantized weight. */
export type LinearWeight = Tensor | QuantizedLinear;

/** Whether `w` is a packed quantized weight (rather than a float tensor). */
export function isQuantizedLinear(w: unknown): w is QuantizedLinear {
  return (
    !(w instanceof Tensor) &&
    typeof w === "object" &&
    w !== null &&
    "qweight" in w &&
    "format" in w &&
    "outFeatures" in w &&
    "inFeatures" in w
  );
}

const quantizedLinearOp: OpDef<QuantizedLinear> = {
  name: "quantizedLinear",
  forward(ctx, [x], q) {
    const K = q.inFeatures;
    const N = q.outFeatures;
    const rows = x.size / K;
    const [xd, xo] = denseOf(x);
    const y = new Float32Array(rows * N);
    ctx.backend.qmatmul(xo === 0 && xd.length === rows * K ? xd : xd.subarray(xo, xo + rows * K), rows, q, y);
    // The weight is frozen and the input gradient g·W needs only W: nothing is saved.
    return output(y, [...x.shape.slice(0, -1), N]);
  },
  backward(ctx, gy, [gx], q) {
    if (!gx) return;
    const K = q.inFeatures;
    const rows = gy.size / q.outFeatures;
    const tmp = scratch(rows * K);
    ctx.backend.qmatmulT(gy.values(), rows, q, tmp.data); // dx = g · W (qmatmulT overwrites)
    const d = gx.data;
    for (let i = 0; i < tmp.data.length; i++) d[i] += tmp.data[i];
    tmp.free();
  },
};

/**
 * The quantized linear as a custom op: forward `backend.qmatmul`, backward `backend.qmatmulT` for the
 * input gradient, no weight gradient. Exposed so other packages can see how a custom op is written.
 */
export const quantizedLinear = defineOp(quantizedLinearOp);

/**
 * `y = x · Wᵀ` for `x` `[..., K]` → `[..., N]`.
 * - `W` a float tensor `[N, K]`: a matmul; W gets a gradient only when it requires grad (a frozen
 *   parameter — tag `param`, `requiresGrad` false — is passed to sgemm with the `bConst` hint, so do
 *   not mutate a frozen parameter's data in place).
 * - `W` a {@link QuantizedLinear}: the fused `qmatmul` / `qmatmulT` custom op; no weight gradient.
 */
export function linear(x: Tensor, w: LinearWeight): Tensor {
  const K = x.shape[x.ndim - 1];
  if (isQuantizedLinear(w)) {
    if (x.ndim < 1 || K !== w.inFeatures) {
      throw new Error(
        `autograd: linear: x ${fmtShape(x.shape)} needs last dimension ${w.inFeatures} for quantized weight [${w.outFeatures}, ${w.inFeatures}] (${w.format.name})`,
      );
    }
    return quantizedLinear([x], w);
  }
  if (!(w instanceof Tensor))
    throw new Error("autograd: linear: weight must be a Tensor or a QuantizedLinear");
  if (w.ndim !== 2 || x.ndim < 1 || w.shape[1] !== K) {
    throw new Error(`autograd: linear: x ${fmtShape(x.shape)} · W${fmtShape(w.shape)}ᵀ: W must be [N, ${K}]`);
  }
  // bConst only for frozen parameters (tag `param`, no grad): data that never changes.
  const constB = !w.requiresGrad && w.storage.tag === "param";
  if (x.ndim === 1) return reshape(matmul(reshape(x, [1, K]), w, { transB: true, constB }), [w.shape[0]]);
  return matmul(x, w, { transB: true, constB });
}
