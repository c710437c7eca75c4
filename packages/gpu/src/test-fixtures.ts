// Test-only helpers: random QuantizedLinear records built with bitpack, and the plain loops of the
// Backend contract (packages/quant-kernels/src/types.ts) that every backend here is compared against.
import { type Bits, packMatrix } from "@int21/bitpack";
import type { Backend, GemmArgs, QuantFormat, QuantizedLinear } from "@int21/quant-kernels";

/** Deterministic PRNG (mulberry32) so failures reproduce. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface LayerSpec {
  N: number;
  K: number;
  bits: Bits;
  /** 32, 64, 128 or -1 (per channel). */
  groupSize: number;
  symmetric?: boolean;
  /** Shuffled act-order group indices. */
  actOrder?: boolean;
  seed: number;
}

/** A random, valid QuantizedLinear (codes uniform in [0, 2^bits), scales in (0.01, 0.1]). */
export function randomLayer(s: LayerSpec): QuantizedLinear {
  const r = rng(s.seed);
  const format: QuantFormat = {
    id: 1000 + s.bits,
    name: `int${s.bits}-g${s.groupSize}-${s.symmetric ? "sym" : "asym"}-f32`,
    bits: s.bits,
    groupSize: s.groupSize,
    symmetric: !!s.symmetric,
    scaleDtype: "f32",
  };
  const G = s.groupSize === -1 ? 1 : Math.ceil(s.K / s.groupSize);
  const codes = new Uint8Array(s.N * s.K);
  for (let i = 0; i < codes.length; i++) codes[i] = Math.floor(r() * 2 ** s.bits);
  const scales = new Float32Array(s.N * G);
  const zeros = new Float32Array(s.N * G);
  for (let i = 0; i < scales.length; i++) {
    scales[i] = 0.01 + 0.09 * r();
    zeros[i] = s.symmetric ? 2 ** (s.bits - 1) : Math.floor(r() * 2 ** s.bits);
  }
  let gIdx: Int32Array | undefined;
  if (s.actOrder) {
    gIdx = new Int32Array(s.K);
    for (let k = 0; k < s.K; k++) gIdx[k] = s.groupSize === -1 ? 0 : Math.floor(k / s.groupSize);
    for (let k = s.K - 1; k > 0; k--) {
      const j = Math.floor(r() * (k + 1));
      const t = gIdx[k];
      gIdx[k] = gIdx[j];
      gIdx[j] = t;
    }
  }
  return {
    format,
    outFeatures: s.N,
    inFeatures: s.K,
    qweight: packMatrix(codes, s.N, s.K, s.bits),
    scales,
    zeros,
    gIdx,
  };
}

/** Uniform floats in [-1, 1). */
export function randomFloats(n: number, seed: number): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = 2 * r() - 1;
  return out;
}

/** `w[n, k]` of the contract, read straight from the packed words. */
export function weightAt(q: QuantizedLinear, n: number, k: number): number {
  const { bits, words, wordsPerRow } = q.qweight;
  const bit = k * bits;
  const s = bit & 31;
  const base = n * wordsPerRow + (bit >>> 5);
  let code = words[base] >>> s;
  if (s + bits > 32) code |= words[base + 1] << (32 - s);
  code &= (1 << bits) - 1;
  const G = q.format.groupSize === -1 ? 1 : Math.ceil(q.inFeatures / q.format.groupSize);
  const g = q.gIdx ? q.gIdx[k] : q.format.groupSize === -1 ? 0 : Math.floor(k / q.format.groupSize);
  return q.scales[n * G + g] * (code - q.zeros[n * G + g]);
}

/** `for n, k: out[n*K + k] = w[n, k]` in float64. */
export function refDequantize(q: QuantizedLinear): Float64Array {
  const out = new Float64Array(q.outFeatures * q.inFeatures);
  for (let n = 0; n < q.outFeatures; n++)
    for (let k = 0; k < q.inFeatures; k++) out[n * q.inFeatures + k] = weightAt(q, n, k);
  return out;
}

/** `for r, n: y[r*N + n] = Σ_k x[r*K + k] * w[n, k]` in float64. */
export function refQmatmul(x: Float32Array, rows: number, q: QuantizedLinear): Float64Array {
  const N = q.outFeatures;
  const K = q.inFeatures;
  const w = refDequantize(q);
  const y = new Float64Array(rows * N);
  for (let r = 0; r < rows; r++)
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += x[r * K + k] * w[n * K + k];
      y[r * N + n] = s;
    }
  return y;
}

/** `for r, k: dx[r*K + k] = Σ_n g[r*N + n] * w[n, k]` in float64. */
export function refQmatmulT(g: Float32Array, rows: number, q: QuantizedLinear): Float64Array {
  const N = q.outFeatures;
  const K = q.inFeatures;
  const w = refDequantize(q);
  const dx = new Float64Array(rows * K);
  for (let r = 0; r < rows; r++)
    for (let k = 0; k < K; k++) {
      let s = 0;
      for (let n = 0; n < N; n++) s += g[r * N + n] * w[n * K + k];
      dx[r * K + k] = s;
    }
  return dx;
}

/** The GemmArgs loop in float64, returning the whole new C array. */
export function refSgemm(a: GemmArgs): Float64Array {
  const { M, N, K, A, B } = a;
  const lda = a.lda ?? (a.transA ? M : K);
  const ldb = a.ldb ?? (a.transB ? K : N);
  const ldc = a.ldc ?? N;
  const ao = a.aOffset ?? 0;
  const bo = a.bOffset ?? 0;
  const co = a.cOffset ?? 0;
  const alpha = a.alpha ?? 1;
  const beta = a.beta ?? 0;
  const C = Float64Array.from(a.C);
  for (let m = 0; m < M; m++)
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) {
        const av = a.transA ? A[ao + k * lda + m] : A[ao + m * lda + k];
        const bv = a.transB ? B[bo + n * ldb + k] : B[bo + k * ldb + n];
        s += av * bv;
      }
      const ci = co + m * ldc + n;
      C[ci] = alpha * s + (beta === 0 ? 0 : beta * a.C[ci]);
    }
  return C;
}

/**
 * Largest |got − want| relative to the scale of the dot products: `Σ |x|·|w|` bounds float32 rounding, so
 * the check is `|got − want| ≤ tol · (1 + mag)`. Returns the worst ratio (≤ 1 passes).
 */
export function worstError(got: ArrayLike<number>, want: ArrayLike<number>, tol: number): number {
  if (got.length !== want.length) throw new Error(`length ${got.length} vs ${want.length}`);
  let worst = 0;
  for (let i = 0; i < got.length; i++) {
    const g = got[i];
    if (!Number.isFinite(g)) return Number.POSITIVE_INFINITY;
    const e = Math.abs(g - want[i]) / (tol * (1 + Math.abs(want[i])));
    if (e > worst) worst = e;
  }
  return worst;
}

/**
 * The plain loops above as a synchronous {@link Backend} (test fallback). `calls` counts the kernel calls
 * it served, so a test can tell whether a GPU backend delegated.
 */
export function loopBackend(): Backend & { calls: number } {
  const b = {
    name: "test-loops",
    calls: 0,
    supports: () => true,
    sgemm(a: GemmArgs) {
      b.calls++;
      a.C.set(refSgemm(a));
    },
    dequantize(q: QuantizedLinear, out: Float32Array) {
      b.calls++;
      out.set(refDequantize(q));
    },
    qmatmul(x: Float32Array, rows: number, q: QuantizedLinear, y: Float32Array) {
      b.calls++;
      y.set(refQmatmul(x, rows, q));
    },
    qmatmulT(g: Float32Array, rows: number, q: QuantizedLinear, dx: Float32Array) {
      b.calls++;
      dx.set(refQmatmulT(g, rows, q));
    },
    dispose() {},
  };
  return b;
}
