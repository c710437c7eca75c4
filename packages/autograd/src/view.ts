// Views and layout: reshape, permute/transpose, slice (views sharing storage) and concat (a copy).
import { allocFloats } from "./memory";
import { defineOp, type OpDef } from "./engine";
import { addStrided, denseStrides, normAxis, output } from "./strided";
import { fmtShape, shapeSize, Tensor } from "./tensor";

const reshapeOp: OpDef<readonly number[]> = {
  name: "reshape",
  forward(_ctx, [x], shape) {
    if (x.isContiguous()) return new Tensor(x.storage, shape, undefined, x.offset);
    return output(x.toFloat32Array(), shape);
  },
  backward(_ctx, gy, [gx]) {
    const g = gy.values();
    const d = gx!.data;
    for (let i = 0; i < g.length; i++) d[i] += g[i];
  },
};
const applyReshape = defineOp(reshapeOp);

/**
 * A new shape with the same elements in row-major order; one dimension may be -1 (inferred).
 * A view (no copy) when `x` is contiguous.
 */
export function reshape(x: Tensor, shape: readonly number[]): Tensor {
  const s = [...shape];
  const inf = s.indexOf(-1);
  if (inf >= 0) {
    const rest = shapeSize(s.filter((_, i) => i !== inf));
    if (rest === 0 || x.size % rest !== 0) {
      throw new Error(
        `autograd: reshape: cannot infer -1 in ${fmtShape(shape)} for ${x.size} elements (${x})`,
      );
    }
    s[inf] = x.size / rest;
  }
  if (s.some((d) => !Number.isInteger(d) || d < 0) || shapeSize(s) !== x.size) {
    throw new Error(`autograd: reshape: ${x} (${x.size} elements) cannot become ${fmtShape(shape)}`);
  }
  return applyReshape([x], s);
}

const permuteOp: OpDef<readonly number[]> = {
  name: "permute",
  forward(_ctx, [x], dims) {
    return new Tensor(
      x.storage,
      dims.map((d) => x.shape[d]),
      dims.map((d) => x.strides[d]),
      x.offset,
    );
  },
  backward(_ctx, gy, [gx], dims) {
    // gy is dense in the permuted shape; read it back through the inverse permutation.
    const gs = denseStrides(gy.shape);
    const inv = new Array<number>(dims.length);
    for (let i = 0; i < dims.length; i++) inv[dims[i]] = gs[i];
    addStrided(gx!.shape, gx!.data, 0, denseStrides(gx!.shape), gy.values(), 0, inv);
  },
};
const applyPermute = defineOp(permuteOp);

/** Reorders dimensions: output dimension i is input dimension `dims[i]`. A view. */
export function permute(x: Tensor, dims: readonly number[]): Tensor {
  const sorted = [...dims].sort((a, b) => a - b);
  if (dims.length !== x.ndim || sorted.some((d, i) => d !== i)) {
    throw new Error(
      `autograd: permute: [${dims.join(", ")}] is not a permutation of the axes of ${x} ${fmtShape(x.shape)}`,
    );
  }
  return applyPermute([x], [...dims]);
}

/** Swaps two dimensions (default the last two). A view. */
export function transpose(x: Tensor, dim0 = -2, dim1 = -1): Tensor {
  const a = normAxis("transpose", dim0, x.ndim, x.shape);
  const b = normAxis("transpose", dim1, x.ndim, x.shape);
  const dims = x.shape.map((_, i) => i);
  dims[a] = b;
  dims[b] = a;
  return permute(x, dims);
}

interface SliceAttrs {
  axis: number;
  start: number;
  end: number;
}

const sliceOp: OpDef<SliceAttrs> = {
  name: "slice",
  forward(_ctx, [x], { axis, start, end }) {
    const shape = [...x.shape];
    shape[axis] = end - start;
    return new Tensor(x.storage, shape, x.strides, x.offset + start * x.strides[axis]);
  },
  backward(_ctx, gy, [gx], { axis, start }) {
    const ds = denseStrides(gx!.shape);
    addStrided(gy.shape, gx!.data, start * ds[axis], ds, gy.values(), 0, denseStrides(gy.shape));
  },
};
const applySlice = defineOp(sliceOp);

/** Elements `start ≤ i < end` along `axis` (a view). */
export function slice(x: Tensor, axis: number, start: number, end: number): Tensor {
  const a = normAxis("slice", axis, x.ndim, x.shape);
  if (!Number.isInteger(start) || !Number.isInteger(end) || start < 0 || end > x.shape[a] || start > end) {
    throw new Error(
      `autograd: slice: [${start}, ${end}) out of range on axis ${axis} of ${x} ${fmtShape(x.shape)}`,
    );
  }
  return applySlice([x], { axis: a, start, end });
}

const concatOp: OpDef<number> = {
  name: "concat",
  forward(ctx, xs, axis) {
    ctx.state.sizes = xs.map((x) => x.shape[axis]);
    const shape = [...xs[0].shape];
    shape[axis] = xs.reduce((s, x) => s + x.shape[axis], 0);
    const out = allocFloats(shapeSize(shape));
    const os = denseStrides(shape);
    let at = 0;
    for (const x of xs) {
      addStrided(x.shape, out, at * os[axis], os, x.data, x.offset, x.strides);
      at += x.shape[axis];
    }
    return output(out, shape);
  },
  backward(ctx, gy, gxs, axis) {
    const g = gy.values();
    const os = denseStrides(gy.shape);
    const sizes = ctx.state.sizes as number[];
    let at = 0;
    gxs.forEach((gx, i) => {
      if (gx) addStrided(gx.shape, gx.data, 0, denseStrides(gx.shape), g, at * os[axis], os);
      at += sizes[i];
    });
  },
};

/** Joins tensors along `axis`; all other dimensions must match. */
export function concat(xs: readonly Tensor[], axis: number): Tensor {
  if (xs.length === 0) throw new Error("autograd: concat: no tensors");
  const a = normAxis("concat", axis, xs[0].ndim, xs[0].shape);
  for (const x of xs) {
    if (x.ndim !== xs[0].ndim || x.shape.some((d, i) => i !== a && d !== xs[0].shape[i])) {
      throw new Error(
        `autograd: concat: shapes ${xs.map((t) => fmtShape(t.shape)).join(", ")} differ outside axis ${axis}`,
      );
    }
  }
  return applyConcat(xs, a);
}
const applyConcat = defineOp(concatOp);

/** The op records of this family (forward/backward pairs), for introspection and tests. */
export const viewOps = { reshapeOp, permuteOp, sliceOp, concatOp };
