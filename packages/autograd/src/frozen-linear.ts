// The one autograd op for a frozen linear layer: forward `lin.forward`, backward `lin.inputGrad`, on the
// layer's own backend. LoRA (lora's linearForward), trainForward and `linear(x, q)` all go through it.
import type { Linear } from "@int21/quant-kernels";
import { defineOp, type OpDef } from "./engine";
import { denseOf } from "./linalg";
import { allocFloats, scratch } from "./memory";
import { output } from "./strided";
import { fmtShape, Tensor } from "./tensor";

/**
 * A `Linear` that can back-propagate to its input: quant-kernels' `FloatLinear` (`createFloatLinear`)
 * and `QuantLinear` (`createQuantLinear`), which run on the backend they were made with.
 */
export interface FrozenLinear extends Linear {
  /** `dx[rows×K] = g[rows×N] · W` (overwrites `dx`). */
  inputGrad(g: Float32Array, rows: number, dx: Float32Array): void;
}

/** Whether `l` is a {@link FrozenLinear} (a `Linear` with `forward` and `inputGrad`). */
export function isFrozenLinear(l: unknown): l is FrozenLinear {
  if (typeof l !== "object" || l === null) return false;
  const f = l as Partial<FrozenLinear>;
  return (
    typeof f.forward === "function" &&
    typeof f.inputGrad === "function" &&
    Number.isSafeInteger(f.inFeatures) &&
    Number.isSafeInteger(f.outFeatures)
  );
}

const frozenLinearOp: OpDef<FrozenLinear> = {
  name: "frozenLinear",
  forward(_ctx, [x], lin) {
    const K = lin.inFeatures;
    const N = lin.outFeatures;
    const rows = x.size / K;
    const [xd, xo] = denseOf(x);
    const y = allocFloats(rows * N);
    lin.forward(xo === 0 && xd.length === rows * K ? xd : xd.subarray(xo, xo + rows * K), rows, y);
    // The weight is frozen and the input gradient g·W needs only W: nothing is saved.
    return output(y, [...x.shape.slice(0, -1), N]);
  },
  backward(_ctx, gy, [gx], lin) {
    if (!gx) return;
    const K = lin.inFeatures;
    const rows = gy.size / lin.outFeatures;
    const tmp = scratch(rows * K);
    lin.inputGrad(gy.values(), rows, tmp.data); // dx = g · W (inputGrad overwrites)
    const d = gx.data;
    for (let i = 0; i < tmp.data.length; i++) d[i] += tmp.data[i];
    tmp.free();
  },
};
const applyFrozenLinear = defineOp(frozenLinearOp);

/**
 * `y = lin(x)` for a frozen layer, `x` `[..., K]` → `[..., N]`: forward `lin.forward` (its bias
 * included, when it has one), backward `lin.inputGrad` for the input gradient (for a packed layer
 * `qmatmulT` through the packed words: no float weight is built), no weight or bias gradient, nothing
 * saved. Both run on the backend the layer was made with, not the one set in autograd. The one op for
 * frozen linears: LoRA's `linearForward` wraps it and `trainForward` runs every projection through it.
 *
 * ```ts
 * const lin = createQuantLinear({ q, backend: await createWasmBackend() });
 * const y = frozenLinear(lin, x); // backward(…) gives x.grad
 * ```
 */
export function frozenLinear(lin: Linear, x: Tensor): Tensor {
  if (!isFrozenLinear(lin)) {
    throw new Error(
      "autograd: frozenLinear: the Linear has no inputGrad(g, rows, dx); make it with quant-kernels' createFloatLinear / createQuantLinear",
    );
  }
  if (!(x instanceof Tensor) || x.ndim < 1 || x.shape[x.ndim - 1] !== lin.inFeatures) {
    throw new Error(
      `autograd: frozenLinear: x ${x instanceof Tensor ? fmtShape(x.shape) : String(x)} needs last dimension ${lin.inFeatures} for a [${lin.outFeatures} × ${lin.inFeatures}] layer`,
    );
  }
  return applyFrozenLinear([x], lin);
}
