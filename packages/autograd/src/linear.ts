// y = x·Wᵀ for a float weight tensor (a matmul) or a packed quantized weight (the frozen-linear op).
import { type Backend, createQuantLinear, type QuantizedLinear } from "@int21/quant-kernels";
import { type FrozenLinear, frozenLinear } from "./frozen-linear";
import { matmul } from "./linalg";
import { fmtShape, Tensor } from "./tensor";
import { reshape } from "./view";

/** A linear layer's weight: a float tensor `[N, K]` (trainable or frozen) or a packed quantized weight. */
export type LinearWeight = Tensor | QuantizedLinear;

/** Options of {@link linear}. */
export interface LinearOptions {
  /** The backend a packed weight runs on (required for a `QuantizedLinear`; unused for a tensor). */
  backend?: Backend;
}

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

/** One quant-kernels `QuantLinear` per (packed weight, backend), made on first use. */
const packedLinears = new WeakMap<QuantizedLinear, WeakMap<Backend, FrozenLinear>>();

function packedLinear(q: QuantizedLinear, backend: Backend): FrozenLinear {
  let perBackend = packedLinears.get(q);
  if (!perBackend) {
    perBackend = new WeakMap();
    packedLinears.set(q, perBackend);
  }
  let lin = perBackend.get(backend);
  if (!lin) {
    lin = createQuantLinear({ q, backend });
    perBackend.set(backend, lin);
  }
  return lin;
}

/**
 * `y = x · Wᵀ` for `x` `[..., K]` → `[..., N]`.
 * - `W` a float tensor `[N, K]`: a matmul; W gets a gradient only when it requires grad (a frozen
 *   parameter — tag `param`, `requiresGrad` false — is passed to sgemm with the `bConst` hint, so do
 *   not mutate a frozen parameter's data in place).
 * - `W` a {@link QuantizedLinear}: wrapped in quant-kernels' `createQuantLinear({ q, backend })` with
 *   `opts.backend` (required: a packed weight never runs on an implicit backend) and run through
 *   {@link frozenLinear} (`qmatmul` forward, `qmatmulT` input gradient, no weight gradient).
 */
export function linear(x: Tensor, w: LinearWeight, opts: LinearOptions = {}): Tensor {
  const K = x.shape[x.ndim - 1];
  if (isQuantizedLinear(w)) {
    if (x.ndim < 1 || K !== w.inFeatures) {
      throw new Error(
        `autograd: linear: x ${fmtShape(x.shape)} needs last dimension ${w.inFeatures} for quantized weight [${w.outFeatures}, ${w.inFeatures}] (${w.format.name})`,
      );
    }
    if (opts.backend === undefined) {
      throw new Error(
        `autograd: linear: the quantized weight [${w.outFeatures}, ${w.inFeatures}] (${w.format.name}) needs { backend } (or make a Linear once: frozenLinear(createQuantLinear({ q, backend }), x))`,
      );
    }
    return frozenLinear(packedLinear(w, opts.backend), x);
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
