// Float32 GEMM and GEMV: packed-A/packed-B blocking (Goto/BLIS style) around a 6×8 f32x4 micro-kernel
// (12 accumulators, 2 B vectors and one broadcast A value: 15 of x64's 16 xmm registers, all of which V8
// keeps in registers when the kernel is a function of its own). The module is built twice (see
// scripts/build-wasm.mjs): plain SIMD, where a multiply-add is a separate multiply and add (rounded as the
// scalar references round), and relaxed SIMD (-mrelaxed-simd), where the micro-kernel and the one-row
// product with a transposed B (the decode matvec) use f32x4.relaxed_madd, a fused multiply-add on CPUs that
// have one. A full 6×8 tile goes from the micro-kernel's registers straight into C (micro_kernel_c); edge
// tiles go through an accumulator buffer (update_c), with the same arithmetic. B panels come from a float
// matrix or are
// dequantized from a resident quantized weight a tile at a time (the fused qmatmul / qmatmulT paths), so
// the full float weight is never built.
#include "kernels.h"
#include "quant.h"

// C[m0..m1)[n0..n1) *= beta (beta == 0 overwrites, ignoring NaN in the old C).
static void scale_c(float* C, int ldc, int m0, int m1, int n0, int n1, float beta) {
  if (beta == 1.0f) return;
  for (int i = m0; i < m1; i++) {
    float* c = C + (uint32_t)i * (uint32_t)ldc;
    if (beta == 0.0f) {
      for (int j = n0; j < n1; j++) c[j] = 0.0f;
    } else {
      for (int j = n0; j < n1; j++) c[j] *= beta;
    }
  }
}

// Micro-tile UMR×UNR; A blocks of UMC ≤ MC rows and B blocks of UNC ≤ NC columns (whole panels, so the
// packed blocks fit the scratch that layout.ts sizes from MC, KC, NC).
#define UMR 6
#define UNR NR
#define UNV (UNR / 4)
#define UMC (MC / UMR * UMR)
#define UNC (NC / UNR * UNR)
#ifdef __wasm_relaxed_simd__
#define UMADD(c, a, b) c = wasm_f32x4_relaxed_madd(a, b, c)
#else
#define UMADD(c, a, b) FMA(c, a, b)
#endif

static const float ZERO_ROW[KC] = {0};

// dst[kk][j] = rows[j][kk] for kk < kc, j < w: a w-wide panel from w rows, 4×4 blocks transposed.
static void pack_rows_t(const float* const* rows, int w, int kc, float* dst) {
  int w4 = w & ~3;
  int kk = 0;
  for (; kk + 4 <= kc; kk += 4) {
    for (int h = 0; h < w4; h += 4) {
      v128_t v0 = wasm_v128_load(rows[h] + kk), v1 = wasm_v128_load(rows[h + 1] + kk);
      v128_t v2 = wasm_v128_load(rows[h + 2] + kk), v3 = wasm_v128_load(rows[h + 3] + kk);
      v128_t t0 = wasm_i32x4_shuffle(v0, v1, 0, 4, 1, 5), t1 = wasm_i32x4_shuffle(v2, v3, 0, 4, 1, 5);
      v128_t t2 = wasm_i32x4_shuffle(v0, v1, 2, 6, 3, 7), t3 = wasm_i32x4_shuffle(v2, v3, 2, 6, 3, 7);
      float* d = dst + kk * w + h;
      wasm_v128_store(d, wasm_i32x4_shuffle(t0, t1, 0, 1, 4, 5));
      wasm_v128_store(d + w, wasm_i32x4_shuffle(t0, t1, 2, 3, 6, 7));
      wasm_v128_store(d + 2 * w, wasm_i32x4_shuffle(t2, t3, 0, 1, 4, 5));
      wasm_v128_store(d + 3 * w, wasm_i32x4_shuffle(t2, t3, 2, 3, 6, 7));
    }
    if (w - w4 == 2) {
      // two rows left (the 6-row A panels): interleave them, two floats per k
      v128_t v0 = wasm_v128_load(rows[w4] + kk), v1 = wasm_v128_load(rows[w4 + 1] + kk);
      v128_t lo = wasm_i32x4_shuffle(v0, v1, 0, 4, 1, 5), hi = wasm_i32x4_shuffle(v0, v1, 2, 6, 3, 7);
      float* d = dst + kk * w + w4;
      wasm_v128_store64_lane(d, lo, 0);
      wasm_v128_store64_lane(d + w, lo, 1);
      wasm_v128_store64_lane(d + 2 * w, hi, 0);
      wasm_v128_store64_lane(d + 3 * w, hi, 1);
    } else {
      for (int h = w4; h < w; h++) {
        const float* r = rows[h] + kk;
        dst[kk * w + h] = r[0];
        dst[(kk + 1) * w + h] = r[1];
        dst[(kk + 2) * w + h] = r[2];
        dst[(kk + 3) * w + h] = r[3];
      }
    }
  }
  for (; kk < kc; kk++) {
    for (int j = 0; j < w; j++) dst[kk * w + j] = rows[j][kk];
  }
}

// ap[panel][kk][i] = opA[i0 + panel*UMR + i][p0 + kk], rows past mc zero.
static void pack_a(const float* A, int lda, int ta, int i0, int mc, int p0, int kc, float* ap) {
  for (int p = 0; p < mc; p += UMR) {
    int mr = imin(UMR, mc - p);
    float* dst = ap + p * kc;
    if (!ta) {
      const float* rows[UMR];
      for (int i = 0; i < UMR; i++) rows[i] = i < mr ? A + (uint32_t)(i0 + p + i) * (uint32_t)lda + p0 : ZERO_ROW;
      pack_rows_t(rows, UMR, kc, dst);
    } else {
      for (int kk = 0; kk < kc; kk++) {
        const float* src = A + (uint32_t)(p0 + kk) * (uint32_t)lda + i0 + p;
        for (int i = 0; i < UMR; i++) dst[kk * UMR + i] = i < mr ? src[i] : 0.0f;
      }
    }
  }
}

// Copies UNR floats (a full panel row).
static inline void copy_row(float* dst, const float* src) {
  for (int v = 0; v < UNV; v++) wasm_v128_store(dst + 4 * v, wasm_v128_load(src + 4 * v));
}

// bp[panel][kk][j] = opB[p0 + kk][j0 + panel*UNR + j], columns past nc zero.
static void pack_b(const BSource* s, int p0, int kc, int j0, int nc, float* bp, float* tmp) {
  if (s->kind == B_FLOAT) {
    const float* B = s->B;
    int ldb = s->ldb;
    for (int q = 0; q < nc; q += UNR) {
      int nr = imin(UNR, nc - q);
      float* dst = bp + q * kc;
      if (!s->tb) {
        for (int kk = 0; kk < kc; kk++) {
          const float* src = B + (uint32_t)(p0 + kk) * (uint32_t)ldb + j0 + q;
          if (nr == UNR) copy_row(dst + kk * UNR, src);
          else
            for (int j = 0; j < UNR; j++) dst[kk * UNR + j] = j < nr ? src[j] : 0.0f;
        }
      } else {
        const float* rows[UNR];
        for (int j = 0; j < UNR; j++) rows[j] = j < nr ? B + (uint32_t)(j0 + q + j) * (uint32_t)ldb + p0 : ZERO_ROW;
        pack_rows_t(rows, UNR, kc, dst);
      }
    }
  } else if (s->kind == B_QUANT_T) {
    // opB[k][n] = W[n][k]: dequantize KC columns of UNR weight rows.
    const int32_t* d = s->desc;
    for (int q = 0; q < nc; q += UNR) {
      int nr = imin(UNR, nc - q);
      const float* rows[UNR];
      for (int j = 0; j < UNR; j++) {
        if (j < nr) {
          qk_dequant_range(d, j0 + q + j, p0, p0 + kc, tmp + j * KC);
          rows[j] = tmp + j * KC;
        } else {
          rows[j] = ZERO_ROW;
        }
      }
      pack_rows_t(rows, UNR, kc, bp + q * kc);
    }
  } else {
    // opB[k][n] = W[k][n]: dequantize NC columns of each of KC weight rows.
    const int32_t* d = s->desc;
    for (int kk = 0; kk < kc; kk++) {
      qk_dequant_range(d, p0 + kk, j0, j0 + nc, tmp);
      for (int q = 0; q < nc; q += UNR) {
        int nr = imin(UNR, nc - q);
        float* dst = bp + q * kc + kk * UNR;
        if (nr == UNR) copy_row(dst, tmp + q);
        else
          for (int j = 0; j < UNR; j++) dst[j] = j < nr ? tmp[q + j] : 0.0f;
      }
    }
  }
}

// The R×UNR accumulators c of a tile, zeroed, then kc k steps over the packed panels a (stride UMR: rows
// past R are never read) and b. Every kernel below runs this same loop, so a row's sums have the same bits
// whichever kernel holds it. Not unrolled: an unrolled body (clang interleaves the steps) needs more
// registers than x64 has.
#define UK_TILE(R, kc, a, b)                                                   \
  v128_t c[R][UNV];                                                           \
  for (int i = 0; i < (R); i++)                                               \
    for (int v = 0; v < UNV; v++) c[i][v] = wasm_f32x4_splat(0.0f);           \
  for (int k = 0; k < (kc); k++) {                                            \
    v128_t bv[UNV];                                                           \
    for (int v = 0; v < UNV; v++) bv[v] = wasm_v128_load((b) + 4 * v);        \
    for (int i = 0; i < (R); i++) {                                           \
      v128_t av = wasm_v128_load32_splat((a) + i);                            \
      for (int v = 0; v < UNV; v++) UMADD(c[i][v], av, bv[v]);                \
    }                                                                         \
    a += UMR;                                                                 \
    b += UNR;                                                                 \
  }

// acc[i][j] = Σ_kk Apanel[kk][i] · Bpanel[kk][j] (UMR×UNR). Out of line with nothing else live, so
// that the engine's register allocator keeps every accumulator in a register (and the hot loop is a
// small function that the engine's optimizing tier takes over after a few calls).
__attribute__((noinline)) static void micro_kernel(int kc, const float* a, const float* b, float* acc) {
  UK_TILE(UMR, kc, a, b)
  for (int i = 0; i < UMR; i++)
    for (int v = 0; v < UNV; v++) wasm_v128_store(acc + i * UNR + 4 * v, c[i][v]);
}

// micro_kernel for an edge tile of R < UMR rows (the A panel keeps its UMR stride; rows past R are
// neither multiplied nor stored): each accumulator takes the same multiply-adds in the same order as in
// micro_kernel, so the rows' sums have the same bits.
#define MICRO_KERNEL_ROWS(name, R)                                                                  \
  __attribute__((noinline)) static void name(int kc, const float* a, const float* b, float* acc) { \
    UK_TILE(R, kc, a, b)                                                                          \
    for (int i = 0; i < R; i++)                                                                   \
      for (int v = 0; v < UNV; v++) wasm_v128_store(acc + i * UNR + 4 * v, c[i][v]);              \
  }
MICRO_KERNEL_ROWS(micro_kernel_2, 2)
MICRO_KERNEL_ROWS(micro_kernel_4, 4)

// As micro_kernel, but the full UMR×UNR tile goes straight into C: C = alpha·acc + (set ? 0 : C).
// alpha is read through a pointer after the k loop, so no float is live in the loop besides the
// accumulators (a live float would take the 16th xmm register and spill an accumulator).
__attribute__((noinline)) static void micro_kernel_c(int kc, const float* a, const float* b, float* C, int ldc,
                                                     const float* alphap, int set) {
  UK_TILE(UMR, kc, a, b)
  v128_t al = wasm_v128_load32_splat(alphap);
  for (int i = 0; i < UMR; i++) {
    float* row = C + (uint32_t)i * (uint32_t)ldc;
    for (int v = 0; v < UNV; v++) {
      v128_t x = wasm_f32x4_mul(al, c[i][v]);
      wasm_v128_store(row + 4 * v, wasm_f32x4_add(set ? wasm_f32x4_splat(0.0f) : wasm_v128_load(row + 4 * v), x));
    }
  }
}

// C[0..mr)[0..nr) += alpha * acc, or (set) = alpha * acc + 0: the first K block of a beta == 0 product
// writes C without reading it (bit for bit what zeroing C and adding gives: the + 0 turns −0 into +0).
static void update_c(const float* acc, float* C, int ldc, float alpha, int mr, int nr, int set) {
  if (nr == UNR) {
    v128_t al = wasm_f32x4_splat(alpha);
    v128_t z = wasm_f32x4_splat(0.0f);
    for (int i = 0; i < mr; i++) {
      float* c = C + (uint32_t)i * (uint32_t)ldc;
      for (int v = 0; v < UNV; v++) {
        v128_t x = wasm_f32x4_mul(al, wasm_v128_load(acc + i * UNR + 4 * v));
        wasm_v128_store(c + 4 * v, wasm_f32x4_add(set ? z : wasm_v128_load(c + 4 * v), x));
      }
    }
    return;
  }
  for (int i = 0; i < mr; i++) {
    float* c = C + (uint32_t)i * (uint32_t)ldc;
    for (int j = 0; j < nr; j++) c[j] = (set ? 0.0f : c[j]) + alpha * acc[i * UNR + j];
  }
}

void qk_gemm_region(int K, const float* A, int lda, int ta, const BSource* bs, float* C, int ldc, float alpha,
                    float beta, int m0, int m1, int n0, int n1, float* scratch) {
  if (m0 >= m1 || n0 >= n1) return;
  if (alpha == 0.0f || K == 0) {
    scale_c(C, ldc, m0, m1, n0, n1, beta);
    return;
  }
  // beta == 0: the first K block stores into C (update_c's set), so C is neither zeroed nor read first
  if (beta != 0.0f) scale_c(C, ldc, m0, m1, n0, n1, beta);
  float acc[UMR * UNR] __attribute__((aligned(16)));
  float* ap = scratch;
  float* bp = ap + MC * KC;
  float* tmp = bp + KC * NC + MR * NR;
  for (int jc = n0; jc < n1; jc += UNC) {
    int nc = imin(UNC, n1 - jc);
    for (int pc = 0; pc < K; pc += KC) {
      int kc = imin(KC, K - pc);
      pack_b(bs, pc, kc, jc, nc, bp, tmp);
      for (int ic = m0; ic < m1; ic += UMC) {
        int mc = imin(UMC, m1 - ic);
        pack_a(A, lda, ta, ic, mc, pc, kc, ap);
        for (int jr = 0; jr < nc; jr += UNR) {
          int nr = imin(UNR, nc - jr);
          for (int ir = 0; ir < mc; ir += UMR) {
            float* ct = C + (uint32_t)(ic + ir) * (uint32_t)ldc + jc + jr;
            int set = beta == 0.0f && pc == 0;
            if (nr == UNR && ir + UMR <= mc) {
              micro_kernel_c(kc, ap + ir * kc, bp + jr * kc, ct, ldc, &alpha, set);
            } else {
              int mr = imin(UMR, mc - ir);
              if (mr <= 2) micro_kernel_2(kc, ap + ir * kc, bp + jr * kc, acc);
              else if (mr <= 4) micro_kernel_4(kc, ap + ir * kc, bp + jr * kc, acc);
              else micro_kernel(kc, ap + ir * kc, bp + jr * kc, acc);
              update_c(acc, ct, ldc, alpha, mr, nr, set);
            }
          }
        }
      }
    }
  }
}

// Rows of B one pass of the transposed GEMV reads at once.
#define GEMV_ROWS 8

static inline void put(float* y, float v, float alpha, float beta) {
  *y = beta == 0.0f ? alpha * v : alpha * v + beta * *y;
}

// y[n0..n1) = alpha * x·op(B)[:, n] + beta*y, x contiguous (K).
void qk_gemv_region(int K, const float* x, const float* B, int ldb, int tb, float* y, float alpha, float beta, int n0,
                    int n1) {
  if (tb) {
    // y[n] = Σ_k x[k] B[n*ldb + k]: eight rows at a time, one f32x4 accumulator each (lane i sums the k ≡ i
    // mod 4 terms), x read once per four columns. Decode streams every weight once per token, so this loop is
    // bound by memory bandwidth, and eight rows read at once keep eight streams in flight (a single-core
    // bandwidth measure on this kernel: ~10 GB/s against ~7.5 for four rows with two accumulators each).
    int n = n0;
    int K4 = K & ~3;
    for (; n + GEMV_ROWS <= n1; n += GEMV_ROWS) {
      const float* r = B + (uint32_t)n * (uint32_t)ldb;
      v128_t a[GEMV_ROWS];
      for (int i = 0; i < GEMV_ROWS; i++) a[i] = wasm_f32x4_splat(0.0f);
      for (int k = 0; k < K4; k += 4) {
        v128_t xv = wasm_v128_load(x + k);
        for (int i = 0; i < GEMV_ROWS; i++) UMADD(a[i], xv, wasm_v128_load(r + (uint32_t)i * (uint32_t)ldb + k));
      }
      for (int i = 0; i < GEMV_ROWS; i++) {
        const float* ri = r + (uint32_t)i * (uint32_t)ldb;
        float s = hsum(a[i]);
        for (int k = K4; k < K; k++) s += x[k] * ri[k];
        put(y + n + i, s, alpha, beta);
      }
    }
    for (; n < n1; n++) {
      const float* r = B + (uint32_t)n * (uint32_t)ldb;
      v128_t a = wasm_f32x4_splat(0.0f);
      for (int k = 0; k < K4; k += 4) UMADD(a, wasm_v128_load(x + k), wasm_v128_load(r + k));
      float s = hsum(a);
      for (int k = K4; k < K; k++) s += x[k] * r[k];
      put(y + n, s, alpha, beta);
    }
    return;
  }
  // y[n] = Σ_k x[k] B[k*ldb + n]: 32 columns at a time down all K rows.
  int n = n0;
  for (; n + 32 <= n1; n += 32) {
    v128_t c0 = wasm_f32x4_splat(0.0f), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0;
    const float* b = B + n;
    for (int k = 0; k < K; k++, b += ldb) {
      v128_t xv = wasm_f32x4_splat(x[k]);
      FMA(c0, xv, wasm_v128_load(b));
      FMA(c1, xv, wasm_v128_load(b + 4));
      FMA(c2, xv, wasm_v128_load(b + 8));
      FMA(c3, xv, wasm_v128_load(b + 12));
      FMA(c4, xv, wasm_v128_load(b + 16));
      FMA(c5, xv, wasm_v128_load(b + 20));
      FMA(c6, xv, wasm_v128_load(b + 24));
      FMA(c7, xv, wasm_v128_load(b + 28));
    }
    v128_t cs[8] = {c0, c1, c2, c3, c4, c5, c6, c7};
    float t[32];
    for (int i = 0; i < 8; i++) wasm_v128_store(t + 4 * i, cs[i]);
    for (int j = 0; j < 32; j++) put(y + n + j, t[j], alpha, beta);
  }
  for (; n < n1; n++) {
    float s = 0.0f;
    const float* b = B + n;
    for (int k = 0; k < K; k++, b += ldb) s += x[k] * *b;
    put(y + n, s, alpha, beta);
  }
}
