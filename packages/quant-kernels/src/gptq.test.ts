import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { choleskyLowerInPlace, upperCholeskyOfInverse } from "./cholesky";
import { getFormat } from "./formats/registry";
import { createGptqQuantizer, gptqQuantize, gptqQuantizeWithInfo } from "./gptq";
import { createHessian } from "./hessian";
import { relativeOutputError } from "./output-error";
import { createReferenceBackend } from "./reference/backend";
import { referenceDequantize } from "./reference/dequantize";
import type { Quantizer } from "./quantizer";
import { createRtnQuantizer, rtnQuantize } from "./rtn";
import { gaussian, makeRng, randomWeights } from "./testing/random";

/** Correlated activations: rows of Z·M + noise, with per-column scales spanning 30× (like LLM inputs). */
function correlatedActivations(rows: number, K: number, seed: number, rank = 8): Float32Array {
  const rng = makeRng(seed);
  const M = Float64Array.from({ length: rank * K }, () => gaussian(rng));
  const colScale = Float64Array.from({ length: K }, () => 0.2 + 6 * rng() ** 3);
  const x = new Float32Array(rows * K);
  for (let r = 0; r < rows; r++) {
    const z = Array.from({ length: rank }, () => gaussian(rng));
    for (let k = 0; k < K; k++) {
      let s = 0.1 * gaussian(rng);
      for (let i = 0; i < rank; i++) s += z[i] * M[i * K + k];
      x[r * K + k] = s * colScale[k];
    }
  }
  return x;
}

function hessianOf(x: Float32Array, rows: number, K: number) {
  const h = createHessian(K);
  h.add(x, rows);
  return h;
}

/** Dense float64 inverse (Gauss–Jordan with partial pivoting), for the test oracle only. */
function inverse(A: Float64Array, n: number): Float64Array {
  const a = A.slice();
  const inv = new Float64Array(n * n);
  for (let i = 0; i < n; i++) inv[i * n + i] = 1;
  for (let c = 0; c < n; c++) {
    let p = c;
    for (let r = c + 1; r < n; r++) if (Math.abs(a[r * n + c]) > Math.abs(a[p * n + c])) p = r;
    for (let k = 0; k < n; k++) {
      [a[c * n + k], a[p * n + k]] = [a[p * n + k], a[c * n + k]];
      [inv[c * n + k], inv[p * n + k]] = [inv[p * n + k], inv[c * n + k]];
    }
    const d = a[c * n + c];
    for (let k = 0; k < n; k++) {
      a[c * n + k] /= d;
      inv[c * n + k] /= d;
    }
    for (let r = 0; r < n; r++) {
      if (r === c) continue;
      const m = a[r * n + c];
      for (let k = 0; k < n; k++) {
        a[r * n + k] -= m * a[c * n + k];
        inv[r * n + k] -= m * inv[c * n + k];
      }
    }
  }
  return inv;
}

/**
 * Optimal Brain Quantization column by column with an explicit inverse (the slow algorithm GPTQ
 * reorganises): quantize column j, spread its error over later columns through H⁻¹, then remove j from
 * H⁻¹ by one Gaussian elimination step. Group parameters at group starts, from the updated weights.
 */
function naiveObq(W: Float32Array, N: number, K: number, formatName: string, H: Float64Array, damp: number) {
  const f = getFormat(formatName);
  const G = f.groupSize === -1 ? K : f.groupSize;
  const Hd = H.slice();
  let mean = 0;
  for (let k = 0; k < K; k++) mean += H[k * K + k] / K;
  for (let k = 0; k < K; k++) Hd[k * K + k] += damp * mean;
  const Hinv = inverse(Hd, K);
  const w = Float64Array.from(W);
  const out = new Float32Array(N * K);
  const params = Array.from({ length: N }, () => ({ scale: 1, zero: 0 }));
  for (let j = 0; j < K; j++) {
    if (j % G === 0) {
      for (let n = 0; n < N; n++) {
        let lo = Number.POSITIVE_INFINITY;
        let hi = Number.NEGATIVE_INFINITY;
        for (let k = j; k < Math.min(K, j + G); k++) {
          const v = Math.fround(w[n * K + k]);
          lo = Math.min(lo, v);
          hi = Math.max(hi, v);
        }
        params[n] = f.params(lo, hi);
      }
    }
    const d = Hinv[j * K + j];
    for (let n = 0; n < N; n++) {
      const { scale, zero } = params[n];
      const v = Math.fround(w[n * K + j]);
      const dq = f.value(f.code(v, scale, zero), scale, zero);
      out[n * K + j] = dq;
      const e = (v - dq) / d;
      for (let k = j + 1; k < K; k++) w[n * K + k] -= e * Hinv[j * K + k];
    }
    const row = Hinv.slice(j * K, j * K + K);
    for (let a = 0; a < K; a++) {
      const c = Hinv[a * K + j] / d;
      for (let b = 0; b < K; b++) Hinv[a * K + b] -= c * row[b];
    }
  }
  return out;
}

function randomSpd(n: number, seed: number): Float64Array {
  const x = randomWeights(3 * n * n, seed, 1, 0);
  const A = new Float64Array(n * n);
  for (let r = 0; r < 3 * n; r++)
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) A[i * n + j] += x[r * n + i] * x[r * n + j];
  for (let i = 0; i < n; i++) A[i * n + i] += 0.1;
  return A;
}

describe("blocked Cholesky helpers", () => {
  it("choleskyLowerInPlace: L·Lᵀ = A for every panel width (property)", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 41 }),
        fc.integer({ min: 1, max: 9 }),
        fc.integer({ min: 0, max: 1e9 }),
        (n, nb, seed) => {
          const A = randomSpd(n, seed);
          const L = A.slice();
          expect(choleskyLowerInPlace(L, n, nb)).toBe(true);
          for (let i = 0; i < n; i++) {
            for (let j = 0; j <= i; j++) {
              let s = 0;
              for (let p = 0; p <= j; p++) s += L[i * n + p] * L[j * n + p];
              expect(Math.abs(s - A[i * n + j])).toBeLessThan(1e-9 * (1 + Math.abs(A[i * n + j])));
            }
          }
        },
      ),
      { seed: 42, numRuns: 40 },
    );
  });

  it("upperCholeskyOfInverse: upper U with Uᵀ·U·A = I for every panel width (property)", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 41 }),
        fc.integer({ min: 1, max: 9 }),
        fc.integer({ min: 0, max: 1e9 }),
        (n, nb, seed) => {
          const A = randomSpd(n, seed);
          const U = new Float64Array(n * n);
          expect(upperCholeskyOfInverse((i, j) => A[i * n + j], n, U, new Float64Array(n * n), nb)).toBe(
            true,
          );
          for (let i = 0; i < n; i++) {
            expect(U[i * n + i]).toBeGreaterThan(0);
            for (let j = 0; j < i; j++) expect(U[i * n + j]).toBe(0);
          }
          const UtU = new Float64Array(n * n);
          for (let i = 0; i < n; i++)
            for (let k = 0; k < n; k++) {
              let uu = 0;
              for (let p = 0; p < n; p++) uu += U[p * n + i] * U[p * n + k];
              UtU[i * n + k] = uu;
            }
          for (let i = 0; i < n; i++) {
            for (let j = 0; j < n; j++) {
              let s = 0;
              for (let k = 0; k < n; k++) s += UtU[i * n + k] * A[k * n + j];
              expect(Math.abs(s - (i === j ? 1 : 0))).toBeLessThan(1e-8);
            }
          }
        },
      ),
      { seed: 42, numRuns: 40 },
    );
  });

  it("returns false for an indefinite matrix", () => {
    const A = new Float64Array([1, 2, 2, 1]);
    expect(upperCholeskyOfInverse((i, j) => A[i * 2 + j], 2, new Float64Array(4), new Float64Array(4))).toBe(
      false,
    );
  });
});

describe("gptqQuantize", () => {
  const N = 24;
  const K = 150; // not a multiple of 32/64/128: every grouped format has a tail group
  const rows = 600;
  const W = randomWeights(N * K, 7, 0.05, 0.02);
  const X = correlatedActivations(rows, K, 11);
  const h = hessianOf(X, rows, K);

  it("matches column-by-column OBQ with an explicit inverse (lazy block updates are exact)", () => {
    for (const name of ["int4-pc-asym-f32", "int3-g32-sym-f32", "int2-g64-asym-f16"]) {
      const want = naiveObq(W, N, K, name, h.matrix(), 0.01);
      for (const blockSize of [1, 16, 128, 1000]) {
        const q = gptqQuantize(W, N, K, name, h, { blockSize });
        const got = new Float32Array(N * K);
        referenceDequantize(q, got);
        let mismatches = 0;
        for (let i = 0; i < N * K; i++) if (Math.abs(got[i] - want[i]) > 1e-6) mismatches++;
        // Float32 vs float64 updates may flip a rounding tie now and then; nothing more.
        expect(mismatches, `${name} blockSize ${blockSize}`).toBeLessThanOrEqual(Math.ceil(0.005 * N * K));
      }
    }
  });

  it("beats RTN on output error ‖XWᵀ − XŴᵀ‖ for every bit width, with and without act-order", () => {
    for (const name of [
      "int2-g32-asym-f16",
      "int3-g64-sym-f32",
      "int4-g128-asym-f16",
      "int8-pc-sym-f16",
      "int4-pc-asym-f32",
    ]) {
      const rtn = relativeOutputError(X, rows, W, rtnQuantize(W, N, K, name));
      for (const actOrder of [false, true]) {
        const gptq = relativeOutputError(X, rows, W, gptqQuantize(W, N, K, name, h, { actOrder }));
        expect(gptq, `${name} actOrder ${actOrder}: GPTQ ${gptq} vs RTN ${rtn}`).toBeLessThan(rtn);
      }
    }
  });

  it("act-order stores gIdx in decreasing-diagonal order; static groups store none", () => {
    const { q, info } = gptqQuantizeWithInfo(W, N, K, "int4-g32-asym-f16", h, { actOrder: true });
    expect(q.gIdx).toBeDefined();
    const H = h.matrix();
    for (let j = 1; j < K; j++)
      expect(H[info.perm[j - 1] * (K + 1)]).toBeGreaterThanOrEqual(H[info.perm[j] * (K + 1)]);
    for (let j = 0; j < K; j++) expect(q.gIdx![info.perm[j]]).toBe(Math.floor(j / 32));
    const st = gptqQuantize(W, N, K, "int4-g32-asym-f16", h, { actOrder: true, staticGroups: true });
    expect(st.gIdx).toBeUndefined();
    const rtn = relativeOutputError(X, rows, W, rtnQuantize(W, N, K, "int4-g32-asym-f16"));
    expect(relativeOutputError(X, rows, W, st)).toBeLessThan(rtn);
  });

  it("handles dead input columns: counts them and quantizes their weights to 0", () => {
    const Xd = X.slice();
    for (let r = 0; r < rows; r++) {
      Xd[r * K + 3] = 0;
      Xd[r * K + 100] = 0;
    }
    const { q, info } = gptqQuantizeWithInfo(W, N, K, "int3-g64-asym-f16", hessianOf(Xd, rows, K), {
      actOrder: true,
    });
    expect(info.deadColumns).toBe(2);
    const What = new Float32Array(N * K);
    referenceDequantize(q, What);
    for (let n = 0; n < N; n++) {
      expect(What[n * K + 3]).toBe(0);
      expect(What[n * K + 100]).toBe(0);
    }
    expect(relativeOutputError(Xd, rows, W, q)).toBeLessThan(
      relativeOutputError(Xd, rows, W, rtnQuantize(W, N, K, "int3-g64-asym-f16")),
    );
  });

  it("retries with more dampening, then fails with a clear error on an indefinite H", () => {
    const w = new Float32Array([0.1, -0.2, 0.3, 0.05]);
    const rescued = gptqQuantizeWithInfo(w, 2, 2, "int4-pc-asym-f32", new Float64Array([1, 1.02, 1.02, 1]));
    expect(rescued.info.percDamp).toBeCloseTo(0.1, 12);
    expect(() => gptqQuantize(w, 2, 2, "int4-pc-asym-f32", new Float64Array([1, 100, 100, 1]))).toThrow(
      /not positive definite/,
    );
  });

  it("uses a backend's sgemm for the trailing update with the same result", () => {
    const a = gptqQuantize(W, N, K, "int4-g32-asym-f16", h, { blockSize: 32 });
    const b = gptqQuantize(W, N, K, "int4-g32-asym-f16", h, {
      blockSize: 32,
      backend: createReferenceBackend(),
    });
    const ea = relativeOutputError(X, rows, W, a);
    expect(Math.abs(relativeOutputError(X, rows, W, b) - ea)).toBeLessThan(0.02 * ea);
  });

  it("RTN and GPTQ are swappable behind the Quantizer interface", () => {
    const quantizers: Quantizer[] = [
      createRtnQuantizer(),
      createRtnQuantizer({ mseClip: true }),
      createGptqQuantizer({ actOrder: true }),
    ];
    const errs = quantizers.map((qz) =>
      relativeOutputError(X, rows, W, qz.quantize(W, N, K, "int3-g32-asym-f16", { hessian: h })),
    );
    expect(quantizers.map((qz) => qz.name)).toEqual(["rtn", "rtn-mse", "gptq"]);
    expect(errs[2]).toBeLessThan(errs[0]);
    expect(() => createGptqQuantizer().quantize(W, N, K, "int3-g32-asym-f16")).toThrow(/needs opts.hessian/);
  });

  it("rejects bad input with errors naming the problem", () => {
    expect(() => gptqQuantize(W, N, K + 1, "int4-g32-asym-f16", h)).toThrow(/N×K/);
    expect(() => gptqQuantize(randomWeights(N * (K - 1), 1), N, K - 1, "int4-g32-asym-f16", h)).toThrow(
      /K = 150/,
    );
    const bad = W.slice();
    bad[5] = Number.NaN;
    expect(() => gptqQuantize(bad, N, K, "int4-g32-asym-f16", h)).toThrow(/weight\[5\]/);
    const Hn = h.matrix();
    Hn[7] = Number.POSITIVE_INFINITY;
    expect(() => gptqQuantize(W, N, K, "int4-g32-asym-f16", Hn)).toThrow(/not finite/);
    expect(() => gptqQuantize(W, N, K, "int4-g32-asym-f16", h, { blockSize: 0 })).toThrow(/blockSize/);
  });
});
