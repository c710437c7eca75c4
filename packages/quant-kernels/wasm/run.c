// The one entry point every thread calls: qk_run(job, tid, nth) works on the job described at `job`
// (see kernels.h) until no chunk is left. Thread 0 is the caller's thread; 1..nth-1 are workers that
// share the same memory. Chunks never overlap in what they write, so no locks are needed; tid only
// selects the thread's scratch.
#include "quant.h"
#include "train.h"
#include "decode.h"

// Dynamic scheduling: threads take chunks [c*chunk, (c+1)*chunk) of [0, total) with an atomic add on
// the job's J_NEXT slot (zeroed by the caller), so a thread that is descheduled on a busy machine
// does not hold the others up. Returns 0 when no chunk is left.
static int next_chunk(int32_t* job, int total, int chunk, int* lo, int* hi) {
  int c = __atomic_fetch_add(&job[J_NEXT], 1, __ATOMIC_RELAXED);
  int64_t a = (int64_t)c * chunk;
  if (a >= total) return 0;
  *lo = (int)a;
  *hi = imin((int)a + chunk, total);
  return 1;
}

// ceil(total / (2·nth)) columns rounded up to a multiple of align, clamped to [lo, hi]: two work items per
// thread (the split used by the GEMMs below).
static int col_items(int total, int nth, int align, int lo, int hi) {
  int c = (total + 2 * nth - 1) / (2 * nth);
  c = (c + align - 1) / align * align;
  return c < lo ? lo : c > hi ? hi : c;
}

// Columns per work item of a float GEMM split over N: 256, or less so that nth threads get at least
// two items each (N = 768 in 256-column items would leave one of two threads a third of the work
// idle); a multiple of NR, at least 64. Every item packs all of A again, so more items cost more: at
// 512 × 768 × 768, four items per thread (96 columns) took 5% more CPU than one thread's 256-column
// items, two (192 columns) 1–2%.
static int gemm_col_chunk(int N, int nth) { return nth <= 1 ? 256 : col_items(N, nth, NR, 64, 256); }

// Columns (of N for qmatmul, of K for qmatmulT) per work item of a packed GEMM: two items per thread,
// a multiple of `align`, at most 512. Every item packs all of its A rows again
// (x for qmatmul, g for qmatmulT), so fewer, larger items cost less CPU than the old fixed 128 columns
// (N = 2048 took 16 items, 16 packs of x); two per thread keep the dynamic split (next_chunk) able to
// even out a thread that is descheduled. A column lands in one item whatever the split, and each of
// its outputs is summed over the same K blocks in the same order, so results are bit-identical for
// any nth.
static int qmm_col_chunk(int total, int nth, int align) {
  int cap = 512 / align * align;
  return col_items(total, nth, align, align, cap < align ? align : cap);
}

QK_EXPORT(qk_run) void qk_run(int32_t* job, int tid, int nth) {
  float* scratch = PTR(float*, (uint32_t)job[J_SCRATCH] + (uint32_t)tid * (uint32_t)job[J_STRIDE]);
  int lo, hi;
  switch (job[J_OP]) {
    case OP_SGEMM: {
      int M = job[G_M], N = job[G_N];
      BSource bs = {B_FLOAT, PTR(const float*, job[G_B]), job[G_LDB], job[G_TB], 0};
      const float* A = PTR(const float*, job[G_A]);
      float* C = PTR(float*, job[G_C]);
      float alpha = f32_of(job[G_ALPHA]), beta = f32_of(job[G_BETA]);
      if (N >= M) {
        int chunk = gemm_col_chunk(N, nth);
        while (next_chunk(job, N, chunk, &lo, &hi)) {
          qk_gemm_region(job[G_K], A, job[G_LDA], job[G_TA], &bs, C, job[G_LDC], alpha, beta, 0, M, lo, hi, scratch);
        }
      } else {
        while (next_chunk(job, M, 64, &lo, &hi)) {
          qk_gemm_region(job[G_K], A, job[G_LDA], job[G_TA], &bs, C, job[G_LDC], alpha, beta, lo, hi, 0, N, scratch);
        }
      }
      break;
    }
    case OP_SGEMV: {
      int K = job[G_K], lda = job[G_LDA];
      const float* A = PTR(const float*, job[G_A]);
      const float* x = A;
      if (job[G_TA] && lda != 1) {
        // op(A) = Aᵀ with A stored K×1: gather the column.
        for (int k = 0; k < K; k++) scratch[k] = A[(uint32_t)k * (uint32_t)lda];
        x = scratch;
      }
      while (next_chunk(job, job[G_N], job[G_TB] ? 64 : 256, &lo, &hi)) {
        qk_gemv_region(K, x, PTR(const float*, job[G_B]), job[G_LDB], job[G_TB], PTR(float*, job[G_C]),
                       f32_of(job[G_ALPHA]), f32_of(job[G_BETA]), lo, hi);
      }
      break;
    }
    case OP_QMATVEC: {
      const int32_t* d = PTR(const int32_t*, job[Q_DESC]);
      int Kp = d[D_KP], N = d[D_N], ng = d[D_NG], rows = job[Q_ROWS];
      const float* x = PTR(const float*, job[Q_X]);
      float* y = PTR(float*, job[Q_Y]);
      // Scratch: rows × Kp prescaled x (offset decode only), rows × nGroups sums, then the row buffer.
      float* xp = scratch;
      float* xs = scratch + rows * Kp;
      float* tmp = xs + rows * ng;
      if (qk_fast(d)) {
        for (int r = 0; r < rows; r++) {
          qk_xsums(d, x + (uint32_t)r * (uint32_t)Kp, xs + r * ng);
          if (d[D_OFFSET]) qk_xprescale(d, x + (uint32_t)r * (uint32_t)Kp, xp + r * Kp);
        }
      } else if (qk_lut_planar(d)) {
        for (int r = 0; r < rows; r++) qk_lut_xperm(d, x + (uint32_t)r * (uint32_t)Kp, xp + r * Kp);
      }
      while (next_chunk(job, N, 32, &lo, &hi)) {
        for (int r = 0; r < rows; r++) {
          qk_qmatvec_rows(d, x + (uint32_t)r * (uint32_t)Kp, xp + r * Kp, xs + r * ng, y + (uint32_t)r * (uint32_t)N,
                          lo, hi, tmp);
        }
      }
      break;
    }
    case OP_QMATVEC_T: {
      const int32_t* d = PTR(const int32_t*, job[Q_DESC]);
      int N = d[D_N], K = d[D_K], Kp = d[D_KP];
      const float* g = PTR(const float*, job[Q_X]);
      float* dx = PTR(float*, job[Q_Y]);
      while (next_chunk(job, Kp, 256, &lo, &hi)) {
        for (int r = 0; r < job[Q_ROWS]; r++) {
          qk_qmatvec_t_cols(d, g + (uint32_t)r * (uint32_t)N, dx + (uint32_t)r * (uint32_t)K, lo, hi, scratch);
        }
      }
      break;
    }
    case OP_QMATMUL: {
      const int32_t* d = PTR(const int32_t*, job[Q_DESC]);
      int N = d[D_N], K = d[D_K], Kp = d[D_KP], rows = job[Q_ROWS];
      BSource bs = {B_QUANT_T, 0, 0, 0, d};
      // Whole NR-wide B panels per item (each thread dequantizes only its own columns' panels).
      int chunk = qmm_col_chunk(N, nth, 64);
      while (next_chunk(job, N, chunk, &lo, &hi)) {
        qk_gemm_region(K, PTR(const float*, job[Q_X]), Kp, 0, &bs, PTR(float*, job[Q_Y]), N, 1.0f, 0.0f, 0, rows, lo,
                       hi, scratch);
      }
      break;
    }
    case OP_QMATMUL_T: {
      const int32_t* d = PTR(const int32_t*, job[Q_DESC]);
      int N = d[D_N], K = d[D_K], rows = job[Q_ROWS];
      BSource bs = {B_QUANT_N, 0, 0, 0, d};
      // Items start on a 64-column boundary (whole container blocks, 4-aligned for the fast decode);
      // block formats on a 256-column one, so no ggml block is decoded by two items.
      int chunk = qmm_col_chunk(K, nth, d[D_BLOCK] ? 256 : 64);
      while (next_chunk(job, K, chunk, &lo, &hi)) {
        qk_gemm_region(N, PTR(const float*, job[Q_X]), N, 0, &bs, PTR(float*, job[Q_Y]), K, 1.0f, 0.0f, 0, rows, lo,
                       hi, scratch);
      }
      break;
    }
    case OP_DEQUANT: {
      const int32_t* d = PTR(const int32_t*, job[Q_DESC]);
      int N = d[D_N], K = d[D_K];
      float* out = PTR(float*, job[Q_Y]);
      while (next_chunk(job, N, 16, &lo, &hi)) {
        for (int n = lo; n < hi; n++) qk_dequant_range(d, n, 0, K, out + (uint32_t)n * (uint32_t)K);
      }
      break;
    }
    case OP_ATTN:
      qk_attn_run(job, tid, scratch);
      break;
    case OP_QMV:
      qk_qmv_run(job, tid, scratch);
      break;
    case OP_TRAIN_FIRST ... OP_TRAIN_LAST:
      qk_train_run(job, tid, scratch);
      break;
    default:
      __builtin_trap();
  }
}
