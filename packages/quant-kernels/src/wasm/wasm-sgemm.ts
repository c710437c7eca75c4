// sgemm on the wasm backend: operands copied into wasm memory unless they already live there (or
// B is a resident constant), then the packed 6×8 f32x4 GEMM, or the GEMV path when M = 1 (8 rows of Bᵀ per pass).
import { resolveGemm } from "../check-args";
import type { GemmArgs } from "../types";
import {
  G_A,
  G_ALPHA,
  G_B,
  G_BETA,
  G_C,
  G_K,
  G_LDA,
  G_LDB,
  G_LDC,
  G_M,
  G_N,
  G_TA,
  G_TB,
  OP_SGEMM,
  OP_SGEMV,
} from "./layout";
import type { ResidentCache } from "./wasm-resident";
import type { WasmRuntime } from "./wasm-runtime";

/** Multiply-adds above which a GEMM is split across threads (~0.1 ms of work; dispatch ~50 µs). */
export const GEMM_PARALLEL_MACS = 1 << 22;
/** Matrix elements above which a GEMV is split across threads. */
export const GEMV_PARALLEL_ELEMS = 1 << 20;

function span(rows: number, cols: number, ld: number): number {
  return rows === 0 || cols === 0 ? 0 : (rows - 1) * ld + cols;
}

/**
 * `C = alpha·op(A)·op(B) + beta·C` (see {@link GemmArgs}):
 * ```
 * for i < M, j < N: C[i,j] = alpha * Σ_k opA[i,k] * opB[k,j] + beta * C[i,j]   (beta 0: C ignored)
 * ```
 */
export function wasmSgemm(rt: WasmRuntime, cache: ResidentCache, args: GemmArgs): void {
  rt.check("sgemm");
  const r = resolveGemm(args);
  const { M, N, K } = r;
  if (M === 0 || N === 0) return;
  const heap = rt.heap;
  const aSpan = r.transA ? span(K, M, r.lda) : span(M, K, r.lda);
  const bSpan = r.transB ? span(N, K, r.ldb) : span(K, N, r.ldb);
  const cSpan = span(M, N, r.ldc);
  const aIn = heap.owns(r.A);
  const bIn = heap.owns(r.B);
  const cIn = heap.owns(r.C);
  const bRes = !bIn && args.bConst === true && bSpan > 0 ? cache.floatConst(r.B) : -1;
  let need = 256;
  if (!aIn) need += aSpan * 4;
  if (!bIn && bRes < 0) need += bSpan * 4;
  if (!cIn) need += cSpan * 4;
  rt.begin(need, K + 16);
  const f32 = heap.f32;
  let a: number;
  if (aIn) a = r.A.byteOffset + r.aOffset * 4;
  else {
    a = rt.take(aSpan * 4);
    f32.set(r.A.subarray(r.aOffset, r.aOffset + aSpan), a >>> 2);
  }
  let b: number;
  if (bIn) b = r.B.byteOffset + r.bOffset * 4;
  else if (bRes >= 0) b = bRes + r.bOffset * 4;
  else {
    b = rt.take(bSpan * 4);
    f32.set(r.B.subarray(r.bOffset, r.bOffset + bSpan), b >>> 2);
  }
  let c: number;
  if (cIn) c = r.C.byteOffset + r.cOffset * 4;
  else {
    c = rt.take(cSpan * 4);
    if (r.beta !== 0) f32.set(r.C.subarray(r.cOffset, r.cOffset + cSpan), c >>> 2);
  }
  const gemv = M === 1;
  const { i32, f32: jf, base } = rt.jobSlots(gemv ? OP_SGEMV : OP_SGEMM);
  i32[base + G_M] = M;
  i32[base + G_N] = N;
  i32[base + G_K] = K;
  i32[base + G_A] = a;
  i32[base + G_LDA] = r.lda;
  i32[base + G_TA] = r.transA ? 1 : 0;
  i32[base + G_B] = b;
  i32[base + G_LDB] = r.ldb;
  i32[base + G_TB] = r.transB ? 1 : 0;
  i32[base + G_C] = c;
  i32[base + G_LDC] = r.ldc;
  jf[base + G_ALPHA] = r.alpha;
  jf[base + G_BETA] = r.beta;
  const parallel = gemv ? N * K >= GEMV_PARALLEL_ELEMS : M * N * K >= GEMM_PARALLEL_MACS;
  rt.run(parallel ? rt.threads : 1);
  if (!cIn) {
    const out = heap.f32;
    const c0 = c >>> 2;
    if (r.ldc === N) r.C.set(out.subarray(c0, c0 + M * N), r.cOffset);
    else
      for (let i = 0; i < M; i++)
        r.C.set(out.subarray(c0 + i * r.ldc, c0 + i * r.ldc + N), r.cOffset + i * r.ldc);
  }
}
