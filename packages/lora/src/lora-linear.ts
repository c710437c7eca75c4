// LoRA over the one `Linear` interface: y = base(x) + Σ_adapters scaling · (x·Aᵀ)·Bᵀ, inference path.
// (The differentiable training path over the same adapters is `loraLinear` in lora-op.ts.)
import type { Linear } from "@int21/quant-kernels";

/** What {@link LoRAAdapter} takes. */
export interface LoRAAdapterOptions {
  /** Adapter name, unique on its layer (PEFT's adapter name). Default `default`. */
  name?: string;
  /** Rank. */
  r: number;
  /** Scaling numerator: `scaling = alpha / r`. Default `r` (scaling 1). */
  alpha?: number;
  /** Dropout probability on the adapter's input while training, in [0, 1). Default 0. */
  dropout?: number;
  /** Seed of the Kaiming-uniform init of A and of the dropout masks. Default 0. */
  seed?: number;
  /** Whether the optimizer trains this adapter (a frozen one still shapes outputs and input gradients). Default true. */
  trainable?: boolean;
  /** Initial A, `[r × inFeatures]` row-major (copied). Default: Kaiming-uniform, bound `1/√inFeatures`. */
  loraA?: ArrayLike<number>;
  /** Initial B, `[outFeatures × r]` row-major (copied). Default: zeros, so the starting delta is 0. */
  loraB?: ArrayLike<number>;
}

/** A small seeded uniform generator (mulberry32): the init and the dropout masks are reproducible. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A 32-bit FNV-1a hash of a string mixed with a seed (per-module seeds from one model seed). */
export function hashSeed(seed: number, text: string): number {
  let h = (0x811c9dc5 ^ (seed >>> 0)) >>> 0;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

function checkValues(v: ArrayLike<number>, n: number, what: string): Float32Array {
  if (v.length !== n) throw new Error(`lora: ${what} has ${v.length} values, expected ${n}`);
  const out = Float32Array.from(v);
  for (let i = 0; i < n; i++) {
    if (!Number.isFinite(out[i])) throw new Error(`lora: ${what}[${i}] = ${out[i]} is not finite`);
  }
  return out;
}

/**
 * One low-rank update `ΔW = scaling · B·A` of a `[outFeatures × inFeatures]` weight (microsoft/LoRA names):
 * `loraA` is `[r × inFeatures]`, `loraB` is `[outFeatures × r]`, `scaling = alpha / r`. The matrices are
 * plain float32 arrays; training updates them in place.
 */
export class LoRAAdapter {
  readonly name: string;
  readonly r: number;
  readonly alpha: number;
  /** `alpha / r`. */
  readonly scaling: number;
  readonly dropout: number;
  readonly seed: number;
  readonly inFeatures: number;
  readonly outFeatures: number;
  /** `[r × inFeatures]`, row-major. */
  readonly loraA: Float32Array;
  /** `[outFeatures × r]`, row-major. */
  readonly loraB: Float32Array;
  /** Trained by the optimizer when true; frozen adapters get no gradient. */
  trainable: boolean;
  /** When false the adapter is skipped (PEFT `disable_adapter`). */
  enabled = true;
  /** Whether its delta currently lives inside the base weight (see `mergeAdapters`); then it is skipped. */
  merged = false;
  /**
   * Dropout masks are a function of (`seed`, `dropoutStep`): a recomputed forward (activation
   * checkpointing) in the same step draws the same mask. The trainer advances it every micro-batch.
   */
  dropoutStep = 0;

  constructor(inFeatures: number, outFeatures: number, opts: LoRAAdapterOptions) {
    const name = opts.name ?? "default";
    if (!/^[A-Za-z0-9_-]+$/.test(name))
      throw new Error(`lora: adapter name "${name}" must match [A-Za-z0-9_-]+`);
    const where = `adapter "${name}"`;
    for (const [k, v] of [
      ["inFeatures", inFeatures],
      ["outFeatures", outFeatures],
    ] as const) {
      if (!Number.isSafeInteger(v) || v < 1)
        throw new Error(`lora: ${where}: ${k} must be a positive integer, got ${String(v)}`);
    }
    const { r } = opts;
    if (!Number.isSafeInteger(r) || r < 1)
      throw new Error(`lora: ${where}: rank r must be a positive integer, got ${String(r)}`);
    const alpha = opts.alpha ?? r;
    if (!Number.isFinite(alpha) || alpha <= 0)
      throw new Error(`lora: ${where}: alpha must be finite and > 0, got ${String(alpha)}`);
    const dropout = opts.dropout ?? 0;
    if (!(dropout >= 0 && dropout < 1))
      throw new Error(`lora: ${where}: dropout must be in [0, 1), got ${String(dropout)}`);
    this.name = name;
    this.r = r;
    this.alpha = alpha;
    this.scaling = alpha / r;
    this.dropout = dropout;
    this.seed = (opts.seed ?? 0) >>> 0;
    this.inFeatures = inFeatures;
    this.outFeatures = outFeatures;
    this.trainable = opts.trainable ?? true;
    if (opts.loraA !== undefined) {
      this.loraA = checkValues(opts.loraA, r * inFeatures, `${where}: loraA [${r} × ${inFeatures}]`);
    } else {
      // kaiming_uniform_(A, a=√5): gain √(2/(1+5)), bound gain·√(3/fan_in) = 1/√inFeatures.
      const bound = 1 / Math.sqrt(inFeatures);
      const rand = mulberry32(this.seed);
      this.loraA = new Float32Array(r * inFeatures);
      for (let i = 0; i < this.loraA.length; i++) this.loraA[i] = bound * (2 * rand() - 1);
    }
    this.loraB =
      opts.loraB !== undefined
        ? checkValues(opts.loraB, outFeatures * r, `${where}: loraB [${outFeatures} × ${r}]`)
        : new Float32Array(outFeatures * r);
  }

  /** Whether the forward pass applies this adapter (enabled and not merged). */
  get active(): boolean {
    return this.enabled && !this.merged;
  }

  /** Bytes of A and B. */
  bytes(): number {
    return this.loraA.byteLength + this.loraB.byteLength;
  }

  /**
   * `out[N×K] += scale · B·A` (row-major, the weight layout).
   * ```
   * for n, k: out[n*K + k] += scale * Σ_j B[n*r + j] * A[j*K + k]
   * ```
   */
  addDeltaTo(out: Float32Array, scale = this.scaling): void {
    const { r, inFeatures: K, outFeatures: N, loraA: A, loraB: B } = this;
    if (out.length !== N * K)
      throw new Error(`lora: addDeltaTo: output has ${out.length} values, expected ${N}×${K}`);
    for (let n = 0; n < N; n++) {
      const row = n * K;
      for (let j = 0; j < r; j++) {
        const b = scale * B[n * r + j];
        if (b === 0) continue;
        const a = j * K;
        for (let k = 0; k < K; k++) out[row + k] += b * A[a + k];
      }
    }
  }
}

/**
 * A `Linear` with LoRA adapters stacked on a frozen base (float or packed):
 * ```
 * y = base(x) + Σ_{active adapters} scaling · (x·Aᵀ)·Bᵀ
 * for r, n: y[r*N + n] = base(x)[r, n] + Σ_a scaling_a Σ_j B_a[n, j] Σ_k A_a[j, k] x[r*K + k]
 * ```
 * Adapters apply in the order they were added (frozen LREC adapter first, then a task adapter, say).
 * The inference forward applies no dropout; it grows one scratch buffer and otherwise allocates nothing.
 */
export class LoRALinear implements Linear {
  readonly inFeatures: number;
  readonly outFeatures: number;
  /** The frozen base layer (replaced by a merged copy while adapters are merged). */
  base: Linear;
  /** Adapters in application order. */
  readonly adapters: LoRAAdapter[] = [];
  private scratch = new Float32Array(0);

  constructor(base: Linear, adapters: readonly LoRAAdapter[] = []) {
    this.base = base;
    this.inFeatures = base.inFeatures;
    this.outFeatures = base.outFeatures;
    for (const a of adapters) this.attach(a);
  }

  /** Creates an adapter of this layer's shape and stacks it on top of the others. */
  addAdapter(opts: LoRAAdapterOptions): LoRAAdapter {
    const a = new LoRAAdapter(this.inFeatures, this.outFeatures, opts);
    this.attach(a);
    return a;
  }

  /** Stacks an existing adapter (shapes must match; names must be unique on this layer). */
  attach(a: LoRAAdapter): void {
    if (a.inFeatures !== this.inFeatures || a.outFeatures !== this.outFeatures) {
      throw new Error(
        `lora: adapter "${a.name}" is for a [${a.outFeatures} × ${a.inFeatures}] weight, the layer is [${this.outFeatures} × ${this.inFeatures}]`,
      );
    }
    if (this.adapters.some((b) => b.name === a.name))
      throw new Error(`lora: the layer already has an adapter named "${a.name}"`);
    this.adapters.push(a);
  }

  /** The adapter called `name`, or throws. */
  adapter(name: string): LoRAAdapter {
    const a = this.adapters.find((b) => b.name === name);
    if (!a) {
      throw new Error(
        `lora: no adapter named "${name}" (the layer has ${this.adapters.map((b) => `"${b.name}"`).join(", ") || "none"})`,
      );
    }
    return a;
  }

  /** Removes an (unmerged) adapter and returns it. */
  removeAdapter(name: string): LoRAAdapter {
    const a = this.adapter(name);
    if (a.merged)
      throw new Error(`lora: adapter "${name}" is merged into the base; unmerge it before removing it`);
    this.adapters.splice(this.adapters.indexOf(a), 1);
    return a;
  }

  forward(x: Float32Array, rows: number, y: Float32Array): void {
    const K = this.inFeatures;
    const N = this.outFeatures;
    if (x.length < rows * K || y.length < rows * N) {
      throw new Error(
        `lora: LoRALinear.forward: x needs ${rows}×${K} and y ${rows}×${N} values, got ${x.length} and ${y.length}`,
      );
    }
    this.base.forward(x, rows, y);
    for (const a of this.adapters) {
      if (!a.active) continue;
      const r = a.r;
      if (this.scratch.length < r) this.scratch = new Float32Array(Math.max(r, 8));
      const t = this.scratch;
      const A = a.loraA;
      const B = a.loraB;
      for (let row = 0; row < rows; row++) {
        const xo = row * K;
        for (let j = 0; j < r; j++) {
          let s = 0;
          const ao = j * K;
          for (let k = 0; k < K; k++) s += A[ao + k] * x[xo + k];
          t[j] = a.scaling * s;
        }
        const yo = row * N;
        for (let n = 0; n < N; n++) {
          let s = 0;
          const bo = n * r;
          for (let j = 0; j < r; j++) s += B[bo + j] * t[j];
          y[yo + n] += s;
        }
      }
    }
  }

  /** Base bytes plus every adapter's A and B. */
  bytes(): number {
    let b = this.base.bytes();
    for (const a of this.adapters) b += a.bytes();
    return b;
  }
}
