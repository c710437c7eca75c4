// Float64 dense linear algebra GPTQ needs: the upper Cholesky factor of an inverse.
// Both O(n³) steps are blocked (panels of NB columns) so the inner loops run on cache-resident rows.

const NB = 64;

/**
 * In-place lower Cholesky `A = L·Lᵀ` of a symmetric n×n row-major matrix (only the lower triangle is
 * read; the strict upper triangle is left as is). Right-looking, blocked by `nb` columns:
 * ```
 * for each panel [k0, k1):
 *   factor A[k0:k1, k0:k1]:  L[i,j] = (A[i,j] − Σ_{k0≤p<j} L[i,p]·L[j,p]) / L[j,j],  L[j,j] = √(…)
 *   solve the rows below:    L[i, k0:k1] for i ≥ k1 (same formula)
 *   update the rest:         A[i,j] −= Σ_{k0≤p<k1} L[i,p]·L[j,p]   for k1 ≤ j ≤ i
 * ```
 * Returns false (leaving A partly overwritten) when a pivot is not positive: A is not positive definite.
 */
export function choleskyLowerInPlace(A: Float64Array, n: number, nb = NB): boolean {
  for (let k0 = 0; k0 < n; k0 += nb) {
    const k1 = Math.min(n, k0 + nb);
    for (let i = k0; i < n; i++) {
      const ri = i * n;
      const jEnd = Math.min(i, k1 - 1);
      for (let j = k0; j <= jEnd; j++) {
        const rj = j * n;
        let s = A[ri + j];
        for (let p = k0; p < j; p++) s -= A[ri + p] * A[rj + p];
        if (i === j) {
          if (!(s > 0) || !Number.isFinite(s)) return false;
          A[ri + i] = Math.sqrt(s);
        } else {
          A[ri + j] = s / A[rj + j];
        }
      }
    }
    // Trailing update, 2×2 blocks of (i, j) pairs over the panel columns.
    for (let i = k1; i < n; i += 2) {
      const r0 = i * n;
      const two = i + 1 < n;
      const r1 = r0 + n;
      for (let j = k1; j <= i; j += 2) {
        const c0 = j * n;
        const c1 = c0 + n;
        const jj = j + 1 <= i; // (i, j+1) is in the lower triangle; (i+1, j+1) then too
        let s00 = 0;
        let s01 = 0;
        let s10 = 0;
        let s11 = 0;
        if (two && jj) {
          for (let p = k0; p < k1; p++) {
            const a0 = A[r0 + p];
            const a1 = A[r1 + p];
            const b0 = A[c0 + p];
            const b1 = A[c1 + p];
            s00 += a0 * b0;
            s01 += a0 * b1;
            s10 += a1 * b0;
            s11 += a1 * b1;
          }
          A[r0 + j] -= s00;
          A[r0 + j + 1] -= s01;
          A[r1 + j] -= s10;
          A[r1 + j + 1] -= s11;
        } else {
          // Edge of the triangle: j = i (then (i+1, j+1) is the diagonal of row i+1) or i is the last row.
          for (let p = k0; p < k1; p++) {
            const a0 = A[r0 + p];
            const b0 = A[c0 + p];
            s00 += a0 * b0;
            if (jj) s01 += a0 * A[c1 + p];
            if (two) {
              const a1 = A[r1 + p];
              s10 += a1 * b0;
              s11 += a1 * A[c1 + p];
            }
          }
          A[r0 + j] -= s00;
          if (jj) A[r0 + j + 1] -= s01;
          if (two) {
            A[r1 + j] -= s10;
            A[r1 + j + 1] -= s11;
          }
        }
      }
    }
  }
  return true;
}

/**
 * `Yt = (L⁻¹)ᵀ` for a lower-triangular L with positive diagonal, i.e. `Yt[j, i] = L⁻¹[i, j]` (upper).
 * Column blocks of L⁻¹ (row blocks of Yt) share each row of L:
 * ```
 * Yt[j, j] = 1 / L[j, j];   Yt[j, i] = −(Σ_{j≤p<i} L[i, p]·Yt[j, p]) / L[i, i]   (i > j)
 * ```
 */
export function lowerInverseTransposed(L: Float64Array, n: number, Yt: Float64Array, nb = NB): void {
  Yt.fill(0, 0, n * n);
  for (let j0 = 0; j0 < n; j0 += nb) {
    const j1 = Math.min(n, j0 + nb);
    for (let i = j0; i < j1; i++) {
      const ri = i * n;
      Yt[ri + i] = 1 / L[ri + i];
      for (let j = j0; j < i; j++) {
        const rj = j * n;
        let s = 0;
        for (let p = j; p < i; p++) s += L[ri + p] * Yt[rj + p];
        Yt[rj + i] = -s / L[ri + i];
      }
    }
    // Rows i below the block: Yt[j, p] = 0 for p < j, so every j in the block can start at p = j0.
    for (let i = j1; i < n; i++) {
      const ri = i * n;
      const d = L[ri + i];
      let j = j0;
      for (; j + 3 < j1; j += 4) {
        const y0 = j * n;
        const y1 = y0 + n;
        const y2 = y1 + n;
        const y3 = y2 + n;
        let s0 = 0;
        let s1 = 0;
        let s2 = 0;
        let s3 = 0;
        for (let p = j0; p < i; p++) {
          const l = L[ri + p];
          s0 += l * Yt[y0 + p];
          s1 += l * Yt[y1 + p];
          s2 += l * Yt[y2 + p];
          s3 += l * Yt[y3 + p];
        }
        Yt[y0 + i] = -s0 / d;
        Yt[y1 + i] = -s1 / d;
        Yt[y2 + i] = -s2 / d;
        Yt[y3 + i] = -s3 / d;
      }
      for (; j < j1; j++) {
        const y0 = j * n;
        let s = 0;
        for (let p = j0; p < i; p++) s += L[ri + p] * Yt[y0 + p];
        Yt[y0 + i] = -s / d;
      }
    }
  }
}

/**
 * The upper-triangular `U` with `A⁻¹ = Uᵀ·U` (what GPTQ calls "Cholesky of H⁻¹, upper"), without
 * forming `A⁻¹`: with `J` the reversal permutation, `J·A·J = L·Lᵀ` gives `A⁻¹ = (J L⁻ᵀ J)(J L⁻¹ J)`,
 * and `J·L⁻¹·J` is upper triangular with a positive diagonal, so it is `U`. Cost ≈ n³/3 multiply-adds.
 *
 * `get(i, j)` supplies `A[i, j]` (lets the caller permute, damp or repair A without a copy). Writes U
 * (zeros below the diagonal) into `out` (n×n) using `work` (n×n) as scratch. Returns false when A is
 * not positive definite.
 */
export function upperCholeskyOfInverse(
  get: (i: number, j: number) => number,
  n: number,
  out: Float64Array,
  work: Float64Array,
  nb = NB,
): boolean {
  const L = work;
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) L[i * n + j] = get(n - 1 - i, n - 1 - j);
  }
  if (!choleskyLowerInPlace(L, n, nb)) return false;
  const Yt = out;
  lowerInverseTransposed(L, n, Yt, nb);
  // U[a, b] = L⁻¹[n−1−a, n−1−b] = Yt[n−1−b, n−1−a] for a ≤ b: reverse both axes of Yt, then transpose.
  const total = n * n;
  for (let t = 0; t < total >>> 1; t++) {
    const u = total - 1 - t;
    const v = Yt[t];
    Yt[t] = Yt[u];
    Yt[u] = v;
  }
  for (let a = 0; a < n; a++) {
    for (let b = a + 1; b < n; b++) {
      out[a * n + b] = out[b * n + a];
      out[b * n + a] = 0;
    }
  }
  return true;
}
