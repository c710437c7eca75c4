// Training path: any `Linear` as a differentiable op. The frozen base (float or packed) goes through
// autograd's `frozenLinear`, the one op for frozen linears (input gradient only, through the base's own
// `inputGrad`, i.e. `qmatmulT` for packed bases); LoRA branches are composed from autograd primitives
// (matmul, scale, add, mul for dropout), so they need no hand-written backward.
import {
  add,
  type FrozenLinear,
  frozenLinear,
  keep,
  matmul,
  mul,
  parameter,
  reshape,
  scale,
  Tensor,
  tensor,
} from "@int21/autograd";
import type { Linear } from "@int21/quant-kernels";
import { type LoRAAdapter, LoRALinear, mulberry32 } from "./lora-linear";
import type { LoRAModel } from "./lora-model";

/**
 * `frozenLinear(base, x)`: autograd's one op for a frozen layer (forward `base.forward`, backward
 * `base.inputGrad`, no weight gradient), re-exported here beside the LoRA op that wraps it.
 */
export { type FrozenLinear, frozenLinear };

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
 * The differentiable `y = layer(x)` for a `LoRALinear` or a plain frozen `Linear`, `x` `[..., K]` → `[..., N]`:
 * ```
 * y = base(x) + Σ_{active adapters} scaling · (dropout(x)·Aᵀ)·Bᵀ
 * ```
 * The base goes through autograd's {@link frozenLinear} (input gradient only, on the base's own backend);
 * the adapters' matmuls run on the backend set in autograd. Trainable adapters get gradients for A and B; frozen
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
