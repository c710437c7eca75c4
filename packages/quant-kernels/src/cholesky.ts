// Float64 dense linear algebra GPTQ needs: the upper Cholesky factor of an inverse.

/**
 * In-place lower Cholesky `A = L·Lᵀ` of a symmetric n×n row-major matrix (only the lower triangle is
 * read; the strict upper triangle is left as is). Cholesky–Banachiewicz order, so every inner loop is a
 * dot product of two contiguous rows:
 * ```
 * for i, j ≤ i: s = A[i,j] − Σ_{p<j} L[i,p]·L[j,p];  L[i,i] = √s;  L[i,j] = s / L[j,j]
 * ```
 * Returns false (leaving A partly overwritten) when a pivot is not positive: A is not positive definite.
 */
export function choleskyLowerInPlace(A: Float64Array, n: number): boolean {
  for (let i = 0; i < n; i++) {
    const ri = i * n;
    for (let j = 0; j <= i; j++) {
      const rj = j * n;
      let s0 = A[ri + j];
      let s1 = 0;
      let s2 = 0;
      let s3 = 0;
      let p = 0;
      for (; p + 3 < j; p += 4) {
        s0 -= A[ri + p] * A[rj + p];
        s1 -= A[ri + p + 1] * A[rj + p + 1];
        s2 -= A[ri + p + 2] * A[rj + p + 2];
        s3 -= A[ri + p + 3] * A[rj + p + 3];
      }
      for (; p < j; p++) s0 -= A[ri + p] * A[rj + p];
      const s = s0 + s1 + s2 + s3;
      if (i === j) {
        if (!(s > 0) || !Number.isFinite(s)) return false;
        A[ri + i] = Math.sqrt(s);
      } else {
        A[ri + j] = s / A[rj + j];
      }
    }
  }
  return true;
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
): boolean {
  const L = work;
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) L[i * n + j] = get(n - 1 - i, n - 1 - j);
  }
  if (!choleskyLowerInPlace(L, n)) return false;
  // Y = L⁻¹ stored transposed (Yt[j, i] = Y[i, j], i ≥ j), so both operands of each dot are rows:
  // Y[i, j] = −(Σ_{p=j}^{i−1} L[i, p]·Y[p, j]) / L[i, i],  Y[j, j] = 1 / L[j, j].
  const Yt = out;
  Yt.fill(0);
  for (let j = 0; j < n; j++) {
    const rj = j * n;
    Yt[rj + j] = 1 / L[rj + j];
    for (let i = j + 1; i < n; i++) {
      const ri = i * n;
      let s0 = 0;
      let s1 = 0;
      let p = j;
      for (; p + 1 < i; p += 2) {
        s0 += L[ri + p] * Yt[rj + p];
        s1 += L[ri + p + 1] * Yt[rj + p + 1];
      }
      if (p < i) s0 += L[ri + p] * Yt[rj + p];
      Yt[rj + i] = -(s0 + s1) / L[ri + i];
    }
  }
  // U[a, b] = Y[n−1−a, n−1−b] = Yt[n−1−b, n−1−a] for a ≤ b: reverse both axes of Yt, in place.
  const total = n * n;
  for (let t = 0; t < total >>> 1; t++) {
    const u = total - 1 - t;
    const v = Yt[t];
    Yt[t] = Yt[u];
    Yt[u] = v;
  }
  // Yt is upper (Yt[j, i] nonzero for i ≥ j); reversing both axes makes it lower: transpose to upper.
  for (let a = 0; a < n; a++) {
    for (let b = a + 1; b < n; b++) {
      out[a * n + b] = out[b * n + a];
      out[b * n + a] = 0;
    }
  }
  return true;
}
