// Internal helpers over strided views: broadcasting, row walks, strided accumulate.
import { fmtShape, fromData, type Tensor } from "./tensor";

/** Numpy broadcasting of two shapes; throws naming the op and both shapes. */
export function broadcastShapes(op: string, a: readonly number[], b: readonly number[]): number[] {
  const n = Math.max(a.length, b.length);
  const out = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    const da = a[a.length - n + i] ?? 1;
    const db = b[b.length - n + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) {
      throw new Error(`autograd: ${op}: shapes ${fmtShape(a)} and ${fmtShape(b)} do not broadcast`);
    }
    out[i] = da === 1 ? db : da;
  }
  return out;
}

/** Strides of `t` aligned to `outShape` (0 on broadcast dimensions). */
export function broadcastStrides(
  t: { shape: readonly number[]; strides: readonly number[] },
  outShape: readonly number[],
) {
  const n = outShape.length;
  const s = new Array<number>(n).fill(0);
  const k = n - t.shape.length;
  for (let i = 0; i < t.shape.length; i++) s[k + i] = t.shape[i] === 1 ? 0 : t.strides[i];
  return s;
}

/** Dense row-major strides. */
export function denseStrides(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i];
  }
  return s;
}

/**
 * Walks every row (all dimensions but the last) of `shape`, calling `body` with the row's starting
 * offset in each operand. `bases` is reused between calls.
 */
export function walkRows(
  shape: readonly number[],
  strides: readonly (readonly number[])[],
  offsets: readonly number[],
  body: (bases: number[]) => void,
): void {
  const nd = shape.length;
  const k = strides.length;
  const bases = [...offsets];
  let rows = 1;
  for (let d = 0; d < nd - 1; d++) rows *= shape[d];
  if (nd > 0 && shape[nd - 1] === 0) return;
  if (rows === 0) return;
  const idx = new Array<number>(Math.max(0, nd - 1)).fill(0);
  for (let r = 0; r < rows; r++) {
    body(bases);
    for (let d = nd - 2; d >= 0; d--) {
      idx[d]++;
      for (let j = 0; j < k; j++) bases[j] += strides[j][d];
      if (idx[d] < shape[d]) break;
      for (let j = 0; j < k; j++) bases[j] -= idx[d] * strides[j][d];
      idx[d] = 0;
    }
  }
}

/**
 * `dst[view] += src[view]` for two strided views of the same `shape`.
 * ```
 * for idx in shape: dst[dOff + idx·dStr] += src[sOff + idx·sStr]
 * ```
 */
export function addStrided(
  shape: readonly number[],
  dst: Float32Array,
  dOff: number,
  dStr: readonly number[],
  src: Float32Array,
  sOff: number,
  sStr: readonly number[],
): void {
  const nd = shape.length;
  const n = nd === 0 ? 1 : shape[nd - 1];
  const ds = nd === 0 ? 0 : dStr[nd - 1];
  const ss = nd === 0 ? 0 : sStr[nd - 1];
  walkRows(shape, [dStr, sStr], [dOff, sOff], (b) => {
    let p = b[0];
    let q = b[1];
    for (let j = 0; j < n; j++, p += ds, q += ss) dst[p] += src[q];
  });
}

/** Accumulates a dense gradient of shape `outShape` into the dense gradient `g` of a broadcast input. */
export function accumulateBroadcast(g: Tensor, gy: Float32Array, outShape: readonly number[]): void {
  if (g.size === gy.length) {
    const d = g.data;
    const o = g.offset;
    for (let i = 0; i < gy.length; i++) d[o + i] += gy[i];
    return;
  }
  const gs = broadcastStrides({ shape: g.shape, strides: denseStrides(g.shape) }, outShape);
  addStrided(outShape, g.data, g.offset, gs, gy, 0, denseStrides(outShape));
}

/** A new dense output tensor (ledger tag `activation`). */
export function output(data: Float32Array, shape: readonly number[]): Tensor {
  return fromData(data, shape, "activation");
}

/** Normalises a possibly negative axis; throws naming the op and the shape. */
export function normAxis(op: string, axis: number, ndim: number, shape: readonly number[]): number {
  const a = axis < 0 ? axis + ndim : axis;
  if (!Number.isInteger(a) || a < 0 || a >= ndim) {
    throw new Error(`autograd: ${op}: axis ${axis} out of range for shape ${fmtShape(shape)}`);
  }
  return a;
}
