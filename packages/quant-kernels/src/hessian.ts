// Calibration statistics for GPTQ: H = (2/n) Σ xᵀx over the n input rows a layer sees.
import type { Backend } from "./types";

/** A running Hessian accumulator over calibration activations of one layer (K inputs). */
export interface Hessian {
  /** K, the layer's input width. */
  readonly K: number;
  /** Rows (tokens) accumulated so far. */
  readonly count: number;
  /**
   * Accumulates `rows` activation rows `x[rows×K]` (row-major, e.g. one batch of tokens).
   * Throws on a wrong length or a non-finite value (naming the row and column).
   */
  add(x: Float32Array, rows: number): void;
  /** `H = (2/count) · Σ xᵀx` as a full symmetric K×K Float64Array (a new array). Throws when empty. */
  matrix(): Float64Array;
}

/** Options of {@link createHessian}. */
export interface HessianOptions {
  /**
   * Backend whose `sgemm` computes each chunk's `xᵀx` (float32 chunk products, summed in float64).
   * Without one, a float64 plain-TypeScript kernel does it.
   */
  backend?: Backend;
  /** Rows per chunk (default 64 for the TypeScript kernel, 1024 with a backend). */
  chunkRows?: number;
  /** Rows of H per backend `sgemm` call (default 256); each call covers only the upper block triangle. */
  panelRows?: number;
}

/**
 * Creates an empty accumulator. `S = Σ xᵀx` is kept unscaled in float64 (upper triangle); `matrix()`
 * returns `2S/n`, the Hessian of the layer-wise objective `‖XWᵀ − XŴᵀ‖²/n` (Frantar et al. 2022).
 * Memory: 8·K² bytes (+ 4·K² + 4·K·chunkRows with a backend, else 8·K·chunkRows scratch).
 */
export function createHessian(K: number, opts: HessianOptions = {}): Hessian {
  if (!Number.isSafeInteger(K) || K < 1)
    throw new Error(`quant-kernels: createHessian: K must be a positive integer, got ${K}`);
  const { backend } = opts;
  const T = opts.chunkRows ?? (backend ? 1024 : 64);
  if (!Number.isSafeInteger(T) || T < 1)
    throw new Error(`quant-kernels: createHessian: chunkRows must be a positive integer, got ${T}`);
  const S = new Float64Array(K * K);
  const Kp = K + (K & 1); // even, so the 2×2 kernel needs no edge case
  let xt: Float64Array | null = null;
  let c32: Float32Array | null = null;
  let count = 0;

  // S[i, j] += Σ_t x[t, i]·x[t, j] for j ≥ i, over rows [r0, r0+T) of x (float64, 2×2 register blocks).
  const addChunkTs = (x: Float32Array, r0: number, t: number): void => {
    if (xt === null) xt = new Float64Array(Kp * T);
    const X = xt;
    for (let tt = 0; tt < t; tt++) {
      const xr = (r0 + tt) * K;
      for (let i = 0; i < K; i++) X[i * t + tt] = x[xr + i];
    }
    if (Kp !== K) X.fill(0, K * t, Kp * t);
    for (let i = 0; i < Kp; i += 2) {
      const a0 = i * t;
      const a1 = a0 + t;
      for (let j = i; j < Kp; j += 2) {
        const b0 = j * t;
        const b1 = b0 + t;
        let s00 = 0;
        let s01 = 0;
        let s10 = 0;
        let s11 = 0;
        for (let p = 0; p < t; p++) {
          const x0 = X[a0 + p];
          const x1 = X[a1 + p];
          const y0 = X[b0 + p];
          const y1 = X[b1 + p];
          s00 += x0 * y0;
          s01 += x0 * y1;
          s10 += x1 * y0;
          s11 += x1 * y1;
        }
        S[i * K + j] += s00;
        if (j + 1 < K) S[i * K + j + 1] += s01;
        if (i + 1 < K) {
          S[(i + 1) * K + j] += s10;
          if (j + 1 < K) S[(i + 1) * K + j + 1] += s11;
        }
      }
    }
  };

  // With a backend: Xᵀ of the chunk (K × t), then the upper block triangle of Xᵀ·X as row panels
  // C[i0:i1, i0:K] = Xᵀ[i0:i1]·Xᵀ[i0:K]ᵀ in the weight layout (transB), about half the full product.
  const PANEL = opts.panelRows ?? 256;
  if (!Number.isSafeInteger(PANEL) || PANEL < 1) {
    throw new Error(`quant-kernels: createHessian: panelRows must be a positive integer, got ${PANEL}`);
  }
  let xt32: Float32Array | null = null;
  const addChunkBackend = (b: Backend, x: Float32Array, r0: number, t: number): void => {
    if (c32 === null) c32 = new Float32Array(K * K);
    if (xt32 === null) xt32 = new Float32Array(K * T);
    const XT = xt32;
    for (let tt = 0; tt < t; tt++) {
      const xr = (r0 + tt) * K;
      for (let i = 0; i < K; i++) XT[i * t + tt] = x[xr + i];
    }
    for (let i0 = 0; i0 < K; i0 += PANEL) {
      const rowsP = Math.min(PANEL, K - i0);
      b.sgemm({
        M: rowsP,
        N: K - i0,
        K: t,
        A: XT,
        aOffset: i0 * t,
        lda: t,
        B: XT,
        bOffset: i0 * t,
        ldb: t,
        transB: true,
        C: c32,
        cOffset: i0 * K + i0,
        ldc: K,
      });
    }
    for (let i = 0; i < K; i++) {
      for (let j = i; j < K; j++) S[i * K + j] += c32[i * K + j];
    }
  };

  return {
    K,
    get count() {
      return count;
    },
    add(x: Float32Array, rows: number): void {
      if (!(x instanceof Float32Array))
        throw new Error("quant-kernels: Hessian.add: x must be a Float32Array");
      if (!Number.isSafeInteger(rows) || rows < 0 || x.length !== rows * K) {
        throw new Error(
          `quant-kernels: Hessian.add: x has ${x.length} values, expected rows×K = ${rows}×${K}`,
        );
      }
      for (let i = 0; i < x.length; i++) {
        if (!Number.isFinite(x[i])) {
          throw new Error(
            `quant-kernels: Hessian.add: x[${i}] (row ${Math.floor(i / K)}, col ${i % K}) = ${x[i]} is not finite`,
          );
        }
      }
      for (let r0 = 0; r0 < rows; r0 += T) {
        const t = Math.min(T, rows - r0);
        if (backend) addChunkBackend(backend, x, r0, t);
        else addChunkTs(x, r0, t);
      }
      count += rows;
    },
    matrix(): Float64Array {
      if (count === 0) throw new Error("quant-kernels: Hessian.matrix: no calibration rows were added");
      const H = new Float64Array(K * K);
      const s = 2 / count;
      for (let i = 0; i < K; i++) {
        for (let j = i; j < K; j++) {
          const v = S[i * K + j] * s;
          H[i * K + j] = v;
          H[j * K + i] = v;
        }
      }
      return H;
    },
  };
}
