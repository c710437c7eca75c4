import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { gradCheck } from "./gradcheck";
import { logSoftmax, rmsNorm, softmax } from "./norm";
import { tensor } from "./tensor";
import { expectClose, FC, leaf, useReferenceBackend } from "./test-utils";

useReferenceBackend();

const rowsArb = fc.tuple(
  fc.array(fc.integer({ min: 1, max: 3 }), { maxLength: 2 }),
  fc.integer({ min: 1, max: 9 }),
  fc.integer({ min: 1, max: 999 }),
);

function refRows(x: Float32Array, d: number, f: (row: number[]) => number[]): number[] {
  const out: number[] = [];
  for (let o = 0; o < x.length; o += d) out.push(...f(Array.from(x.subarray(o, o + d))));
  return out;
}

describe("rmsNorm", () => {
  it("forward y = x / sqrt(mean(x²) + eps) · w; backward (x and w) vs finite differences", () => {
    fc.assert(
      fc.property(rowsArb, ([lead, d, seed]) => {
        const x = leaf([...lead, d], seed);
        const w = leaf([d], seed + 1);
        const wv = w.values();
        const ref = refRows(x.values(), d, (r) => {
          const s = 1 / Math.sqrt(r.reduce((a, v) => a + v * v, 0) / d + 1e-5);
          return r.map((v, j) => v * s * wv[j]);
        });
        expectClose(rmsNorm(x, w).toArray(), ref, 1e-5, 1e-4);
        gradCheck((a, b) => rmsNorm(a, b), [x, w]);
        gradCheck((a) => rmsNorm(a, w, 0.1), [x]);
      }),
      FC,
    );
    expect(() => rmsNorm(leaf([2, 4], 1), leaf([3], 2))).toThrow(
      /rmsNorm: weight .*\[3\] must be \[4\] for x \[2, 4\]/,
    );
  });
});

describe("softmax / logSoftmax", () => {
  it("forward vs float64 reference; backward vs finite differences", () => {
    fc.assert(
      fc.property(rowsArb, ([lead, d, seed]) => {
        const x = leaf([...lead, d], seed, { std: 3 });
        const sm = (r: number[]) => {
          const m = Math.max(...r);
          const e = r.map((v) => Math.exp(v - m));
          const s = e.reduce((a, b) => a + b, 0);
          return e.map((v) => v / s);
        };
        expectClose(softmax(x).toArray(), refRows(x.values(), d, sm), 1e-6, 1e-5);
        expectClose(
          logSoftmax(x).toArray(),
          refRows(x.values(), d, (r) => sm(r).map(Math.log)),
          1e-5,
          1e-5,
        );
        const w = leaf(x.shape, seed + 3, { grad: false });
        gradCheck((a) => softmax(a), [x]);
        gradCheck((a) => logSoftmax(a), [x]);
        expect(w.size).toBe(x.size);
      }),
      FC,
    );
  });

  it("is stable for huge logits (no overflow, no NaN)", () => {
    const y = softmax(tensor([1000, 1001, 999], [1, 3]));
    expectClose(y.toArray(), [0.24472847, 0.66524096, 0.09003057], 1e-6);
    const l = logSoftmax(tensor([-1e4, 1e4], [1, 2]));
    expect(l.toArray()).toEqual([-2e4, 0]);
  });
});
