import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { createHessian } from "./hessian";
import { createReferenceBackend } from "./reference/backend";
import { randomUniform } from "./testing/random";

function naive(x: Float32Array, rows: number, K: number): Float64Array {
  const H = new Float64Array(K * K);
  for (let r = 0; r < rows; r++)
    for (let i = 0; i < K; i++)
      for (let j = 0; j < K; j++) H[i * K + j] += (2 / rows) * x[r * K + i] * x[r * K + j];
  return H;
}

describe("createHessian", () => {
  it("equals (2/n)·XᵀX however the rows are chunked, with or without a backend (property)", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 37 }),
        fc.integer({ min: 1, max: 90 }),
        fc.integer({ min: 1, max: 70 }),
        fc.integer({ min: 1, max: 3 }),
        fc.boolean(),
        fc.integer({ min: 1, max: 16 }),
        fc.integer({ min: 0, max: 1e9 }),
        (K, rows, chunkRows, parts, withBackend, panelRows, seed) => {
          const x = randomUniform(rows * K, seed);
          const backend = withBackend ? createReferenceBackend() : undefined;
          const h = createHessian(K, { chunkRows, backend, panelRows });
          const cut = Math.floor(rows / parts);
          h.add(x.subarray(0, cut * K), cut);
          h.add(x.subarray(cut * K), rows - cut);
          expect(h.count).toBe(rows);
          const H = h.matrix();
          const want = naive(x, rows, K);
          for (let i = 0; i < K * K; i++)
            expect(Math.abs(H[i] - want[i])).toBeLessThan(1e-5 * (1 + Math.abs(want[i])));
          for (let i = 0; i < K; i++) for (let j = 0; j < K; j++) expect(H[i * K + j]).toBe(H[j * K + i]);
        },
      ),
      { seed: 42, numRuns: 40 },
    );
  });

  it("rejects bad input with errors naming the problem", () => {
    expect(() => createHessian(0)).toThrow(/K must be a positive integer/);
    expect(() => createHessian(4, { panelRows: 0 })).toThrow(/panelRows/);
    const h = createHessian(3);
    expect(() => h.matrix()).toThrow(/no calibration rows/);
    expect(() => h.add(new Float32Array(5), 2)).toThrow(/rows×K = 2×3/);
    expect(() => h.add(new Float32Array([0, 1, Number.POSITIVE_INFINITY]), 1)).toThrow(
      /x\[2\] \(row 0, col 2\)/,
    );
  });
});
