// GemmArgs with defaults resolved and every index range checked, shared by the GPU sgemm paths.
import type { GemmArgs } from "@int21/quant-kernels";

/** {@link GemmArgs} with every default filled in and the touched spans of A, B and C checked. */
export interface ResolvedGemm {
  M: number;
  N: number;
  K: number;
  A: Float32Array;
  B: Float32Array;
  C: Float32Array;
  transA: boolean;
  transB: boolean;
  aOffset: number;
  bOffset: number;
  cOffset: number;
  lda: number;
  ldb: number;
  ldc: number;
  alpha: number;
  beta: number;
  bConst: boolean;
  /** One past the last element of A (resp. B) that op(A) (op(B)) reads; `aOffset` when nothing is read. */
  aEnd: number;
  bEnd: number;
}

function nonNegInt(v: number, name: string): number {
  if (!Number.isInteger(v) || v < 0)
    throw new RangeError(`gpu: sgemm: ${name} must be a non-negative integer, got ${String(v)}`);
  return v;
}

/** One past the last index a `rows × cols` row-major view with leading dimension `ld` touches. */
function spanEnd(offset: number, rows: number, cols: number, ld: number): number {
  return rows === 0 || cols === 0 ? offset : offset + (rows - 1) * ld + cols;
}

/** Fills in defaults and throws a RangeError naming the argument when a dimension, offset or span is bad. */
export function resolveGemm(a: GemmArgs): ResolvedGemm {
  const M = nonNegInt(a.M, "M");
  const N = nonNegInt(a.N, "N");
  const K = nonNegInt(a.K, "K");
  const transA = !!a.transA;
  const transB = !!a.transB;
  const aOffset = nonNegInt(a.aOffset ?? 0, "aOffset");
  const bOffset = nonNegInt(a.bOffset ?? 0, "bOffset");
  const cOffset = nonNegInt(a.cOffset ?? 0, "cOffset");
  // A is stored M×K (or K×M with transA); B is K×N (or N×K with transB).
  const [aRows, aCols] = transA ? [K, M] : [M, K];
  const [bRows, bCols] = transB ? [N, K] : [K, N];
  const lda = nonNegInt(a.lda ?? aCols, "lda");
  const ldb = nonNegInt(a.ldb ?? bCols, "ldb");
  const ldc = nonNegInt(a.ldc ?? N, "ldc");
  if (aRows > 1 && lda < aCols) throw new RangeError(`gpu: sgemm: lda ${lda} < ${aCols} columns of A`);
  if (bRows > 1 && ldb < bCols) throw new RangeError(`gpu: sgemm: ldb ${ldb} < ${bCols} columns of B`);
  if (M > 1 && ldc < N) throw new RangeError(`gpu: sgemm: ldc ${ldc} < N = ${N}`);
  const aEnd = spanEnd(aOffset, aRows, aCols, lda);
  const bEnd = spanEnd(bOffset, bRows, bCols, ldb);
  const cEnd = spanEnd(cOffset, M, N, ldc);
  if (aEnd > a.A.length) throw new RangeError(`gpu: sgemm: A needs ${aEnd} elements, has ${a.A.length}`);
  if (bEnd > a.B.length) throw new RangeError(`gpu: sgemm: B needs ${bEnd} elements, has ${a.B.length}`);
  if (cEnd > a.C.length) throw new RangeError(`gpu: sgemm: C needs ${cEnd} elements, has ${a.C.length}`);
  const alpha = a.alpha ?? 1;
  const beta = a.beta ?? 0;
  if (!Number.isFinite(alpha) || !Number.isFinite(beta)) {
    throw new RangeError(`gpu: sgemm: alpha and beta must be finite, got ${alpha} and ${beta}`);
  }
  return {
    M,
    N,
    K,
    A: a.A,
    B: a.B,
    C: a.C,
    transA,
    transB,
    aOffset,
    bOffset,
    cOffset,
    lda,
    ldb,
    ldc,
    alpha,
    beta,
    bConst: !!a.bConst,
    aEnd,
    bEnd,
  };
}

/**
 * Writes `C[m, n] = alpha · acc[m*N + n] + beta · C[m, n]` (beta 0 ignores C's old contents, NaN included).
 * The GPU kernels compute the dense product `acc`; this applies the BLAS epilogue on the host.
 */
export function gemmEpilogue(g: ResolvedGemm, acc: Float32Array): void {
  const { M, N, C, cOffset, ldc, alpha, beta } = g;
  for (let m = 0; m < M; m++) {
    const row = cOffset + m * ldc;
    const src = m * N;
    if (beta === 0) for (let n = 0; n < N; n++) C[row + n] = alpha * acc[src + n];
    else for (let n = 0; n < N; n++) C[row + n] = alpha * acc[src + n] + beta * C[row + n];
  }
}
