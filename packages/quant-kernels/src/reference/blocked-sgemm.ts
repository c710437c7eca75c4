// A cache-blocked plain-TypeScript sgemm: the benchmark baseline and the CPU fallback for big GEMMs.
import { resolveGemm } from "../check-args";
import type { GemmArgs } from "../types";

const JB = 512; // columns of C per tile
const IB = 32; // rows of C per tile
const PB = 256; // depth per tile

/**
 * Same contract and result as `referenceSgemm` (up to float32 rounding: it accumulates in C, in
 * float32), with loops reordered for the cache:
 * ```
 * C = beta·C (beta 0: C = 0)
 * B not transposed:  for tiles (j, i, p): for i, p: a = alpha·a(i,p); for j: C[i,j] += a·B[p,j]
 * B transposed:      for i, j: C[i,j] += alpha · Σ_p a(i,p)·B[j,p]   (2×2 blocks of dot products)
 * ```
 */
export function plainBlockedSgemm(args: GemmArgs): void {
  const { M, N, K, A, B, C, transA, transB, aOffset, bOffset, cOffset, lda, ldb, ldc, alpha, beta } =
    resolveGemm(args);
  for (let i = 0; i < M; i++) {
    const c0 = cOffset + i * ldc;
    if (beta === 0) C.fill(0, c0, c0 + N);
    else if (beta !== 1) for (let j = 0; j < N; j++) C[c0 + j] *= beta;
  }
  if (K === 0 || alpha === 0) return;
  if (!transB) {
    // axpy form: row i of C accumulates a(i,p) · row p of B.
    for (let j0 = 0; j0 < N; j0 += JB) {
      const j1 = Math.min(N, j0 + JB);
      for (let i0 = 0; i0 < M; i0 += IB) {
        const i1 = Math.min(M, i0 + IB);
        for (let p0 = 0; p0 < K; p0 += PB) {
          const p1 = Math.min(K, p0 + PB);
          for (let i = i0; i < i1; i++) {
            const cr = cOffset + i * ldc;
            for (let p = p0; p < p1; p++) {
              const a = alpha * (transA ? A[aOffset + p * lda + i] : A[aOffset + i * lda + p]);
              const br = bOffset + p * ldb;
              let j = j0;
              for (; j + 3 < j1; j += 4) {
                C[cr + j] += a * B[br + j];
                C[cr + j + 1] += a * B[br + j + 1];
                C[cr + j + 2] += a * B[br + j + 2];
                C[cr + j + 3] += a * B[br + j + 3];
              }
              for (; j < j1; j++) C[cr + j] += a * B[br + j];
            }
          }
        }
      }
    }
    return;
  }
  // B transposed (weight layout [N×K]): dot products of rows, 2×2 blocks of C when A is not
  // transposed (each loaded element feeds two products).
  let i = 0;
  if (!transA) {
    for (; i + 1 < M; i += 2) {
      const a0 = aOffset + i * lda;
      const a1 = a0 + lda;
      const c0 = cOffset + i * ldc;
      const c1 = c0 + ldc;
      let j = 0;
      for (; j + 1 < N; j += 2) {
        const b0 = bOffset + j * ldb;
        const b1 = b0 + ldb;
        let s00 = 0;
        let s01 = 0;
        let s10 = 0;
        let s11 = 0;
        for (let p = 0; p < K; p++) {
          const x0 = A[a0 + p];
          const x1 = A[a1 + p];
          const y0 = B[b0 + p];
          const y1 = B[b1 + p];
          s00 += x0 * y0;
          s01 += x0 * y1;
          s10 += x1 * y0;
          s11 += x1 * y1;
        }
        C[c0 + j] += alpha * s00;
        C[c0 + j + 1] += alpha * s01;
        C[c1 + j] += alpha * s10;
        C[c1 + j + 1] += alpha * s11;
      }
      if (j < N) {
        const b0 = bOffset + j * ldb;
        let s0 = 0;
        let s1 = 0;
        for (let p = 0; p < K; p++) {
          s0 += A[a0 + p] * B[b0 + p];
          s1 += A[a1 + p] * B[b0 + p];
        }
        C[c0 + j] += alpha * s0;
        C[c1 + j] += alpha * s1;
      }
    }
  }
  for (; i < M; i++) {
    const cr = cOffset + i * ldc;
    for (let j = 0; j < N; j++) {
      const br = bOffset + j * ldb;
      let s0 = 0;
      let s1 = 0;
      let s2 = 0;
      let s3 = 0;
      let p = 0;
      if (!transA) {
        const ar = aOffset + i * lda;
        for (; p + 3 < K; p += 4) {
          s0 += A[ar + p] * B[br + p];
          s1 += A[ar + p + 1] * B[br + p + 1];
          s2 += A[ar + p + 2] * B[br + p + 2];
          s3 += A[ar + p + 3] * B[br + p + 3];
        }
        for (; p < K; p++) s0 += A[ar + p] * B[br + p];
      } else {
        for (; p < K; p++) s0 += A[aOffset + p * lda + i] * B[br + p];
      }
      C[cr + j] += alpha * (s0 + s1 + s2 + s3);
    }
  }
}
