// Training path: any `Linear` as a differentiable op. A frozen base (float or packed) gives only the
// input gradient (its own `inputGrad`, i.e. `qmatmulT` for packed bases); LoRA branches are composed
// from autograd primitives (matmul, scale, add, mul for dropout), so they need no hand-written backward.
import {
  add,
  defineOp,
  fmtShape,
  keep,
  matmul,
  mul,
  type OpDef,
  parameter,
  reshape,
  scale,
  Tensor,
  tensor,
} from "@int21/autograd";
import type { Linear } from "@int21/quant-kernels";
import { type LoRAAdapter, LoRALinear, mulberry32 } from "./lora-linear";
import type { LoRAModel } from "./lora-model";

/** A `Linear` that can back-propagate to its input (quant-kernels' FloatLinear and QuantLinear). */
export interface FrozenLinear extends Linear {
  /** `dx[rows×K] = g[rows×N] · W` (overwrites `dx`). */
  inputGrad(g: Float32Array, rows: number, dx: Float32Array): void;
}

function isFrozenLinear(l: Linear): l is FrozenLinear {
  return typeof (l as Partial<FrozenLinear>).inputGrad === "function";
}

const frozenLinearOp: OpDef<FrozenLinear> = {
  name: "frozenLinear",
  forward(_ctx, [x], base) {
    const K = base.inFeatures;
    const N = base.outFeatures;
    const rows = x.size / K;
    const y = new Float32Array(rows * N);
    base.forward(x.values(), rows, y);
    // The weight is frozen; the input gradient g·W needs only W, so nothing is saved.
    return tensor(y, [...x.shape.slice(0, -1), N], { tag: "activation" });
  },
  backward(_ctx, gy, [gx], base) {
    if (!gx) return;
    const rows = gy.size / base.outFeatures;
    const dx = new Float32Array(rows * base.inFeatures);
    base.inputGrad(gy.values(), rows, dx);
    const d = gx.data;
    for (let i = 0; i < dx.length; i++) d[i] += dx[i];
  },
};
const applyFrozenLinear = defineOp(frozenLinearOp);

/**
 * `y = base(x)` for a frozen `base`, `x` `[..., K]` → `[..., N]`: forward `base.forward`, backward
 * `base.inputGrad` (for a packed base, `qmatmulT` through the packed words: no float weight is built),
 * and no weight gradient.
 */
export function frozenLinear(base: Linear, x: Tensor): Tensor {
  if (!isFrozenLinear(base)) {
    throw new Error(
      "lora: frozenLinear: the base Linear has no inputGrad(g, rows, dx); use quant-kernels' createFloatLinear / createQuantLinear",
    );
  }
  if (!(x instanceof Tensor) || x.ndim < 1 || x.shape[x.ndim - 1] !== base.inFeatures) {
    throw new Error(
      `lora: frozenLinear: x ${x instanceof Tensor ? fmtShape(x.shape) : String(x)} needs last dimension ${base.inFeatures} for a [${base.outFeatures} × ${base.inFeatures}] layer`,
    );
  }
  return applyFrozenLinear([x], base);
}

const tensorsOf = new WeakMap<LoRAAdapter, { loraA: Tensor; loraB: Tensor }>();

/**
 * The autograd tensors of an adapter: `loraA` `[r, in]` and `loraB` `[out, r]`, sharing the adapter's
 * arrays (an optimizer step updates the adapter in place). Created once per adapter; `requiresGrad`
 * follows `adapter.trainable`.
 */
export function adapterTensors(a: LoRAAdapter): { loraA: Tensor; loraB: Tensor } {
  let t = tensorsOf.get(a);
  if (!t) {
    t = {
      loraA: keep(
        parameter(a.loraA, [a.r, a.inFeatures], { name: `${a.name}.lora_A`, requiresGrad: a.trainable }),
      ),
      loraB: keep(
        parameter(a.loraB, [a.outFeatures, a.r], { name: `${a.name}.lora_B`, requiresGrad: a.trainable }),
      ),
    };
    tensorsOf.set(a, t);
  }
  if (t.loraA.requiresGrad !== a.trainable) {
    t.loraA.requiresGrad = a.trainable;
    t.loraB.requiresGrad = a.trainable;
  }
  return t;
}

/**
 * The dropout mask of an adapter for one call: `rows×K` entries, 0 with probability p, else 1/(1−p).
 * A function of (seed, dropoutStep, size) only, so a checkpointed block recomputed in backward draws
 * the same mask as its forward.
 */
export function dropoutMask(a: LoRAAdapter, n: number): Float32Array {
  const rand = mulberry32((a.seed ^ Math.imul(a.dropoutStep + 1, 0x9e3779b1)) >>> 0);
  const keepScale = 1 / (1 - a.dropout);
  const m = new Float32Array(n);
  for (let i = 0; i < n; i++) m[i] = rand() < a.dropout ? 0 : keepScale;
  return m;
}

/** Options of {@link linearForward}. */
export interface LinearForwardOptions {
  /** Apply adapter dropout (training). Default false. */
  training?: boolean;
}

/**
 * The differentiable `y = layer(x)` for any `Linear`, `x` `[..., K]` → `[..., N]`:
 * ```
 * y = base(x) + Σ_{active adapters} scaling · (dropout(x)·Aᵀ)·Bᵀ
 * ```
 * The base is frozen (input gradient only). Trainable adapters get gradients for A and B; frozen
 * (stacked) ones shape the output and the input gradient only. A plain layer is just the frozen base.
 */
export function linearForward(layer: Linear, x: Tensor, opts: LinearForwardOptions = {}): Tensor {
  if (!(layer instanceof LoRALinear)) return frozenLinear(layer, x);
  if (x instanceof Tensor && x.ndim === 1) {
    return reshape(linearForward(layer, reshape(x, [1, x.shape[0]]), opts), [layer.outFeatures]);
  }
  let y = frozenLinear(layer.base, x);
  for (const a of layer.adapters) {
    if (!a.active) continue;
    const { loraA, loraB } = adapterTensors(a);
    const h = opts.training === true && a.dropout > 0 ? mul(x, tensor(dropoutMask(a, x.size), x.shape)) : x;
    const t = matmul(h, loraA, { transB: true }); // [..., r]
    const u = matmul(t, loraB, { transB: true }); // [..., N]
    y = add(y, a.scaling === 1 ? u : scale(u, a.scaling));
  }
  return y;
}

/**
 * The trainable tensors of `model` (every trainable adapter, or adapter `name`), in module order,
 * `loraA` then `loraB` per module: the list to give an optimizer and to save with its state.
 */
export function loraParameters(model: LoRAModel, name?: string): Tensor[] {
  const out: Tensor[] = [];
  for (const layer of model.layers().values()) {
    for (const a of layer.adapters) {
      if (name === undefined ? !a.trainable : a.name !== name) continue;
      const t = adapterTensors(a);
      out.push(t.loraA, t.loraB);
    }
  }
  return out;
}
