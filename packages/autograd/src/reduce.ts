// Reductions: sum over an axis (or all elements); mean is a composite.
import { defineOp, type OpDef } from "./engine";
import { scale } from "./elementwise";
import { normAxis, output } from "./strided";
import type { Tensor } from "./tensor";

interface SumAttrs {
  axis: number | null;
  keepDims: boolean;
}

function outerInner(shape: readonly number[], axis: number): [number, number, number] {
  let outer = 1;
  let inner = 1;
  for (let i = 0; i < axis; i++) outer *= shape[i];
  for (let i = axis + 1; i < shape.length; i++) inner *= shape[i];
  return [outer, shape[axis], inner];
}

const sumOp: OpDef<SumAttrs> = {
  name: "sum",
  forward(_ctx, [x], { axis, keepDims }) {
    const v = x.values();
    if (axis === null) {
      let s = 0; // float64 accumulation
      for (let i = 0; i < v.length; i++) s += v[i];
      return output(new Float32Array([s]), keepDims ? x.shape.map(() => 1) : []);
    }
    const [outer, n, inner] = outerInner(x.shape, axis);
    const acc = new Float64Array(outer * inner);
    for (let o = 0; o < outer; o++) {
      for (let a = 0; a < n; a++) {
        const src = (o * n + a) * inner;
        const dst = o * inner;
        for (let i = 0; i < inner; i++) acc[dst + i] += v[src + i];
      }
    }
    const shape = keepDims
      ? x.shape.map((d, i) => (i === axis ? 1 : d))
      : x.shape.filter((_, i) => i !== axis);
    return output(Float32Array.from(acc), shape);
  },
  backward(_ctx, gy, [gx], { axis }) {
    const g = gy.values();
    const d = gx!.data;
    if (axis === null) {
      for (let i = 0; i < d.length; i++) d[i] += g[0];
      return;
    }
    const [outer, n, inner] = outerInner(gx!.shape, axis);
    for (let o = 0; o < outer; o++) {
      for (let a = 0; a < n; a++) {
        const dst = (o * n + a) * inner;
        const src = o * inner;
        for (let i = 0; i < inner; i++) d[dst + i] += g[src + i];
      }
    }
  },
};
const applySum = defineOp(sumOp);

/**
 * Sum over `axis` (negative counts from the end), or over all elements when `axis` is omitted
 * (result shape `[]`). Accumulates in float64. `keepDims` keeps the reduced axis with size 1.
 */
export function sum(x: Tensor, axis?: number, keepDims = false): Tensor {
  const a = axis === undefined ? null : normAxis("sum", axis, x.ndim, x.shape);
  return applySum([x], { axis: a, keepDims });
}

/** Mean over `axis` or all elements (composite: sum then scale by 1/n). */
export function mean(x: Tensor, axis?: number, keepDims = false): Tensor {
  const n = axis === undefined ? x.size : x.shape[normAxis("mean", axis, x.ndim, x.shape)];
  if (n === 0) throw new Error(`autograd: mean: empty reduction over shape [${x.shape.join(", ")}]`);
  return scale(sum(x, axis, keepDims), 1 / n);
}

/** The op records of this family (forward/backward pairs), for introspection and tests. */
export const reduceOps = { sumOp };
