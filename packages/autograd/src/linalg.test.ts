import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { gradCheck } from "./gradcheck";
import { matmul } from "./linalg";
import { expectClose, FC, leaf, useReferenceBackend } from "./test-utils";
import { transpose } from "./view";

useReferenceBackend();

function refMatmul(
  a: Float32Array,
  b: Float32Array,
  M: number,
  N: number,
  K: number,
  tA: boolean,
  tB: boolean,
) {
  const c = new Float64Array(M * N);
  for (let i = 0; i < M; i++)
    for (let j = 0; j < N; j++) {
      let s = 0;
      for (let p = 0; p < K; p++)
        s += (tA ? a[p * M + i] : a[i * K + p]) * (tB ? b[j * K + p] : b[p * N + j]);
      c[i * N + j] = s;
    }
  return c;
}

describe("matmul", () => {
  it("all transpose combinations, shared and batched b: forward vs plain loop, backward vs finite differences", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 5 }),
        fc.integer({ min: 1, max: 5 }),
        fc.integer({ min: 1, max: 5 }),
        fc.array(fc.integer({ min: 1, max: 3 }), { maxLength: 2 }),
        fc.boolean(),
        fc.boolean(),
        fc.boolean(),
        fc.integer({ min: 1, max: 999 }),
        (M, N, K, batch, tA, tB, shared, seed) => {
          const a = leaf([...batch, tA ? K : M, tA ? M : K], seed);
          const bShape = tB ? [N, K] : [K, N];
          const b = leaf(shared || batch.length === 0 ? bShape : [...batch, ...bShape], seed + 1);
          const y = matmul(a, b, { transA: tA, transB: tB });
          expect(y.shape).toEqual([...batch, M, N]);
          const nb = batch.reduce((x, z) => x * z, 1);
          const av = a.values();
          const bv = b.values();
          const out = y.values();
          for (let i = 0; i < nb; i++) {
            const bo = b.ndim === 2 ? 0 : i * K * N;
            expectClose(
              out.subarray(i * M * N, (i + 1) * M * N),
              refMatmul(av.subarray(i * M * K), bv.subarray(bo), M, N, K, tA, tB),
            );
          }
          gradCheck((p, q) => matmul(p, q, { transA: tA, transB: tB }), [a, b]);
          // only one side requiring grad
          const frozen = leaf(b.shape, seed + 2, { grad: false });
          gradCheck((p) => matmul(p, frozen, { transA: tA, transB: tB }), [a]);
        },
      ),
      FC,
    );
  });

  it("accepts a transposed view as an operand", () => {
    const a = leaf([3, 4], 1);
    const w = leaf([5, 4], 2);
    expectClose(matmul(a, transpose(w)).toArray(), matmul(a, w, { transB: true }).toArray());
    gradCheck((p, q) => matmul(p, transpose(q)), [a, w]);
  });

  it("rejects mismatched shapes, printing both", () => {
    expect(() => matmul(leaf([2, 3], 1), leaf([4, 5], 2))).toThrow(
      /matmul: inner dimensions differ \(3 vs 4\): a \[2, 3\] · b \[4, 5\]/,
    );
    expect(() => matmul(leaf([2, 2, 3], 1), leaf([3, 3, 5], 2))).toThrow(/batch dimensions differ/);
    expect(() => matmul(leaf([3], 1), leaf([3, 5], 2))).toThrow(/at least 2 dimensions/);
  });
});
