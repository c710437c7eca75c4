// Adapter initialisation from the quantization error: a truncated SVD of W − Ŵ (optionally weighted
// by calibration activations), by randomized subspace iteration over the backend's sgemm.
import { type Backend, createReferenceBackend } from "@int21/quant-kernels";

/**
 * Eigen-decomposition of a symmetric `n×n` matrix (row-major, float64) by cyclic Jacobi rotations.
 * Returns eigenvalues in decreasing order and the matching eigenvectors as columns of `vectors` (`n×n`).
 * `a` is not modified.
 */
export function symmetricEigen(a: Float64Array, n: number): { values: Float64Array; vectors: Float64Array } {
  if (a.length !== n * n)
    throw new Error(`lrec: symmetricEigen: matrix has ${a.length} values, need ${n}×${n}`);
  const A = Float64Array.from(a);
  const Vm = new Float64Array(n * n);
  for (let i = 0; i < n; i++) Vm[i * n + i] = 1;
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    let diag = 0;
    for (let i = 0; i < n; i++) {
      diag += A[i * n + i] * A[i * n + i];
      for (let j = i + 1; j < n; j++) off += A[i * n + j] * A[i * n + j];
    }
    if (off <= 1e-30 * Math.max(diag, 1e-300)) break;
    for (let p = 0; p < n; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = A[p * n + q];
        if (apq === 0) continue;
        const theta = (A[q * n + q] - A[p * n + p]) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let k = 0; k < n; k++) {
          const akp = A[k * n + p];
          const akq = A[k * n + q];
          A[k * n + p] = c * akp - s * akq;
          A[k * n + q] = s * akp + c * akq;
        }
        for (let k = 0; k < n; k++) {
          const apk = A[p * n + k];
          const aqk = A[q * n + k];
          A[p * n + k] = c * apk - s * aqk;
          A[q * n + k] = s * apk + c * aqk;
        }
        for (let k = 0; k < n; k++) {
          const vkp = Vm[k * n + p];
          const vkq = Vm[k * n + q];
          Vm[k * n + p] = c * vkp - s * vkq;
          Vm[k * n + q] = s * vkp + c * vkq;
        }
      }
    }
  }
  const order = Array.from({ length: n }, (_, i) => i).sort((i, j) => A[j * n + j] - A[i * n + i]);
  const values = new Float64Array(n);
  const vectors = new Float64Array(n * n);
  order.forEach((src, dst) => {
    values[dst] = A[src * n + src];
    for (let k = 0; k < n; k++) vectors[k * n + dst] = Vm[k * n + src];
  });
  return { values, vectors };
}

/** Orthonormalises the `cols` columns of `Y` (`rows×cols`, float64, row-major) in place (Gram–Schmidt, twice). */
function orthonormalize(Y: Float64Array, rows: number, cols: number): void {
  for (let j = 0; j < cols; j++) {
    for (let pass = 0; pass < 2; pass++) {
      for (let i = 0; i < j; i++) {
        let d = 0;
        for (let r = 0; r < rows; r++) d += Y[r * cols + i] * Y[r * cols + j];
        for (let r = 0; r < rows; r++) Y[r * cols + j] -= d * Y[r * cols + i];
      }
    }
    let nrm = 0;
    for (let r = 0; r < rows; r++) nrm += Y[r * cols + j] ** 2;
    nrm = Math.sqrt(nrm);
    // a rank-deficient direction: leave a zero column (it gets a zero singular value)
    for (let r = 0; r < rows; r++) Y[r * cols + j] = nrm > 1e-300 ? Y[r * cols + j] / nrm : 0;
  }
}

/** Options of {@link truncatedSvd}. */
export interface TruncatedSvdOptions {
  /** Extra subspace columns beyond the rank. Default 8. */
  oversample?: number;
  /** Power (subspace) iterations. Default 6. */
  iterations?: number;
  /** Seed of the random start. Default 0. */
  seed?: number;
  /** Backend whose `sgemm` runs the products with the matrix. Default a reference backend. */
  backend?: Backend;
}

/** A rank-r factorisation `M ≈ U · diag(s) · Vᵀ`. */
export interface Svd {
  rank: number;
  /** `[rows × rank]`, orthonormal columns. */
  u: Float64Array;
  /** Singular values, decreasing. */
  s: Float64Array;
  /** `[cols × rank]`, orthonormal columns. */
  v: Float64Array;
}

function gaussian(seed: number): () => number {
  let a = seed >>> 0 || 0x9e3779b9;
  const uni = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) + 0.5) / 4294967296;
  };
  return () => Math.sqrt(-2 * Math.log(uni())) * Math.cos(2 * Math.PI * uni());
}

/**
 * The best rank-`rank` approximation of `M` (`rows×cols`, row-major float32) by randomized subspace
 * iteration (Halko, Martinsson & Tropp 2011, alg. 4.4): `Y = M·Ω` for a Gaussian `Ω` of
 * `l = min(rank + oversample, rows, cols)` columns, then `iterations` rounds of `Y ← M·orth(Mᵀ·orth(Y))`;
 * `Q = orth(Y)`, `B = Qᵀ·M` (`l×cols`), and the SVD of the small `B` from the eigen-decomposition of
 * `B·Bᵀ` (Jacobi). Products with `M` go through `backend.sgemm`; the small algebra is float64.
 */
export function truncatedSvd(
  M: Float32Array,
  rows: number,
  cols: number,
  rank: number,
  opts: TruncatedSvdOptions = {},
): Svd {
  if (M.length !== rows * cols)
    throw new Error(`lrec: truncatedSvd: matrix has ${M.length} values, need ${rows}×${cols}`);
  const maxRank = Math.min(rows, cols);
  if (!Number.isSafeInteger(rank) || rank < 1 || rank > maxRank)
    throw new Error(`lrec: truncatedSvd: rank must be an integer in [1, ${maxRank}], got ${rank}`);
  const backend = opts.backend ?? createReferenceBackend();
  const l = Math.min(rank + (opts.oversample ?? 8), maxRank);
  const rnd = gaussian(opts.seed ?? 0);
  const omega = new Float32Array(cols * l);
  for (let i = 0; i < omega.length; i++) omega[i] = rnd();
  const Y32 = new Float32Array(rows * l);
  const Z32 = new Float32Array(cols * l);
  backend.sgemm({ M: rows, N: l, K: cols, A: M, B: omega, C: Y32 });
  let Y = Float64Array.from(Y32);
  orthonormalize(Y, rows, l);
  const iters = opts.iterations ?? 6;
  for (let it = 0; it < iters; it++) {
    Y32.set(Y);
    backend.sgemm({ M: cols, N: l, K: rows, A: M, B: Y32, C: Z32, transA: true }); // Z = Mᵀ Q
    const Z = Float64Array.from(Z32);
    orthonormalize(Z, cols, l);
    Z32.set(Z);
    backend.sgemm({ M: rows, N: l, K: cols, A: M, B: Z32, C: Y32 }); // Y = M Z
    Y = Float64Array.from(Y32);
    orthonormalize(Y, rows, l);
  }
  // B = Qᵀ M  (l × cols), as Bᵀ = Mᵀ Q (cols × l)
  Y32.set(Y);
  backend.sgemm({ M: cols, N: l, K: rows, A: M, B: Y32, C: Z32, transA: true });
  const Bt = Float64Array.from(Z32);
  const G = new Float64Array(l * l);
  for (let i = 0; i < l; i++) {
    for (let j = i; j < l; j++) {
      let d = 0;
      for (let c = 0; c < cols; c++) d += Bt[c * l + i] * Bt[c * l + j];
      G[i * l + j] = d;
      G[j * l + i] = d;
    }
  }
  const { values, vectors } = symmetricEigen(G, l);
  const u = new Float64Array(rows * rank);
  const v = new Float64Array(cols * rank);
  const s = new Float64Array(rank);
  for (let j = 0; j < rank; j++) {
    const sigma = Math.sqrt(Math.max(values[j], 0));
    s[j] = sigma;
    for (let r = 0; r < rows; r++) {
      let d = 0;
      for (let i = 0; i < l; i++) d += Y[r * l + i] * vectors[i * l + j];
      u[r * rank + j] = d;
    }
    for (let c = 0; c < cols; c++) {
      let d = 0;
      for (let i = 0; i < l; i++) d += Bt[c * l + i] * vectors[i * l + j];
      v[c * rank + j] = sigma > 0 ? d / sigma : 0;
    }
  }
  return { rank, u, s, v };
}

/** Calibration inputs of one projection: `x` `[rows × K]`. */
export interface CalibInputs {
  x: Float32Array;
  rows: number;
}

/** Options of {@link svdInit}. */
export interface SvdInitOptions extends TruncatedSvdOptions {
  /** Adapter rank r. */
  rank: number;
  /** LoRA scaling α/r: the adapter adds `scaling · B·A`. Default 1. */
  scaling?: number;
  /** Activation weighting: inputs the projection sees (e.g. from {@link projectionInputs}). */
  calib?: CalibInputs;
  /** With `calib`: `cholesky` (default, exact) or `diagonal` (column scaling by √diag(XᵀX/n)). */
  weighting?: "cholesky" | "diagonal";
  /** Dampening added to the Hessian diagonal, as a fraction of its mean. Default 0.01. */
  damp?: number;
}

/** An adapter initialisation and its error. */
export interface SvdInitResult {
  /** `[r × K]`. */
  loraA: Float32Array;
  /** `[N × r]`. */
  loraB: Float32Array;
  /** ‖(W − Ŵ − scaling·B·A)·L‖_F, L = I without calibration, else the weighting factor (H = L·Lᵀ). */
  error: number;
  /** The same for a zero adapter: ‖(W − Ŵ)·L‖_F. */
  zeroError: number;
}

/**
 * Starts a LoRA adapter at the best rank-r correction of the quantization error `E = W − Ŵ`
 * (`[N × K]`, both row-major):
 * ```
 * without calib:  min ‖E − s·B·A‖_F              → s·B·A = U_r Σ_r V_rᵀ of E
 * with calib X:   min ‖X·(E − s·B·A)ᵀ‖_F = ‖(E − s·B·A)·L‖_F,  H = XᵀX/n + damp·mean(diag H)·I = L·Lᵀ
 *                 → s·B·A = [E·L]_r · L⁻¹        (exact with Cholesky L; `diagonal`: L = diag(√H_kk))
 * B = U_r·√Σ_r / √s,  A = √Σ_r·V_rᵀ·L⁻¹ / √s      (balanced factors)
 * ```
 * The activation-weighted form minimises the projection's output error on the calibration inputs
 * rather than the weight error.
 */
export function svdInit(
  W: Float32Array,
  What: Float32Array,
  N: number,
  K: number,
  opts: SvdInitOptions,
): SvdInitResult {
  if (W.length !== N * K || What.length !== N * K)
    throw new Error(`lrec: svdInit: W has ${W.length} and Ŵ ${What.length} values, need N×K = ${N}×${K}`);
  const scaling = opts.scaling ?? 1;
  if (!(scaling > 0) || !Number.isFinite(scaling))
    throw new Error(`lrec: svdInit: scaling must be finite and > 0, got ${scaling}`);
  const r = opts.rank;
  // L: K×K lower-triangular weighting factor (null = identity)
  let L: Float64Array | null = null;
  if (opts.calib) {
    const { x, rows } = opts.calib;
    if (!(rows >= 1) || x.length < rows * K)
      throw new Error(`lrec: svdInit: calib.x needs rows × K = ${rows}×${K} values, has ${x.length}`);
    const H = new Float64Array(K * K);
    for (let t = 0; t < rows; t++) {
      const o = t * K;
      for (let i = 0; i < K; i++) {
        const xi = x[o + i];
        if (xi === 0) continue;
        for (let j = 0; j <= i; j++) H[i * K + j] += xi * x[o + j];
      }
    }
    let mean = 0;
    for (let i = 0; i < K; i++) mean += H[i * K + i] / rows;
    mean /= K;
    const damp = (opts.damp ?? 0.01) * (mean > 0 ? mean : 1);
    for (let i = 0; i < K; i++) for (let j = 0; j <= i; j++) H[i * K + j] /= rows;
    for (let i = 0; i < K; i++) H[i * K + i] += damp;
    L = new Float64Array(K * K);
    if ((opts.weighting ?? "cholesky") === "diagonal") {
      for (let i = 0; i < K; i++) L[i * K + i] = Math.sqrt(H[i * K + i]);
    } else {
      for (let j = 0; j < K; j++) {
        let d = H[j * K + j];
        for (let p = 0; p < j; p++) d -= L[j * K + p] ** 2;
        if (!(d > 0))
          throw new Error(`lrec: svdInit: calibration Hessian is not positive definite at column ${j}`);
        const ljj = Math.sqrt(d);
        L[j * K + j] = ljj;
        for (let i = j + 1; i < K; i++) {
          let v = H[i * K + j];
          for (let p = 0; p < j; p++) v -= L[i * K + p] * L[j * K + p];
          L[i * K + j] = v / ljj;
        }
      }
    }
  }
  // E' = (W − Ŵ)·L
  const E = new Float64Array(N * K);
  for (let i = 0; i < N * K; i++) E[i] = W[i] - What[i];
  const Ew = new Float32Array(N * K);
  if (L) {
    for (let n = 0; n < N; n++) {
      for (let k = 0; k < K; k++) {
        let d = 0;
        for (let i = k; i < K; i++) d += E[n * K + i] * L[i * K + k];
        Ew[n * K + k] = d;
      }
    }
  } else Ew.set(E);
  let zero = 0;
  for (let i = 0; i < Ew.length; i++) zero += Ew[i] * Ew[i];
  const svd = truncatedSvd(Ew, N, K, r, opts);
  const rs = Math.sqrt(scaling);
  const loraB = new Float32Array(N * r);
  for (let n = 0; n < N; n++)
    for (let j = 0; j < r; j++) loraB[n * r + j] = (svd.u[n * r + j] * Math.sqrt(svd.s[j])) / rs;
  // C = √Σ Vᵀ (r × K); A = C · L⁻¹: solve A·L = C by back substitution (L lower triangular)
  const loraA = new Float32Array(r * K);
  const c = new Float64Array(K);
  for (let j = 0; j < r; j++) {
    for (let k = 0; k < K; k++) c[k] = svd.v[k * r + j] * Math.sqrt(svd.s[j]);
    if (L) {
      for (let k = K - 1; k >= 0; k--) {
        let v = c[k];
        for (let i = k + 1; i < K; i++) v -= c[i] * L[i * K + k];
        c[k] = v / L[k * K + k];
      }
    }
    for (let k = 0; k < K; k++) loraA[j * K + k] = c[k] / rs;
  }
  // residual in the same metric
  const R = new Float64Array(N * K);
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) {
      let d = 0;
      for (let j = 0; j < r; j++) d += loraB[n * r + j] * loraA[j * K + k];
      R[n * K + k] = E[n * K + k] - scaling * d;
    }
  }
  let err = 0;
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) {
      let d = 0;
      if (L) for (let i = k; i < K; i++) d += R[n * K + i] * L[i * K + k];
      else d = R[n * K + k];
      err += d * d;
    }
  }
  return { loraA, loraB, error: Math.sqrt(err), zeroError: Math.sqrt(zero) };
}
