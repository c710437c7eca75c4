// scijs ndarray views at the kernels' boundary: the kernels read and write flat Float32Array rows; these
// wrappers take and return ndarray views, zero-copy wherever the strides allow.
import ndarray from "ndarray";
import { resolveQuantizer } from "./quantizer-registry";
import type { QuantizeOptions, Quantizer } from "./quantizer";
import type { Backend, Linear, QuantFormat, QuantizedLinear } from "./types";

/** A scijs `ndarray` view over float32 data: what the wrappers here return. */
export type Float32NdArray = ndarray.NdArray<Float32Array>;

/**
 * What the wrappers here accept as an input: a scijs `ndarray` view (`data`, `shape`, `stride`, `offset`) over
 * any numeric data (a typed array, a plain array, or scijs' generic `{ get, set, length }` storage).
 */
export type NdArrayInput = ndarray.NdArray<ndarray.Data<number>>;

/** How the wrappers treat an input view the kernels cannot read in place. */
export interface NdCopyOptions {
  /**
   * Whether an input that is not a row-major float32 view (transposed, stepped, reversed, broadcast, or over
   * other data than a Float32Array) may be gathered into a fresh dense float32 buffer first (one copy of
   * that input, then the kernel as usual). `false` makes such an input an Error naming it with its shape and
   * strides. Outputs are never copied. Default true.
   */
  copy?: boolean;
}

/** Options of {@link ndQmatmul}, {@link ndQmatmulT} and {@link ndSgemm}. */
export interface NdKernelOptions extends NdCopyOptions {
  /**
   * The result view to write into (its shape must be the result's). It must be a float32 view whose rows are
   * dense (`stride[last] = 1`; {@link ndSgemm} also takes a column-major or padded view); else an Error names
   * it. Default: a fresh row-major array.
   */
  out?: Float32NdArray;
}

/** Shape, strides, offset and data kind of a view, for error messages. */
export function describeNdarray(a: NdArrayInput): string {
  const data = a.data as unknown;
  const kind =
    data instanceof Float32Array
      ? "Float32Array"
      : ArrayBuffer.isView(data)
        ? (data as object).constructor.name
        : Array.isArray(data)
          ? "Array"
          : "generic";
  return `shape [${a.shape.join(", ")}], strides [${a.stride.join(", ")}], offset ${a.offset}, ${kind} data`;
}

/**
 * Whether `a` has the fields of an ndarray view: an object with `data` (an object), `shape` and `stride`
 * arrays of one length, and an integer `offset` (the entries themselves are not checked).
 */
export function isNdarrayView(a: unknown): a is NdArrayInput {
  if (a === null || typeof a !== "object") return false;
  const v = a as Partial<NdArrayInput>;
  return (
    Array.isArray(v.shape) &&
    Array.isArray(v.stride) &&
    v.shape.length === v.stride.length &&
    Number.isSafeInteger(v.offset) &&
    v.data !== null &&
    typeof v.data === "object"
  );
}

function checkView(who: string, name: string, a: NdArrayInput): void {
  if (!isNdarrayView(a)) {
    throw new Error(
      `quant-kernels: ${who}: ${name} must be an ndarray view (data, shape, stride, offset), got ${a === null ? "null" : typeof a}`,
    );
  }
  for (let i = 0; i < a.shape.length; i++) {
    if (!Number.isSafeInteger(a.shape[i]) || a.shape[i] < 0 || !Number.isSafeInteger(a.stride[i]))
      throw new Error(`quant-kernels: ${who}: ${name} has a bad shape or stride (${describeNdarray(a)})`);
  }
  // ndarray itself checks nothing: every element the view reaches must lie inside its data.
  if (a.shape.includes(0)) return;
  let lo = a.offset;
  let hi = a.offset;
  for (let i = 0; i < a.shape.length; i++) {
    const reach = (a.shape[i] - 1) * a.stride[i];
    if (reach < 0) lo += reach;
    else hi += reach;
  }
  const length = (a.data as { length: number }).length;
  if (lo < 0 || hi >= length)
    throw new Error(
      `quant-kernels: ${who}: ${name} (${describeNdarray(a)}) reaches elements ${lo}..${hi}, outside its data of length ${length}`,
    );
}

/** Number of elements of a shape. */
function sizeOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Whether the strides are row-major dense (any offset; dimensions of extent 1 may have any stride). */
export function isRowMajor(a: { shape: readonly number[]; stride: readonly number[] }): boolean {
  let s = 1;
  for (let i = a.shape.length - 1; i >= 0; i--) {
    if (a.shape[i] !== 1 && a.stride[i] !== s) return false;
    s *= a.shape[i];
  }
  return true;
}

/** Copies the elements of any view into a dense row-major Float32Array (float32 rounding of other data). */
export function gatherNdarray(a: NdArrayInput): Float32Array {
  const n = sizeOf(a.shape);
  const out = new Float32Array(n);
  if (n === 0) return out;
  const nd = a.shape.length;
  const data = a.data as unknown;
  const at: (i: number) => number =
    typeof (data as { get?: unknown }).get === "function" && !ArrayBuffer.isView(data) && !Array.isArray(data)
      ? (i) => (data as ndarray.GenericArray<number>).get(i)
      : (i) => (data as ArrayLike<number>)[i];
  if (nd === 0) {
    out[0] = at(a.offset);
    return out;
  }
  const last = a.shape[nd - 1];
  const ls = a.stride[nd - 1];
  const idx = new Array<number>(nd).fill(0);
  let base = a.offset;
  for (let o = 0; o < n; ) {
    for (let j = 0, p = base; j < last; j++, p += ls) out[o++] = at(p);
    for (let d = nd - 2; d >= 0; d--) {
      idx[d]++;
      base += a.stride[d];
      if (idx[d] < a.shape[d]) break;
      base -= idx[d] * a.stride[d];
      idx[d] = 0;
    }
  }
  return out;
}

/**
 * The elements of input `a` as dense row-major float32: a subarray of its data (no copy) when `a` is a
 * row-major view over a Float32Array, else a gathered copy (or an Error when `copy` is false).
 */
function denseInput(who: string, name: string, a: NdArrayInput, copy: boolean): Float32Array {
  checkView(who, name, a);
  const n = sizeOf(a.shape);
  if (a.data instanceof Float32Array && isRowMajor(a)) return a.data.subarray(a.offset, a.offset + n);
  if (!copy) {
    throw new Error(
      `quant-kernels: ${who}: ${name} (${describeNdarray(a)}) is not a row-major float32 view and { copy: false } forbids gathering it`,
    );
  }
  return gatherNdarray(a);
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** The rows of output `out` (shape `shape`) as a subarray of its data; an Error when it cannot be written in place. */
function denseOutput(who: string, out: Float32NdArray, shape: readonly number[]): Float32Array {
  checkView(who, "out", out);
  if (!sameShape(out.shape, shape))
    throw new Error(
      `quant-kernels: ${who}: out has shape [${out.shape.join(", ")}], the result has shape [${shape.join(", ")}]`,
    );
  if (!(out.data instanceof Float32Array) || !isRowMajor(out))
    throw new Error(
      `quant-kernels: ${who}: out (${describeNdarray(out)}) must be a row-major view over a Float32Array (outputs are written in place, never copied)`,
    );
  return out.data.subarray(out.offset, out.offset + sizeOf(shape));
}

function resultView(who: string, shape: number[], out: Float32NdArray | undefined) {
  if (out !== undefined) return { view: out, data: denseOutput(who, out, shape) };
  const data = new Float32Array(sizeOf(shape));
  return { view: ndarray(data, shape), data };
}

/** `[...lead, inLen]` input → rows = Π lead; an Error unless the last dimension is `inLen`. */
function rowsOf(who: string, name: string, a: NdArrayInput, inLen: number, what: string): number {
  const nd = a.shape.length;
  if (nd === 0 || a.shape[nd - 1] !== inLen)
    throw new Error(
      `quant-kernels: ${who}: ${name} must have shape [..., ${inLen}] (${what}), got [${a.shape.join(", ")}]`,
    );
  return sizeOf(a.shape.slice(0, -1));
}

/**
 * `y = x · Ŵᵀ` through `backend.qmatmul` (the fused dequantize-matmul), over ndarray views.
 * `x` has shape `[..., K]` (K = `q.inFeatures`; `[K]` is the decoding matvec), `y` shape `[..., N]`:
 * ```
 * for each leading index r, n: y[r, n] = Σ_k x[r, k] · ŵ[n, k]
 * ```
 * Zero-copy when `x` is a row-major view over a Float32Array (any offset); other views are gathered first
 * (see {@link NdCopyOptions}). Returns `opts.out` or a fresh row-major view.
 */
export function ndQmatmul(
  backend: Backend,
  x: NdArrayInput,
  q: QuantizedLinear,
  opts: NdKernelOptions = {},
): Float32NdArray {
  const who = "ndQmatmul";
  checkView(who, "x", x);
  const rows = rowsOf(who, "x", x, q.inFeatures, `K = q.inFeatures of ${q.format.name}`);
  const xs = denseInput(who, "x", x, opts.copy !== false);
  const { view, data } = resultView(who, [...x.shape.slice(0, -1), q.outFeatures], opts.out);
  backend.qmatmul(xs, rows, q, data);
  return view;
}

/**
 * `y = linear.forward(x)` over ndarray views: any {@link Linear} (float, quantized, LoRA-wrapped), with `x`
 * `[..., K]` (K = `linear.inFeatures`) and `y` `[..., N]`:
 * ```
 * for each leading index r, n: y[r, n] = Σ_k x[r, k] · W[n, k] (+ bias[n])
 * ```
 * Copies as {@link ndQmatmul}.
 */
export function ndLinear(linear: Linear, x: NdArrayInput, opts: NdKernelOptions = {}): Float32NdArray {
  const who = "ndLinear";
  checkView(who, "x", x);
  const rows = rowsOf(who, "x", x, linear.inFeatures, "K = linear.inFeatures");
  const xs = denseInput(who, "x", x, opts.copy !== false);
  const { view, data } = resultView(who, [...x.shape.slice(0, -1), linear.outFeatures], opts.out);
  linear.forward(xs, rows, data);
  return view;
}

/**
 * `dx = g · Ŵ` through `backend.qmatmulT` (the input gradient through the packed weight), over ndarray views.
 * `g` has shape `[..., N]` (N = `q.outFeatures`), `dx` shape `[..., K]`:
 * ```
 * for each leading index r, k: dx[r, k] = Σ_n g[r, n] · ŵ[n, k]
 * ```
 * Copies as {@link ndQmatmul}.
 */
export function ndQmatmulT(
  backend: Backend,
  g: NdArrayInput,
  q: QuantizedLinear,
  opts: NdKernelOptions = {},
): Float32NdArray {
  const who = "ndQmatmulT";
  checkView(who, "g", g);
  const rows = rowsOf(who, "g", g, q.outFeatures, `N = q.outFeatures of ${q.format.name}`);
  const gs = denseInput(who, "g", g, opts.copy !== false);
  const { view, data } = resultView(who, [...g.shape.slice(0, -1), q.inFeatures], opts.out);
  backend.qmatmulT(gs, rows, q, data);
  return view;
}

/**
 * The dequantized weight `Ŵ` `[N × K]` through `backend.dequantize`, as an ndarray view:
 * ```
 * for n, k: out[n, k] = ŵ[n, k]
 * ```
 * `out` (optional) must be a row-major float32 view of shape `[N, K]`.
 */
export function ndDequantize(
  backend: Backend,
  q: QuantizedLinear,
  opts: { out?: Float32NdArray } = {},
): Float32NdArray {
  const { view, data } = resultView("ndDequantize", [q.outFeatures, q.inFeatures], opts.out);
  backend.dequantize(q, data);
  return view;
}

/**
 * Quantizes a float weight view `w` `[N × K]` (out × in) with a quantizer (a value such as `gptq()`, or a
 * registered name) into `format`. Zero-copy when `w` is a row-major float32 view; other views (a transposed
 * `[in × out]` weight's `.transpose(1, 0)`, a slice of a larger matrix) are gathered first (see
 * {@link NdCopyOptions}). `opts` goes to the quantizer (a Hessian for GPTQ, …).
 */
export function ndQuantize(
  w: NdArrayInput,
  quantizer: Quantizer | string,
  format: QuantFormat | string | number,
  opts: QuantizeOptions & NdCopyOptions = {},
): QuantizedLinear {
  const who = "ndQuantize";
  checkView(who, "w", w);
  if (w.shape.length !== 2)
    throw new Error(`quant-kernels: ${who}: w must be 2-D [N, K] (out × in), got [${w.shape.join(", ")}]`);
  const qz = resolveQuantizer(`quant-kernels: ${who}`, quantizer);
  const { copy, ...rest } = opts;
  const [N, K] = w.shape;
  return qz.quantize(denseInput(who, "w", w, copy !== false), N, K, format, rest);
}

/** A 2-D operand as sgemm reads it: row-major (ld = stride[0]) or transposed (ld = stride[1]), or null. */
function gemmOperand(
  a: NdArrayInput,
): { data: Float32Array; offset: number; ld: number; trans: boolean } | null {
  if (!(a.data instanceof Float32Array)) return null;
  const [r, c] = a.shape;
  const [sr, sc] = a.stride;
  // A dimension of extent ≤ 1 may carry any stride; rows must not overlap (ld ≥ the row length).
  if ((sc === 1 || c <= 1) && (r <= 1 || sr >= Math.max(1, c)))
    return { data: a.data, offset: a.offset, ld: r <= 1 ? Math.max(1, c) : sr, trans: false };
  if ((sr === 1 || r <= 1) && (c <= 1 || sc >= Math.max(1, r)))
    return { data: a.data, offset: a.offset, ld: c <= 1 ? Math.max(1, r) : sc, trans: true };
  return null;
}

/**
 * `C = alpha · A · B + beta · C` through `backend.sgemm`, over 2-D ndarray views: `A` `[M × K]`, `B` `[K × N]`,
 * `C` `[M × N]`:
 * ```
 * for m, n: C[m, n] = alpha · Σ_k A[m, k] · B[k, n] + beta · C[m, n]
 * ```
 * Zero-copy for any float32 operand with one unit stride: a row-major view, a row-major view padded or sliced
 * in its columns (leading dimension = its row stride), or a transposed one (`.transpose(1, 0)`, read through
 * sgemm's `transA` / `transB`). Operands with no unit stride (stepped, reversed, broadcast) or other data are
 * gathered first (see {@link NdCopyOptions}). `opts.out` may be row-major or column-major (then
 * `Cᵀ = Bᵀ·Aᵀ` is computed in place); `beta` (default 0) needs `opts.out`.
 */
export function ndSgemm(
  backend: Backend,
  a: NdArrayInput,
  b: NdArrayInput,
  opts: NdKernelOptions & { alpha?: number; beta?: number } = {},
): Float32NdArray {
  const who = "ndSgemm";
  checkView(who, "A", a);
  checkView(who, "B", b);
  if (a.shape.length !== 2 || b.shape.length !== 2 || a.shape[1] !== b.shape[0])
    throw new Error(
      `quant-kernels: ${who}: A [M, K] and B [K, N] must be 2-D with matching K, got A [${a.shape.join(", ")}] and B [${b.shape.join(", ")}]`,
    );
  const [M, K] = a.shape;
  const N = b.shape[1];
  const beta = opts.beta ?? 0;
  if (beta !== 0 && opts.out === undefined)
    throw new Error(`quant-kernels: ${who}: beta ${beta} accumulates into C: pass opts.out`);
  const operand = (name: string, v: NdArrayInput) => {
    checkView(who, name, v);
    const op = gemmOperand(v);
    if (op !== null) return op;
    const data = denseInput(who, name, v, opts.copy !== false);
    return { data, offset: 0, ld: Math.max(1, v.shape[1]), trans: false };
  };
  const A = operand("A", a);
  const B = operand("B", b);
  let C: { data: Float32Array; offset: number; ld: number; trans: boolean };
  let view: Float32NdArray;
  if (opts.out !== undefined) {
    const out = opts.out;
    checkView(who, "out", out);
    if (!sameShape(out.shape, [M, N]))
      throw new Error(
        `quant-kernels: ${who}: out has shape [${out.shape.join(", ")}], the result has shape [${M}, ${N}]`,
      );
    const op = gemmOperand(out);
    if (op === null)
      throw new Error(
        `quant-kernels: ${who}: out (${describeNdarray(out)}) must be a float32 view with one unit stride (outputs are written in place, never copied)`,
      );
    C = op;
    view = out;
  } else {
    const data = new Float32Array(M * N);
    C = { data, offset: 0, ld: Math.max(1, N), trans: false };
    view = ndarray(data, [M, N]);
  }
  const alpha = opts.alpha ?? 1;
  if (!C.trans) {
    backend.sgemm({
      M,
      N,
      K,
      A: A.data,
      B: B.data,
      C: C.data,
      transA: A.trans,
      transB: B.trans,
      aOffset: A.offset,
      bOffset: B.offset,
      cOffset: C.offset,
      lda: A.ld,
      ldb: B.ld,
      ldc: C.ld,
      alpha,
      beta,
    });
  } else {
    // C column-major: Cᵀ[N × M] = Bᵀ · Aᵀ, each operand read with its transpose flag flipped.
    backend.sgemm({
      M: N,
      N: M,
      K,
      A: B.data,
      B: A.data,
      C: C.data,
      transA: !B.trans,
      transB: !A.trans,
      aOffset: B.offset,
      bOffset: A.offset,
      cOffset: C.offset,
      lda: B.ld,
      ldb: A.ld,
      ldc: C.ld,
      alpha,
      beta,
    });
  }
  return view;
}
