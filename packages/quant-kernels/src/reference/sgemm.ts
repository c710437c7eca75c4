// Reference sgemm: the plain triple loop every GEMM path is tested against.
import { resolveGemm } from "../check-args";
import type { GemmArgs } from "../types";

/**
 * `C = alpha · op(A) · op(B) + beta · C` (see {@link GemmArgs}), accumulating in float64:
 * ```
 * for i < M, j < N:
 *   acc = Σ_p a(i, p) · b(p, j)        a(i,p) = transA ? A[aOff + p*lda + i] : A[aOff + i*lda + p]
 *                                        b(p,j) = transB ? B[bOff + j*ldb + p] : B[bOff + p*ldb + j]
 *   C[cOff + i*ldc + j] = alpha*acc + (beta === 0 ? 0 : beta * C[...])
 * ```
 */
export function referenceSgemm(args: GemmArgs): void {
  const { M, N, K, A, B, C, transA, transB, aOffset, bOffset, cOffset, lda, ldb, ldc, alpha, beta } =
    resolveGemm(args);
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) {
      let acc = 0;
      for (let p = 0; p < K; p++) {
        const a = transA ? A[aOffset + p * lda + i] : A[aOffset + i * lda + p];
        const b = transB ? B[bOffset + j * ldb + p] : B[bOffset + p * ldb + j];
        acc += a * b;
      }
      const c = cOffset + i * ldc + j;
      C[c] = alpha * acc + (beta === 0 ? 0 : beta * C[c]);
    }
  }
}
