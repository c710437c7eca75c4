// Optimizers (Adam with L2 weight decay, AdamW, SGD), gradient clipping, state save/load.
import { currentBackend } from "./backend";
import { fmtShape, type Tensor, untracked, zeros } from "./tensor";

/** Optimizer state as plain typed arrays plus JSON-able metadata (e.g. for safetensors). */
export interface OptimizerState {
  /** JSON-able: optimizer kind, step count, hyper-parameters, parameter shapes. */
  meta: {
    kind: string;
    step: number;
    hyper: Record<string, number>;
    shapes: number[][];
  };
  /** Buffers named `<slot>.<paramIndex>`, e.g. `m.0`, `v.0` for Adam, `momentum.3` for SGD. */
  tensors: Record<string, Float32Array>;
}

/** Shared machinery: the parameter list, per-parameter state slots, zeroGrad, save/load. */
export abstract class Optimizer {
  /** Completed update steps. */
  stepCount = 0;
  protected readonly slots: Map<string, (Tensor | null)[]> = new Map();

  constructor(
    readonly params: readonly Tensor[],
    readonly kind: string,
    slotNames: readonly string[],
  ) {
    params.forEach((p, i) => {
      if (!p.requiresGrad) {
        throw new Error(
          `autograd: ${kind}: parameter ${i} (${p}) does not require grad; pass only trainable tensors`,
        );
      }
    });
    for (const s of slotNames)
      this.slots.set(
        s,
        params.map(() => null),
      );
  }

  /** Hyper-parameters saved with the state. */
  protected abstract hyper(): Record<string, number>;
  protected abstract setHyper(h: Record<string, number>): void;
  /** Applies one update to every parameter that has a gradient. */
  abstract step(): void;

  protected slot(name: string, i: number): Float32Array {
    const list = this.slots.get(name)!;
    let t = list[i];
    if (!t) {
      t = untracked(() => zeros(this.params[i].shape, { tag: "optimizer" }));
      list[i] = t;
    }
    return t.data;
  }

  /** Zeroes every gradient (default), or with `free` releases the gradient buffers. */
  zeroGrad(opts: { free?: boolean } = {}): void {
    for (const p of this.params) {
      if (!p.grad) continue;
      if (opts.free) {
        p.grad.dispose();
        p.grad = null;
      } else p.grad.data.fill(0);
    }
  }

  /** The state as typed arrays (copies) and JSON-able metadata. */
  stateDict(): OptimizerState {
    const tensors: Record<string, Float32Array> = {};
    for (const [name, list] of this.slots) {
      list.forEach((t, i) => {
        if (t) tensors[`${name}.${i}`] = t.data.slice();
      });
    }
    return {
      meta: {
        kind: this.kind,
        step: this.stepCount,
        hyper: this.hyper(),
        shapes: this.params.map((p) => [...p.shape]),
      },
      tensors,
    };
  }

  /** Restores a state saved by {@link stateDict}; checks kind, parameter count, shapes and buffer sizes. */
  loadStateDict(state: OptimizerState): void {
    const { meta, tensors } = state;
    if (meta.kind !== this.kind)
      throw new Error(`autograd: ${this.kind}: cannot load state of a '${meta.kind}' optimizer`);
    if (meta.shapes.length !== this.params.length) {
      throw new Error(
        `autograd: ${this.kind}: state has ${meta.shapes.length} parameters, optimizer has ${this.params.length}`,
      );
    }
    meta.shapes.forEach((s, i) => {
      const p = this.params[i].shape;
      if (s.length !== p.length || s.some((d, j) => d !== p[j])) {
        throw new Error(
          `autograd: ${this.kind}: state parameter ${i} has shape ${fmtShape(s)}, parameter is ${fmtShape(p)}`,
        );
      }
    });
    for (const key of Object.keys(tensors)) {
      const [name, idx] = key.split(".");
      const i = Number(idx);
      if (!this.slots.has(name) || !Number.isInteger(i) || i < 0 || i >= this.params.length) {
        throw new Error(`autograd: ${this.kind}: unexpected state buffer '${key}'`);
      }
      if (tensors[key].length !== this.params[i].size) {
        throw new Error(
          `autograd: ${this.kind}: state buffer '${key}' has ${tensors[key].length} values, parameter ${i} has ${this.params[i].size}`,
        );
      }
    }
    for (const [name, list] of this.slots) {
      list.forEach((t, i) => {
        const src = tensors[`${name}.${i}`];
        if (src) this.slot(name, i).set(src);
        else if (t) {
          t.dispose();
          list[i] = null;
        }
      });
    }
    this.stepCount = meta.step;
    this.setHyper(meta.hyper);
  }

  /** Releases the state buffers (the ledger stops counting them). */
  dispose(): void {
    for (const list of this.slots.values()) {
      list.forEach((t, i) => {
        t?.dispose();
        list[i] = null;
      });
    }
  }
}

/** Options of {@link Adam} and {@link AdamW}. */
export interface AdamOptions {
  lr?: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
}

function checkLr(kind: string, o: Record<string, number | undefined>): void {
  for (const [k, v] of Object.entries(o)) {
    if (v !== undefined && (!Number.isFinite(v) || v < 0))
      throw new Error(`autograd: ${kind}: option ${k} = ${v} must be a finite number ≥ 0`);
  }
}

/**
 * Adam with L2 weight decay folded into the gradient (as the LREC reference used):
 * ```
 * g ← g + wd·p;  m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²
 * p ← p − lr · (m / (1−β1ᵗ)) / (sqrt(v / (1−β2ᵗ)) + eps)
 * ```
 */
export class Adam extends Optimizer {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  protected readonly decoupled: boolean = false;

  constructor(params: readonly Tensor[], opts: AdamOptions = {}, kind = "adam") {
    super(params, kind, ["m", "v"]);
    checkLr(kind, { ...opts });
    for (const [k, v] of [
      ["beta1", opts.beta1],
      ["beta2", opts.beta2],
    ] as const) {
      if (v !== undefined && !(v >= 0 && v < 1))
        throw new Error(`autograd: ${kind}: option ${k} = ${v} must be in [0, 1)`);
    }
    this.lr = opts.lr ?? 1e-3;
    this.beta1 = opts.beta1 ?? 0.9;
    this.beta2 = opts.beta2 ?? 0.999;
    this.eps = opts.eps ?? 1e-8;
    this.weightDecay = opts.weightDecay ?? 0;
  }

  protected hyper(): Record<string, number> {
    return {
      lr: this.lr,
      beta1: this.beta1,
      beta2: this.beta2,
      eps: this.eps,
      weightDecay: this.weightDecay,
    };
  }

  protected setHyper(h: Record<string, number>): void {
    this.lr = h.lr;
    this.beta1 = h.beta1;
    this.beta2 = h.beta2;
    this.eps = h.eps;
    this.weightDecay = h.weightDecay;
  }

  step(): void {
    this.stepCount++;
    const t = this.stepCount;
    const { lr, beta1: b1, beta2: b2, eps, weightDecay: wd } = this;
    const c1 = 1 / (1 - b1 ** t);
    const c2 = 1 / (1 - b2 ** t);
    // A backend set now that offers the optional adamw kernel (e.g. a GPU one) runs the same update.
    const be = currentBackend();
    this.params.forEach((p, i) => {
      if (!p.grad) return;
      const w = p.data;
      const o = p.offset;
      const g = p.grad.data;
      const m = this.slot("m", i);
      const v = this.slot("v", i);
      if (be?.adamw) {
        const decoupled = this.decoupled;
        be.adamw({
          params: w,
          offset: o,
          grads: g,
          m,
          v,
          lr,
          beta1: b1,
          beta2: b2,
          eps,
          weightDecay: wd,
          step: t,
          decoupled,
        });
        return;
      }
      const l2 = this.decoupled ? 0 : wd;
      const decay = this.decoupled ? 1 - lr * wd : 1;
      for (let j = 0; j < g.length; j++) {
        const gj = g[j] + l2 * w[o + j];
        m[j] = b1 * m[j] + (1 - b1) * gj;
        v[j] = b2 * v[j] + (1 - b2) * gj * gj;
        w[o + j] = w[o + j] * decay - (lr * (m[j] * c1)) / (Math.sqrt(v[j] * c2) + eps);
      }
    });
  }
}

/**
 * AdamW: Adam with decoupled weight decay, `p ← p·(1 − lr·wd)` before the Adam update (the gradient
 * is not changed).
 */
export class AdamW extends Adam {
  protected override readonly decoupled: boolean = true;

  constructor(params: readonly Tensor[], opts: AdamOptions = {}) {
    super(params, { weightDecay: 0.01, ...opts }, "adamw");
  }
}

/** Options of {@link SGD}. */
export interface SgdOptions {
  lr?: number;
  momentum?: number;
  weightDecay?: number;
}

/**
 * SGD with optional momentum and L2 weight decay:
 * `g ← g + wd·p;  b ← μ·b + g (μ > 0);  p ← p − lr·(μ > 0 ? b : g)`.
 */
export class SGD extends Optimizer {
  lr: number;
  momentum: number;
  weightDecay: number;

  constructor(params: readonly Tensor[], opts: SgdOptions = {}) {
    super(params, "sgd", ["momentum"]);
    checkLr("sgd", { ...opts });
    this.lr = opts.lr ?? 1e-2;
    this.momentum = opts.momentum ?? 0;
    this.weightDecay = opts.weightDecay ?? 0;
  }

  protected hyper(): Record<string, number> {
    return { lr: this.lr, momentum: this.momentum, weightDecay: this.weightDecay };
  }

  protected setHyper(h: Record<string, number>): void {
    this.lr = h.lr;
    this.momentum = h.momentum;
    this.weightDecay = h.weightDecay;
  }

  step(): void {
    this.stepCount++;
    const { lr, momentum: mu, weightDecay: wd } = this;
    this.params.forEach((p, i) => {
      if (!p.grad) return;
      const w = p.data;
      const o = p.offset;
      const g = p.grad.data;
      const b = mu > 0 ? this.slot("momentum", i) : null;
      for (let j = 0; j < g.length; j++) {
        let gj = g[j] + wd * w[o + j];
        if (b) gj = b[j] = mu * b[j] + gj;
        w[o + j] -= lr * gj;
      }
    });
  }
}

/**
 * Scales all gradients so their global L2 norm is at most `maxNorm`; returns the norm before
 * clipping. Throws (naming the parameter) if a gradient holds NaN or ±Infinity.
 */
export function clipGradNorm(params: readonly Tensor[], maxNorm: number): number {
  if (!(maxNorm > 0)) throw new Error(`autograd: clipGradNorm: maxNorm ${maxNorm} must be > 0`);
  let ss = 0;
  params.forEach((p, i) => {
    if (!p.grad) return;
    const g = p.grad.data;
    let s = 0;
    for (let j = 0; j < g.length; j++) s += g[j] * g[j];
    if (!Number.isFinite(s))
      throw new Error(`autograd: clipGradNorm: gradient of parameter ${i} (${p}) is not finite`);
    ss += s;
  });
  const norm = Math.sqrt(ss);
  if (norm > maxNorm) scaleGrads(params, maxNorm / (norm + 1e-6));
  return norm;
}

/** Multiplies every gradient by `s` (e.g. 1/steps after gradient accumulation). */
export function scaleGrads(params: readonly Tensor[], s: number): void {
  for (const p of params) {
    if (!p.grad) continue;
    const g = p.grad.data;
    for (let j = 0; j < g.length; j++) g[j] *= s;
  }
}
