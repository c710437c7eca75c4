// Matrix multiplication through the backend's sgemm, forward and backward (beta = 1 accumulates grads).
import type { Backend } from "@int21/quant-kernels";
import { allocFloats } from "./memory";
import { defineOp, type OpDef } from "./engine";
import { output } from "./strided";
import { fmtShape, type Tensor } from "./tensor";

/** Options of {@link matmul}. */
export interface MatmulOptions {
  /** Use Aᵀ: `a` is stored `[..., K, M]`. */
  transA?: boolean;
  /** Use Bᵀ: `b` is stored `[..., N, K]` (the weight layout of y = x·Wᵀ). */
  transB?: boolean;
  /**
   * Hint passed to `sgemm` as `bConst`: `b` is a frozen weight that never changes while the backend
   * lives (the backend may cache a resident copy). Never set it for data that changes.
   */
  constB?: boolean;
}

interface Plan {
  transA: boolean;
  transB: boolean;
  batch: number;
  M: number;
  N: number;
  K: number;
  /** b is one matrix shared by every batch entry. */
  bShared: boolean;
  constB: boolean;
  outShape: number[];
}

/** Dense data + offset of a tensor (a copy when it is not contiguous). */
export function denseOf(t: Tensor): [Float32Array, number] {
  return t.isContiguous() ? [t.data, t.offset] : [t.values(), 0];
}

/**
 * Batched sgemm: `C_i = alpha·op(A_i)·op(B_i) + beta·C_i` for i < batch, with per-batch element
 * strides sa, sb, sc (0 shares one matrix across the batch).
 */
export function batchedGemm(
  backend: Backend,
  batch: number,
  M: number,
  N: number,
  K: number,
  A: Float32Array,
  aOff: number,
  sa: number,
  transA: boolean,
  B: Float32Array,
  bOff: number,
  sb: number,
  transB: boolean,
  C: Float32Array,
  cOff: number,
  sc: number,
  beta: number,
  bConst = false,
): void {
  const lda = transA ? M : K;
  const ldb = transB ? K : N;
  for (let i = 0; i < batch; i++) {
    backend.sgemm({
      M,
      N,
      K,
      A,
      B,
      C,
      transA,
      transB,
      aOffset: aOff + i * sa,
      bOffset: bOff + i * sb,
      cOffset: cOff + i * sc,
      lda,
      ldb,
      ldc: N,
      beta,
      bConst,
    });
  }
}

function plan(a: Tensor, b: Tensor, o: MatmulOptions): Plan {
  const transA = o.transA ?? false;
  const transB = o.transB ?? false;
  const bad = (why: string) =>
    new Error(
      `autograd: matmul: ${why}: a ${fmtShape(a.shape)}${transA ? "ᵀ" : ""} · b ${fmtShape(b.shape)}${transB ? "ᵀ" : ""}`,
    );
  if (a.ndim < 2 || b.ndim < 2) throw bad("both operands need at least 2 dimensions");
  const [r0, r1] = a.shape.slice(-2);
  const [s0, s1] = b.shape.slice(-2);
  const M = transA ? r1 : r0;
  const K = transA ? r0 : r1;
  const Kb = transB ? s1 : s0;
  const N = transB ? s0 : s1;
  if (K !== Kb) throw bad(`inner dimensions differ (${K} vs ${Kb})`);
  const batchDims = a.shape.slice(0, -2);
  let batch = 1;
  for (const d of batchDims) batch *= d;
  const bShared = b.ndim === 2;
  if (!bShared) {
    const bb = b.shape.slice(0, -2);
    if (bb.length !== batchDims.length || bb.some((d, i) => d !== batchDims[i])) {
      throw bad("batch dimensions differ (b must be 2-D or have a's batch dimensions)");
    }
  }
  return {
    transA,
    transB,
    batch,
    M,
    N,
    K,
    bShared,
    constB: o.constB ?? false,
    outShape: [...batchDims, M, N],
  };
}

const matmulOp: OpDef<Plan> = {
  name: "matmul",
  forward(ctx, [a, b], p) {
    const { batch, M, N, K, transA, transB, bShared } = p;
    if (ctx.needsInputGrad[1]) ctx.save(a);
    if (ctx.needsInputGrad[0]) ctx.save(b);
    const [ad, ao] = denseOf(a);
    const [bd, bo] = denseOf(b);
    const out = allocFloats(batch * M * N);
    if (bShared && !transA) {
      // fold the batch into the rows: one GEMM
      batchedGemm(
        ctx.backend,
        1,
        batch * M,
        N,
        K,
        ad,
        ao,
        0,
        false,
        bd,
        bo,
        0,
        transB,
        out,
        0,
        0,
        0,
        p.constB,
      );
    } else {
      batchedGemm(
        ctx.backend,
        batch,
        M,
        N,
        K,
        ad,
        ao,
        M * K,
        transA,
        bd,
        bo,
        bShared ? 0 : K * N,
        transB,
        out,
        0,
        M * N,
        0,
        p.constB,
      );
    }
    return output(out, p.outShape);
  },
  backward(ctx, gy, [ga, gb], p) {
    const { batch, M, N, K, transA, transB, bShared } = p;
    const be = ctx.backend;
    const [g] = [gy.values()];
    let k = 0;
    const a = gb ? ctx.saved[k++] : null;
    const b = ga ? ctx.saved[k++] : null;
    const fold = bShared && !transA;
    const rows = fold ? batch * M : M;
    const nb = fold ? 1 : batch;
    const sb = bShared ? 0 : K * N;
    if (ga && b) {
      const [bd, bo] = denseOf(b);
      if (!transA) {
        // dA[M×K] += dC[M×N] · op(B)ᵀ
        batchedGemm(
          be,
          nb,
          rows,
          K,
          N,
          g,
          0,
          rows * N,
          false,
          bd,
          bo,
          sb,
          !transB,
          ga.data,
          0,
          rows * K,
          1,
          p.constB,
        );
      } else {
        // dA stored [K×M] += op(B)[K×N] · dCᵀ
        batchedGemm(be, nb, K, M, N, bd, bo, sb, transB, g, 0, M * N, true, ga.data, 0, K * M, 1);
      }
    }
    if (gb && a) {
      const [ad, ao] = denseOf(a);
      const sgb = bShared ? 0 : K * N;
      if (!transB) {
        // dB[K×N] += op(A)ᵀ · dC
        batchedGemm(be, nb, K, N, rows, ad, ao, rows * K, !transA, g, 0, rows * N, false, gb.data, 0, sgb, 1);
      } else {
        // dB stored [N×K] += dCᵀ · op(A)
        batchedGemm(be, nb, N, K, rows, g, 0, rows * N, true, ad, ao, rows * K, transA, gb.data, 0, sgb, 1);
      }
    }
  },
};
const applyMatmul = defineOp(matmulOp);

/**
 * `op(a) · op(b)` through `backend.sgemm`. `a` is `[..., M, K]` (`[..., K, M]` with `transA`); `b` is
 * `[K, N]` (`[N, K]` with `transB`), shared across a's leading (batch) dimensions, or has the same
 * batch dimensions as `a`. Output `[..., M, N]`. Non-contiguous operands are copied to dense first.
 */
export function matmul(a: Tensor, b: Tensor, opts: MatmulOptions = {}): Tensor {
  return applyMatmul([a, b], plan(a, b, opts));
}

/** The op records of this family (forward/backward pairs), for introspection and tests. */
export const linalgOps = { matmulOp };
