import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { gradCheck } from "./gradcheck";
import { mean, sum } from "./reduce";
import { expectClose, FC, leaf, unravel, useReferenceBackend } from "./test-utils";

useReferenceBackend();

describe("sum / mean", () => {
  it("over every axis (and all elements) match a plain loop; backward matches finite differences", () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 1, max: 4 }), { minLength: 1, maxLength: 3 }),
        fc.integer({ min: 1, max: 999 }),
        fc.boolean(),
        (shape, seed, keepDims) => {
          const x = leaf(shape, seed);
          const v = x.values();
          for (let axis = 0; axis < shape.length; axis++) {
            const outShape = shape.filter((_, i) => i !== axis);
            const ref = new Float64Array(outShape.reduce((a, b) => a * b, 1));
            for (let i = 0; i < v.length; i++) {
              const idx = unravel(i, shape);
              idx.splice(axis, 1);
              let f = 0;
              for (let d = 0; d < outShape.length; d++) f = f * outShape[d] + idx[d];
              ref[f] += v[i];
            }
            const s = sum(x, axis, keepDims);
            expect(s.shape).toEqual(keepDims ? shape.map((d, i) => (i === axis ? 1 : d)) : outShape);
            expectClose(s.toArray(), ref);
            expectClose(
              mean(x, axis - shape.length).toArray(),
              Array.from(ref, (r) => r / shape[axis]),
            );
            gradCheck((t) => sum(t, axis, keepDims), [x]);
            gradCheck((t) => mean(t, axis), [x]);
          }
          const total = v.reduce((a, b) => a + b, 0);
          expectClose([sum(x).item()], [total]);
          expect(sum(x).shape).toEqual([]);
          gradCheck((t) => mean(t), [x]);
        },
      ),
      FC,
    );
  });

  it("rejects an out-of-range axis, naming the shape", () => {
    expect(() => sum(leaf([2, 3], 1), 2)).toThrow(/sum: axis 2 out of range for shape \[2, 3\]/);
  });
});
