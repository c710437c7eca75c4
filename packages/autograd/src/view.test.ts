import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { mul } from "./elementwise";
import { gradCheck } from "./gradcheck";
import { tensor } from "./tensor";
import { expectClose, FC, leaf, unravel, useReferenceBackend } from "./test-utils";
import { concat, permute, reshape, slice, transpose } from "./view";

useReferenceBackend();

const shapeArb = fc.tuple(
  fc.array(fc.integer({ min: 1, max: 4 }), { minLength: 2, maxLength: 4 }),
  fc.integer({ min: 1, max: 999 }),
);

describe("views", () => {
  it("reshape is a view of contiguous data and copies strided data; backward passes through", () => {
    const x = leaf([2, 3, 4], 1);
    const r = reshape(x, [4, -1]);
    expect(r.shape).toEqual([4, 6]);
    expect(r.data).toBe(x.data);
    expectClose(r.toArray(), x.toArray());
    const t = reshape(transpose(x, 0, 2), [-1]);
    expect(t.data).not.toBe(x.data);
    gradCheck((a) => reshape(transpose(a, 0, 2), [6, 4]), [x]);
    expect(() => reshape(x, [5, -1])).toThrow(/reshape: cannot infer -1 in \[5, -1\] for 24 elements/);
    expect(() => reshape(x, [5, 5])).toThrow(/cannot become \[5, 5\]/);
  });

  it("permute matches index arithmetic and backward matches finite differences", () => {
    fc.assert(
      fc.property(shapeArb, fc.integer({ min: 0, max: 1000 }), ([shape, seed], k) => {
        const dims = shape.map((_, i) => i);
        for (let i = dims.length - 1; i > 0; i--) {
          const j = (k * 7 + i) % (i + 1);
          [dims[i], dims[j]] = [dims[j], dims[i]];
        }
        const x = leaf(shape, seed);
        const y = permute(x, dims);
        expect(y.data).toBe(x.data);
        const out = y.toArray();
        for (let i = 0; i < out.length; i++) {
          const idx = unravel(i, y.shape);
          const src = new Array<number>(shape.length);
          dims.forEach((d, o) => {
            src[d] = idx[o];
          });
          expect(out[i]).toBe(x.get(...src));
        }
        const w = leaf(y.shape, seed + 5, { grad: false });
        gradCheck((a) => mul(permute(a, dims), w), [x]);
      }),
      FC,
    );
    expect(() => permute(leaf([2, 3], 1), [0, 0])).toThrow(/permute: \[0, 0\] is not a permutation/);
  });

  it("slice is a view with the right elements; backward fills only the slice", () => {
    fc.assert(
      fc.property(shapeArb, fc.nat(), fc.nat(), ([shape, seed], u, v) => {
        const x = leaf(shape, seed);
        const axis = u % shape.length;
        const start = v % shape[axis];
        const end = start + 1 + (u % (shape[axis] - start));
        const y = slice(x, axis, start, end);
        expect(y.data).toBe(x.data);
        const out = y.toArray();
        for (let i = 0; i < out.length; i++) {
          const idx = unravel(i, y.shape);
          idx[axis] += start;
          expect(out[i]).toBe(x.get(...idx));
        }
        gradCheck((a) => mul(slice(a, axis, start, end), leaf(y.shape, 3, { grad: false })), [x]);
      }),
      FC,
    );
    expect(() => slice(leaf([2, 3], 1), 1, 2, 4)).toThrow(
      /slice: \[2, 4\) out of range on axis 1 of .* \[2, 3\]/,
    );
  });

  it("concat joins along an axis (strided inputs too); backward splits", () => {
    const a = leaf([2, 3], 1);
    const b = leaf([2, 2], 2);
    const c = leaf([3, 2], 3);
    const y = concat([a, b, transpose(c)], 1);
    expect(y.shape).toEqual([2, 8]);
    expectClose(y.toArray(), [
      ...[0, 1, 2].map((j) => a.get(0, j)),
      ...[0, 1].map((j) => b.get(0, j)),
      ...[0, 1, 2].map((j) => c.get(j, 0)),
      ...[0, 1, 2].map((j) => a.get(1, j)),
      ...[0, 1].map((j) => b.get(1, j)),
      ...[0, 1, 2].map((j) => c.get(j, 1)),
    ]);
    const w = leaf([2, 8], 9, { grad: false });
    gradCheck((p, q, r) => mul(concat([p, q, transpose(r)], 1), w), [a, b, c]);
    const frozen = leaf([2, 2], 4, { grad: false });
    gradCheck((p, r) => mul(concat([p, frozen, transpose(r)], 1), w), [a, c]);
    expect(() => concat([a, tensor([1, 2, 3])], 0)).toThrow(/concat: shapes \[2, 3\], \[3\] differ/);
  });
});
