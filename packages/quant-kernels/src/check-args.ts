// Argument checks every backend runs before a kernel touches memory (clear errors, never silent garbage).
import type { GemmArgs, QuantizedLinear } from "./types";

/** {@link GemmArgs} with every default filled in. */
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
}

function need(arr: Float32Array, name: string, off: number, rows: number, cols: number, ld: number): void {
  if (!(arr instanceof Float32Array)) throw new Error(`quant-kernels: sgemm ${name} must be a Float32Array`);
  if (!Number.isSafeInteger(off) || off < 0)
    throw new Error(`quant-kernels: sgemm ${name} offset must be a non-negative integer, got ${off}`);
  if (!Number.isSafeInteger(ld) || ld < cols) {
    throw new Error(
      `quant-kernels: sgemm leading dimension of ${name} must be an integer ≥ ${cols}, got ${ld}`,
    );
  }
  if (rows === 0 || cols === 0) return;
  const end = off + (rows - 1) * ld + cols;
  if (end > arr.length) {
    throw new Error(
      `quant-kernels: sgemm ${name} (${rows}×${cols}, ld ${ld}, offset ${off}) needs ${end} elements, has ${arr.length}`,
    );
  }
}

/**
 * Fills the defaults of a {@link GemmArgs} (offsets 0, dense leading dimensions, alpha 1, beta 0)
 * and checks dimensions, leading dimensions and array extents. Throws an Error naming the operand.
 */
export function resolveGemm(a: GemmArgs): ResolvedGemm {
  const { M, N, K } = a;
  for (const [n, v] of [
    ["M", M],
    ["N", N],
    ["K", K],
  ] as const) {
    if (!Number.isSafeInteger(v) || v < 0)
      throw new Error(`quant-kernels: sgemm ${n} must be a non-negative integer, got ${v}`);
  }
  const transA = a.transA === true;
  const transB = a.transB === true;
  const r: ResolvedGemm = {
    M,
    N,
    K,
    A: a.A,
    B: a.B,
    C: a.C,
    transA,
    transB,
    aOffset: a.aOffset ?? 0,
    bOffset: a.bOffset ?? 0,
    cOffset: a.cOffset ?? 0,
    lda: a.lda ?? (transA ? M : K),
    ldb: a.ldb ?? (transB ? K : N),
    ldc: a.ldc ?? N,
    alpha: a.alpha ?? 1,
    beta: a.beta ?? 0,
  };
  if (!Number.isFinite(r.alpha) || !Number.isFinite(r.beta)) {
    throw new Error(`quant-kernels: sgemm alpha and beta must be finite, got ${r.alpha}, ${r.beta}`);
  }
  if (transA) need(r.A, "A", r.aOffset, K, M, r.lda);
  else need(r.A, "A", r.aOffset, M, K, r.lda);
  if (transB) need(r.B, "B", r.bOffset, N, K, r.ldb);
  else need(r.B, "B", r.bOffset, K, N, r.ldb);
  need(r.C, "C", r.cOffset, M, N, r.ldc);
  return r;
}

/**
 * Checks a quantized-kernel call: `rows` a non-negative integer, `input` holding `rows·inLen` and
 * `output` `rows·outLen` floats. `kernel` names the call in the error.
 */
export function checkQuantCall(
  kernel: string,
  q: QuantizedLinear,
  input: Float32Array | null,
  inName: string,
  inPerRow: number,
  rows: number,
  output: Float32Array,
  outName: string,
  outPerRow: number,
): void {
  if (q === null || typeof q !== "object" || q.qweight === undefined) {
    throw new Error(
      `quant-kernels: ${kernel}: q must be a QuantizedLinear (build it with createQuantizedLinear)`,
    );
  }
  if (!Number.isSafeInteger(rows) || rows < 0)
    throw new Error(`quant-kernels: ${kernel}: rows must be a non-negative integer, got ${rows}`);
  if (input !== null) {
    if (!(input instanceof Float32Array))
      throw new Error(`quant-kernels: ${kernel}: ${inName} must be a Float32Array`);
    if (input.length < rows * inPerRow) {
      throw new Error(
        `quant-kernels: ${kernel}: ${inName} needs ${rows}×${inPerRow} = ${rows * inPerRow} floats, has ${input.length}`,
      );
    }
  }
  if (!(output instanceof Float32Array))
    throw new Error(`quant-kernels: ${kernel}: ${outName} must be a Float32Array`);
  if (output.length < rows * outPerRow) {
    throw new Error(
      `quant-kernels: ${kernel}: ${outName} needs ${rows}×${outPerRow} = ${rows * outPerRow} floats, has ${output.length}`,
    );
  }
}
