// The one data type: a strided view (data, shape, strides, offset) over a Float32Array, plus the
// autograd fields (requiresGrad, grad, the node that produced it) and scope tracking for tidy().
import type { Node } from "./engine";
import type { Float32NdArray, NdArrayInput } from "@int21/quant-kernels";
import { allocFloats, Storage } from "./memory";
import { type FromNdarrayOptions, fromNdarray, toNdarray } from "./ndarray";
import { createRng } from "./random";

/** Options shared by the tensor constructors. */
export interface TensorOptions {
  /** Track gradients for this tensor (a trainable leaf). Default false. */
  requiresGrad?: boolean;
  /** Ledger tag; default `data` (`param` for {@link parameter}). */
  tag?: string;
  /** A name used in error messages. */
  name?: string;
}

/** Row-major (C-order) strides of a shape. */
export function contiguousStrides(shape: readonly number[]): number[] {
  const strides = new Array<number>(shape.length);
  let s = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    strides[i] = s;
    s *= shape[i];
  }
  return strides;
}

/** Number of elements of a shape (1 for a scalar `[]`). */
export function shapeSize(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Formats a shape for error messages: `[2, 3, 4]`. */
export function fmtShape(shape: readonly number[]): string {
  return `[${shape.join(", ")}]`;
}

function checkShape(shape: readonly number[], what: string): void {
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) throw new Error(`autograd: ${what}: bad shape ${fmtShape(shape)}`);
  }
}

// Scope stack for tidy(): each scope lists the tensors created while it was on top.
const scopes: Tensor[][] = [];
let tracking = true;

/**
 * Runs `fn` without registering the tensors it creates in the enclosing {@link tidy} scope: they are
 * owned by whoever created them (the engine uses this for `.grad` buffers and saved buffers).
 */
export function untracked<T>(fn: () => T): T {
  const was = tracking;
  tracking = false;
  try {
    return fn();
  } finally {
    tracking = was;
  }
}

/**
 * A strided view over a Float32Array. `data[offset + Σ idx[i]·strides[i]]` is element `idx`.
 * Views (reshape/transpose/slice) share storage; the ledger counts each storage once.
 */
export class Tensor {
  readonly storage: Storage;
  readonly shape: readonly number[];
  readonly strides: readonly number[];
  readonly offset: number;
  /** Number of elements. */
  readonly size: number;
  /** Gradient of a leaf tensor after {@link backward}; null until then, and always null for frozen tensors. */
  grad: Tensor | null = null;
  /** The op application that produced this tensor (null for leaves and untracked results). */
  node: Node | null = null;
  name: string | undefined;
  /** Set when a backward() has consumed the node that produced this tensor (internal). */
  consumed = false;
  private _requiresGrad: boolean;
  private alive = true;

  /** Low-level constructor; prefer {@link tensor}, {@link zeros}, {@link parameter}. Retains `storage`. */
  constructor(
    storage: Storage,
    shape: readonly number[],
    strides?: readonly number[],
    offset = 0,
    requiresGrad = false,
  ) {
    checkShape(shape, "Tensor");
    this.storage = storage;
    this.shape = Object.freeze([...shape]);
    this.strides = Object.freeze(strides ? [...strides] : contiguousStrides(shape));
    this.offset = offset;
    this.size = shapeSize(shape);
    this._requiresGrad = requiresGrad;
    storage.retain();
    if (tracking && scopes.length > 0) scopes[scopes.length - 1].push(this);
  }

  /** The underlying buffer (shared with views; index it with `offset` and `strides`). */
  get data(): Float32Array {
    return this.storage.data;
  }

  get ndim(): number {
    return this.shape.length;
  }

  /** Whether gradients flow to / through this tensor. Setting false on a leaf drops its `.grad`. */
  get requiresGrad(): boolean {
    return this._requiresGrad;
  }

  set requiresGrad(v: boolean) {
    if (!v && this.grad) {
      this.grad.dispose();
      this.grad = null;
    }
    this._requiresGrad = v;
  }

  /** Whether the view is row-major dense (any offset). */
  isContiguous(): boolean {
    let s = 1;
    for (let i = this.shape.length - 1; i >= 0; i--) {
      if (this.shape[i] !== 1 && this.strides[i] !== s) return false;
      s *= this.shape[i];
    }
    return true;
  }

  /**
   * The elements in row-major order: a subarray (no copy) when contiguous, else a fresh copy.
   * Do not write into the result.
   */
  values(): Float32Array {
    if (this.isContiguous()) return this.data.subarray(this.offset, this.offset + this.size);
    const out = new Float32Array(this.size);
    copyStrided(this, out);
    return out;
  }

  /** A fresh row-major copy of the elements. */
  toFloat32Array(): Float32Array {
    return this.isContiguous() ? this.data.slice(this.offset, this.offset + this.size) : this.values();
  }

  /** Elements as a plain number array (row-major). */
  toArray(): number[] {
    return Array.from(this.values());
  }

  /** The single element of a one-element tensor. */
  item(): number {
    if (this.size !== 1)
      throw new Error(`autograd: item() needs one element, tensor has shape ${fmtShape(this.shape)}`);
    return this.data[this.offset];
  }

  /** Element at a multi-index. */
  get(...idx: number[]): number {
    if (idx.length !== this.shape.length) {
      throw new Error(`autograd: get() needs ${this.shape.length} indices for shape ${fmtShape(this.shape)}`);
    }
    let o = this.offset;
    for (let i = 0; i < idx.length; i++) {
      if (idx[i] < 0 || idx[i] >= this.shape[i]) {
        throw new Error(`autograd: index [${idx.join(", ")}] out of range for shape ${fmtShape(this.shape)}`);
      }
      o += idx[i] * this.strides[i];
    }
    return this.data[o];
  }

  /** Whether {@link dispose} has not run yet. */
  get isAlive(): boolean {
    return this.alive;
  }

  /**
   * Releases this handle's hold on the storage (the ledger stops counting it once no view, graph node
   * or gradient holds it). Idempotent. Does not touch `.grad` (see {@link zeroGrad} in optimizers).
   */
  dispose(): void {
    if (!this.alive) return;
    this.alive = false;
    this.storage.release();
  }

  /** A tensor over a scijs `ndarray` view, sharing its data where the strides allow (see {@link fromNdarray}). */
  static fromNdarray(a: NdArrayInput, opts?: FromNdarrayOptions): Tensor {
    return fromNdarray(a, opts);
  }

  /** This tensor as a scijs `ndarray` view over the same data (see {@link toNdarray}). */
  toNdarray(): Float32NdArray {
    return toNdarray(this);
  }

  toString(): string {
    return `Tensor${fmtShape(this.shape)}${this.name ? ` '${this.name}'` : ""}`;
  }
}

/** Copies a strided tensor into a dense row-major `out` (length `t.size`). */
export function copyStrided(t: Tensor, out: Float32Array): void {
  const nd = t.shape.length;
  const src = t.data;
  if (nd === 0) {
    out[0] = src[t.offset];
    return;
  }
  const last = t.shape[nd - 1];
  const ls = t.strides[nd - 1];
  const idx = new Array<number>(nd).fill(0);
  let o = 0;
  let base = t.offset;
  const rows = t.size / Math.max(1, last);
  if (last === 0) return;
  for (let r = 0; r < rows; r++) {
    for (let j = 0, p = base; j < last; j++, p += ls) out[o++] = src[p];
    // advance the multi-index over all but the last dimension
    for (let d = nd - 2; d >= 0; d--) {
      idx[d]++;
      base += t.strides[d];
      if (idx[d] < t.shape[d]) break;
      base -= idx[d] * t.strides[d];
      idx[d] = 0;
    }
  }
}

/** Wraps a dense row-major buffer (length = product of shape) into a new tensor with its own storage. */
export function fromData(
  data: Float32Array,
  shape: readonly number[],
  tag = "activation",
  requiresGrad = false,
): Tensor {
  if (data.length !== shapeSize(shape)) {
    throw new Error(
      `autograd: ${data.length} values do not fill shape ${fmtShape(shape)} (${shapeSize(shape)})`,
    );
  }
  return new Tensor(new Storage(data, tag), shape, undefined, 0, requiresGrad);
}

/**
 * Creates a tensor from values (row-major). A Float32Array is used as storage without copying.
 * `shape` defaults to `[values.length]`.
 */
export function tensor(
  values: ArrayLike<number>,
  shape?: readonly number[],
  opts: TensorOptions = {},
): Tensor {
  const data = values instanceof Float32Array ? values : Float32Array.from(values);
  const s = shape ?? [data.length];
  checkShape(s, opts.name ?? "tensor");
  if (data.length !== shapeSize(s)) {
    throw new Error(
      `autograd: tensor${opts.name ? ` '${opts.name}'` : ""}: ${data.length} values do not fill shape ${fmtShape(s)} (${shapeSize(s)})`,
    );
  }
  const t = new Tensor(new Storage(data, opts.tag ?? "data"), s, undefined, 0, opts.requiresGrad ?? false);
  t.name = opts.name;
  return t;
}

/** A tensor of zeros. */
export function zeros(shape: readonly number[], opts: TensorOptions = {}): Tensor {
  checkShape(shape, opts.name ?? "zeros");
  return tensor(allocFloats(shapeSize(shape)), shape, opts);
}

/** A tensor filled with `value`. */
export function full(shape: readonly number[], value: number, opts: TensorOptions = {}): Tensor {
  checkShape(shape, opts.name ?? "full");
  return tensor(allocFloats(shapeSize(shape)).fill(value), shape, opts);
}

/** A tensor of ones. */
export function ones(shape: readonly number[], opts: TensorOptions = {}): Tensor {
  return full(shape, 1, opts);
}

/** Normal samples `N(mean, std²)` from a seeded generator. */
export function randn(
  shape: readonly number[],
  opts: TensorOptions & { seed?: number; std?: number; mean?: number } = {},
): Tensor {
  checkShape(shape, opts.name ?? "randn");
  const rng = createRng(opts.seed ?? 0);
  const std = opts.std ?? 1;
  const mean = opts.mean ?? 0;
  const d = new Float32Array(shapeSize(shape));
  for (let i = 0; i < d.length; i++) d[i] = mean + std * rng.normal();
  return tensor(d, shape, opts);
}

/** Uniform samples in `[low, high)` from a seeded generator. */
export function rand(
  shape: readonly number[],
  opts: TensorOptions & { seed?: number; low?: number; high?: number } = {},
): Tensor {
  checkShape(shape, opts.name ?? "rand");
  const rng = createRng(opts.seed ?? 0);
  const lo = opts.low ?? 0;
  const hi = opts.high ?? 1;
  const d = new Float32Array(shapeSize(shape));
  for (let i = 0; i < d.length; i++) d[i] = lo + (hi - lo) * rng.uniform();
  return tensor(d, shape, opts);
}

/**
 * A trainable leaf: `requiresGrad` true, ledger tag `param`. Pass `requiresGrad: false` for a frozen
 * parameter (it never gets a gradient buffer).
 */
export function parameter(
  values: ArrayLike<number>,
  shape?: readonly number[],
  opts: TensorOptions = {},
): Tensor {
  return tensor(values, shape, { tag: "param", ...opts, requiresGrad: opts.requiresGrad ?? true });
}

function collectKept(result: unknown, keep: Set<Tensor>): void {
  if (result instanceof Tensor) keep.add(result);
  else if (Array.isArray(result)) for (const r of result) collectKept(r, keep);
  else if (
    result !== null &&
    typeof result === "object" &&
    Object.getPrototypeOf(result) === Object.prototype
  ) {
    for (const r of Object.values(result)) collectKept(r, keep);
  }
}

/**
 * Runs `fn` in a scope: every tensor created inside (op outputs, temporaries) is disposed when `fn`
 * returns, except the tensors it returns (directly, in an array, or in a plain object), which move to
 * the enclosing scope. Tensors saved by graph nodes stay counted until backward releases them.
 */
export function tidy<T>(fn: () => T): T {
  scopes.push([]);
  let result: T;
  try {
    result = fn();
  } catch (e) {
    for (const t of scopes.pop()!) t.dispose();
    throw e;
  }
  const created = scopes.pop()!;
  const keep = new Set<Tensor>();
  collectKept(result, keep);
  const parent = scopes.length > 0 ? scopes[scopes.length - 1] : null;
  for (const t of created) {
    if (keep.has(t)) parent?.push(t);
    else t.dispose();
  }
  return result;
}

/** Keeps a tensor created inside {@link tidy} alive past the scope's end (moves it to the root). */
export function keep(t: Tensor): Tensor {
  for (const s of scopes) {
    const i = s.indexOf(t);
    if (i >= 0) s.splice(i, 1);
  }
  return t;
}
