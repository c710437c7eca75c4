import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { svdInit, symmetricEigen, truncatedSvd } from "./svd-init";

function randMatrix(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2 ** 32 - 0.5;
  }
  return out;
}

/** Singular values of M (N×K) from the exact eigenvalues of MᵀM. */
function singularValues(M: Float32Array, N: number, K: number): number[] {
  const G = new Float64Array(K * K);
  for (let i = 0; i < K; i++)
    for (let j = 0; j < K; j++) {
      let d = 0;
      for (let n = 0; n < N; n++) d += M[n * K + i] * M[n * K + j];
      G[i * K + j] = d;
    }
  return Array.from(symmetricEigen(G, K).values).map((v) => Math.sqrt(Math.max(0, v)));
}

function bestError(M: Float32Array, N: number, K: number, r: number): number {
  const s = singularValues(M, N, K);
  return Math.sqrt(s.slice(r).reduce((a, v) => a + v * v, 0));
}

describe("symmetricEigen", () => {
  it("diagonalises: A·v = λ·v, eigenvalues decreasing", () => {
    const A = Float64Array.from([4, 1, 2, 1, 3, 0, 2, 0, 1]);
    const { values, vectors } = symmetricEigen(A, 3);
    for (let j = 0; j < 3; j++) {
      for (let i = 0; i < 3; i++) {
        let av = 0;
        for (let k = 0; k < 3; k++) av += A[i * 3 + k] * vectors[k * 3 + j];
        expect(av).toBeCloseTo(values[j] * vectors[i * 3 + j], 10);
      }
    }
    expect(values[0]).toBeGreaterThanOrEqual(values[1]);
    expect(values[1]).toBeGreaterThanOrEqual(values[2]);
    expect(values[0] + values[1] + values[2]).toBeCloseTo(8, 10); // trace
  });
});

describe("truncatedSvd", () => {
  it("reaches the best rank-r error (Eckart–Young) on small matrices", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 6, max: 30 }),
        fc.integer({ min: 6, max: 30 }),
        fc.integer({ min: 1, max: 5 }),
        fc.integer(),
        (N, K, r, seed) => {
          const M = randMatrix(N * K, seed);
          const svd = truncatedSvd(M, N, K, r, { seed: 7 });
          let err = 0;
          for (let n = 0; n < N; n++)
            for (let k = 0; k < K; k++) {
              let d = 0;
              for (let j = 0; j < r; j++) d += svd.u[n * r + j] * svd.s[j] * svd.v[k * r + j];
              err += (M[n * K + k] - d) ** 2;
            }
          const best = bestError(M, N, K, r);
          expect(Math.sqrt(err)).toBeLessThanOrEqual(best * 1.01 + 1e-5);
          expect(svd.s[0]).toBeCloseTo(singularValues(M, N, K)[0], 3);
        },
      ),
      { seed: 42, numRuns: 25 },
    );
  });

  it("names bad ranks and sizes", () => {
    expect(() => truncatedSvd(new Float32Array(6), 2, 3, 3)).toThrow(/rank must be/);
    expect(() => truncatedSvd(new Float32Array(5), 2, 3, 1)).toThrow(/need 2×3/);
  });
});

describe("svdInit", () => {
  const N = 24;
  const K = 16;
  const W = randMatrix(N * K, 1);
  // a crude "quantization": round to a grid of 0.25
  const What = W.map((v) => Math.round(v * 4) / 4);
  const E = W.map((v, i) => v - What[i]);

  it("scaling·B·A is the best rank-r correction of W − Ŵ, and beats the zero adapter", () => {
    for (const r of [1, 3, 6]) {
      const res = svdInit(W, What, N, K, { rank: r, scaling: 4 });
      expect(res.loraA.length).toBe(r * K);
      expect(res.loraB.length).toBe(N * r);
      expect(res.error).toBeLessThan(res.zeroError);
      expect(res.error).toBeCloseTo(bestError(E, N, K, r), 4);
      let zero = 0;
      for (const e of E) zero += e * e;
      expect(res.zeroError).toBeCloseTo(Math.sqrt(zero), 5);
      // recompute ‖E − 4·B·A‖ from the factors
      let err = 0;
      for (let n = 0; n < N; n++)
        for (let k = 0; k < K; k++) {
          let d = 0;
          for (let j = 0; j < r; j++) d += res.loraB[n * r + j] * res.loraA[j * K + k];
          err += (E[n * K + k] - 4 * d) ** 2;
        }
      expect(Math.sqrt(err)).toBeCloseTo(res.error, 4);
    }
  });

  it("activation-weighted (Cholesky): minimises the output error ‖X·(E − BA)ᵀ‖ — best rank-r of E·L", () => {
    const rows = 64;
    const x = randMatrix(rows * K, 3);
    for (let t = 0; t < rows; t++) x[t * K + 2] *= 8; // one strong input channel
    const r = 3;
    const res = svdInit(W, What, N, K, { rank: r, calib: { x, rows }, damp: 0 });
    const plain = svdInit(W, What, N, K, { rank: r });
    const outErr = (A: Float32Array, B: Float32Array) => {
      let s = 0;
      for (let t = 0; t < rows; t++)
        for (let n = 0; n < N; n++) {
          let d = 0;
          for (let k = 0; k < K; k++) {
            let ba = 0;
            for (let j = 0; j < r; j++) ba += B[n * r + j] * A[j * K + k];
            d += x[t * K + k] * (E[n * K + k] - ba);
          }
          s += d * d;
        }
      return Math.sqrt(s / rows);
    };
    expect(outErr(res.loraA, res.loraB)).toBeCloseTo(res.error, 3);
    expect(outErr(res.loraA, res.loraB)).toBeLessThan(outErr(plain.loraA, plain.loraB));
    // the weighted error is the best rank-r error of E·L, L the Cholesky factor of XᵀX/n
    const H = new Float64Array(K * K);
    for (let t = 0; t < rows; t++)
      for (let i = 0; i < K; i++)
        for (let j = 0; j < K; j++) H[i * K + j] += (x[t * K + i] * x[t * K + j]) / rows;
    // E·L has the singular values of (E·H·Eᵀ)^(1/2): compare via ‖E·L‖ spectrum = sqrt(eig(E H Eᵀ))
    const EHE = new Float64Array(N * N);
    for (let a = 0; a < N; a++)
      for (let b = 0; b < N; b++) {
        let d = 0;
        for (let i = 0; i < K; i++)
          for (let j = 0; j < K; j++) d += E[a * K + i] * H[i * K + j] * E[b * K + j];
        EHE[a * N + b] = d;
      }
    const ev = Array.from(symmetricEigen(EHE, N).values);
    const best = Math.sqrt(ev.slice(r).reduce((s, v) => s + Math.max(v, 0), 0));
    expect(res.error).toBeCloseTo(best, 3);
  });

  it("diagonal weighting also lowers the weighted error", () => {
    const rows = 32;
    const x = randMatrix(rows * K, 5);
    const res = svdInit(W, What, N, K, { rank: 2, calib: { x, rows }, weighting: "diagonal" });
    expect(res.error).toBeLessThan(res.zeroError);
  });

  it("names bad input", () => {
    expect(() => svdInit(W, What.subarray(1), N, K, { rank: 2 })).toThrow(/need N×K/);
    expect(() => svdInit(W, What, N, K, { rank: 2, scaling: 0 })).toThrow(/scaling/);
    expect(() => svdInit(W, What, N, K, { rank: 2, calib: { x: new Float32Array(3), rows: 2 } })).toThrow(
      /calib/,
    );
  });
});
