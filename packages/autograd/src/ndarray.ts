// scijs ndarray views in and out of tensors: a Tensor is already a strided view (data, shape, strides,
// offset), so both directions share the data wherever the strides allow.
import {
  type Float32NdArray,
  type NdArrayInput,
  describeNdarray,
  gatherNdarray,
  isNdarrayView,
  isRowMajor,
} from "@int21/quant-kernels";
import ndarray from "ndarray";
import { Storage } from "./memory";
import { Tensor, type TensorOptions, fmtShape } from "./tensor";

/** Options of {@link fromNdarray}. */
export interface FromNdarrayOptions extends TensorOptions {
  /**
   * Whether a view the tensor cannot share may be gathered into a fresh dense float32 copy: data other than
   * a Float32Array, a negative stride, or (for a trainable tensor, `requiresGrad`, whose optimizer updates
   * it in place as one dense range) any view that is not row-major dense. `false` makes it an Error naming
   * the view's shape and strides. Default true.
   */
  copy?: boolean;
}

/**
 * A tensor over the elements of a scijs `ndarray` view. Shares the view's data (no copy) when it is a
 * Float32Array and the strides are non-negative: transposed, stepped, sliced and broadcast (stride 0) views
 * become tensors with the same strides and offset, so writes to the data show through both. A trainable
 * tensor (`requiresGrad`) shares only a row-major dense view. Other views are gathered into a dense copy
 * (see {@link FromNdarrayOptions.copy}). The whole data array is counted in the memory ledger.
 *
 * @example
 * ```ts
 * const a = ndarray(new Float32Array([1, 2, 3, 4, 5, 6]), [2, 3]);
 * const t = fromNdarray(a.transpose(1, 0)); // shape [3, 2], strides [1, 3], same data
 * ```
 */
export function fromNdarray(a: NdArrayInput, opts: FromNdarrayOptions = {}): Tensor {
  const what = `autograd: fromNdarray${opts.name ? ` '${opts.name}'` : ""}`;
  if (!isNdarrayView(a)) throw new Error(`${what}: expected an ndarray view (data, shape, stride, offset)`);
  const { shape, stride, offset } = a;
  let lo = offset;
  let hi = offset;
  let size = 1;
  for (let i = 0; i < shape.length; i++) {
    if (!Number.isSafeInteger(shape[i]) || shape[i] < 0 || !Number.isSafeInteger(stride[i]))
      throw new Error(`${what}: bad shape or stride (${describeNdarray(a)})`);
    size *= shape[i];
    const reach = (shape[i] - 1) * stride[i];
    if (reach < 0) lo += reach;
    else hi += reach;
  }
  const length = (a.data as { length: number }).length;
  if (size > 0 && (lo < 0 || hi >= length))
    throw new Error(
      `${what}: the view (${describeNdarray(a)}) reaches elements ${lo}..${hi}, outside its data of length ${length}`,
    );
  const trainable = opts.requiresGrad === true;
  const shareable =
    a.data instanceof Float32Array &&
    stride.every((s, i) => s >= 0 || shape[i] <= 1) &&
    (!trainable || isRowMajor(a));
  let t: Tensor;
  if (shareable) {
    const strides = stride.map((s, i) => (shape[i] <= 1 ? Math.max(0, s) : s));
    t = new Tensor(
      new Storage(a.data as Float32Array, opts.tag ?? (trainable ? "param" : "data")),
      shape,
      strides,
      offset,
      trainable,
    );
  } else {
    if (opts.copy === false) {
      const why =
        a.data instanceof Float32Array
          ? trainable
            ? "is not row-major dense, which a trainable tensor must be"
            : "has a negative stride"
          : "is not over a Float32Array";
      throw new Error(
        `${what}: the view (${describeNdarray(a)}) ${why}, and { copy: false } forbids gathering it`,
      );
    }
    t = new Tensor(
      new Storage(gatherNdarray(a), opts.tag ?? (trainable ? "param" : "data")),
      shape,
      undefined,
      0,
      trainable,
    );
  }
  t.name = opts.name;
  return t;
}

/**
 * The tensor's elements as a scijs `ndarray` view over the same data, with the tensor's shape, strides and
 * offset (no copy): writes through either show in both. The view does not keep the tensor alive in the
 * memory ledger: after `t.dispose()` the data is no longer counted, though the view still reads it.
 * Shape `[]` gives a 0-d view.
 */
export function toNdarray(t: Tensor): Float32NdArray {
  if (!(t instanceof Tensor)) throw new Error("autograd: toNdarray: expected a Tensor");
  if (!t.isAlive) throw new Error(`autograd: toNdarray: tensor ${fmtShape(t.shape)} has been disposed`);
  return ndarray(t.data, [...t.shape], [...t.strides], t.offset);
}
