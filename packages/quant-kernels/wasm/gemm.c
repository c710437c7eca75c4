// Float32 GEMM and GEMV: packed-A/packed-B blocking (Goto/BLIS style) around a 4×8 f32x4
// micro-kernel. B panels come from a float matrix or are dequantized from a resident quantized
// weight a tile at a time (the fused qmatmul / qmatmulT paths), so the full float weight is never
// built.
#include "kernels.h"
#include "quant.h"

static inline int imin(int a, int b) { return a < b ? a : b; }

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

static const float ZERO_ROW[KC] = {0};

// dst[kk][j] = rows[j][kk] for kk < kc, j < w (w = 4 or 8): a w-wide panel from w contiguous rows,
// transposed 4×4 at a time.
static void pack_rows_t(const float* const* rows, int w, int kc, float* dst) {
  int kk = 0;
  for (; kk + 4 <= kc; kk += 4) {
    for (int h = 0; h < w; h += 4) {
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
  }
  for (; kk < kc; kk++) {
    for (int j = 0; j < w; j++) dst[kk * w + j] = rows[j][kk];
  }
}

// ap[panel][kk][i] = opA[i0 + panel*MR + i][p0 + kk], rows past mc zero.
static void pack_a(const float* A, int lda, int ta, int i0, int mc, int p0, int kc, float* ap) {
  for (int p = 0; p < mc; p += MR) {
    int mr = imin(MR, mc - p);
    float* dst = ap + p * kc;
    if (!ta) {
      const float* rows[MR];
      for (int i = 0; i < MR; i++) rows[i] = i < mr ? A + (uint32_t)(i0 + p + i) * (uint32_t)lda + p0 : ZERO_ROW;
      pack_rows_t(rows, MR, kc, dst);
    } else {
      for (int kk = 0; kk < kc; kk++) {
        const float* src = A + (uint32_t)(p0 + kk) * (uint32_t)lda + i0 + p;
        for (int i = 0; i < MR; i++) dst[kk * MR + i] = i < mr ? src[i] : 0.0f;
      }
    }
  }
}

// bp[panel][kk][j] = opB[p0 + kk][j0 + panel*NR + j], columns past nc zero.
static void pack_b(const BSource* s, int p0, int kc, int j0, int nc, float* bp, float* tmp) {
  if (s->kind == B_FLOAT) {
    const float* B = s->B;
    int ldb = s->ldb;
    for (int q = 0; q < nc; q += NR) {
      int nr = imin(NR, nc - q);
      float* dst = bp + q * kc;
      if (!s->tb) {
        for (int kk = 0; kk < kc; kk++) {
          const float* src = B + (uint32_t)(p0 + kk) * (uint32_t)ldb + j0 + q;
          if (nr == NR) {
            wasm_v128_store(dst + kk * NR, wasm_v128_load(src));
            wasm_v128_store(dst + kk * NR + 4, wasm_v128_load(src + 4));
          } else {
            for (int j = 0; j < NR; j++) dst[kk * NR + j] = j < nr ? src[j] : 0.0f;
          }
        }
      } else {
        const float* rows[NR];
        for (int j = 0; j < NR; j++) rows[j] = j < nr ? B + (uint32_t)(j0 + q + j) * (uint32_t)ldb + p0 : ZERO_ROW;
        pack_rows_t(rows, NR, kc, dst);
      }
    }
  } else if (s->kind == B_QUANT_T) {
    // opB[k][n] = W[n][k]: dequantize KC columns of NR weight rows.
    const int32_t* d = s->desc;
    for (int q = 0; q < nc; q += NR) {
      int nr = imin(NR, nc - q);
      const float* rows[NR];
      for (int j = 0; j < NR; j++) {
        if (j < nr) {
          qk_dequant_range(d, j0 + q + j, p0, p0 + kc, tmp + j * KC);
          rows[j] = tmp + j * KC;
        } else {
          rows[j] = ZERO_ROW;
        }
      }
      pack_rows_t(rows, NR, kc, bp + q * kc);
    }
  } else {
    // opB[k][n] = W[k][n]: dequantize NC columns of each of KC weight rows.
    const int32_t* d = s->desc;
    for (int kk = 0; kk < kc; kk++) {
      qk_dequant_range(d, p0 + kk, j0, j0 + nc, tmp);
      for (int q = 0; q < nc; q += NR) {
        int nr = imin(NR, nc - q);
        float* dst = bp + q * kc + kk * NR;
        if (nr == NR) {
          wasm_v128_store(dst, wasm_v128_load(tmp + q));
          wasm_v128_store(dst + 4, wasm_v128_load(tmp + q + 4));
        } else {
          for (int j = 0; j < NR; j++) dst[j] = j < nr ? tmp[q + j] : 0.0f;
        }
      }
    }
  }
}

// C[0..mr)[0..nr) += alpha * Apanel(4×kc) · Bpanel(kc×8).
static void kernel_4x8(int kc, const float* a, const float* b, float* C, int ldc, float alpha, int mr, int nr,
                       float* edge) {
  v128_t c00 = wasm_f32x4_splat(0.0f), c01 = c00, c10 = c00, c11 = c00;
  v128_t c20 = c00, c21 = c00, c30 = c00, c31 = c00;
  for (int k = 0; k < kc; k++) {
    v128_t b0 = wasm_v128_load(b);
    v128_t b1 = wasm_v128_load(b + 4);
    v128_t a0 = wasm_v128_load32_splat(a);
    FMA(c00, a0, b0);
    FMA(c01, a0, b1);
    v128_t a1 = wasm_v128_load32_splat(a + 1);
    FMA(c10, a1, b0);
    FMA(c11, a1, b1);
    v128_t a2 = wasm_v128_load32_splat(a + 2);
    FMA(c20, a2, b0);
    FMA(c21, a2, b1);
    v128_t a3 = wasm_v128_load32_splat(a + 3);
    FMA(c30, a3, b0);
    FMA(c31, a3, b1);
    a += MR;
    b += NR;
  }
  v128_t al = wasm_f32x4_splat(alpha);
  if (mr == MR && nr == NR) {
    float* c = C;
#define ROW(x0, x1)                                                                \
  wasm_v128_store(c, wasm_f32x4_add(wasm_v128_load(c), wasm_f32x4_mul(al, x0)));   \
  wasm_v128_store(c + 4, wasm_f32x4_add(wasm_v128_load(c + 4), wasm_f32x4_mul(al, x1))); \
  c += ldc;
    ROW(c00, c01) ROW(c10, c11) ROW(c20, c21) ROW(c30, c31)
#undef ROW
    return;
  }
  wasm_v128_store(edge + 0, c00);
  wasm_v128_store(edge + 4, c01);
  wasm_v128_store(edge + 8, c10);
  wasm_v128_store(edge + 12, c11);
  wasm_v128_store(edge + 16, c20);
  wasm_v128_store(edge + 20, c21);
  wasm_v128_store(edge + 24, c30);
  wasm_v128_store(edge + 28, c31);
  for (int i = 0; i < mr; i++) {
    for (int j = 0; j < nr; j++) C[(uint32_t)i * (uint32_t)ldc + j] += alpha * edge[i * NR + j];
  }
}

void qk_gemm_region(int K, const float* A, int lda, int ta, const BSource* bs, float* C, int ldc, float alpha,
                    float beta, int m0, int m1, int n0, int n1, float* scratch) {
  if (m0 >= m1 || n0 >= n1) return;
  scale_c(C, ldc, m0, m1, n0, n1, beta);
  if (alpha == 0.0f || K == 0) return;
  float* ap = scratch;
  float* bp = ap + MC * KC;
  float* edge = bp + KC * NC;
  float* tmp = edge + MR * NR;
  for (int jc = n0; jc < n1; jc += NC) {
    int nc = imin(NC, n1 - jc);
    for (int pc = 0; pc < K; pc += KC) {
      int kc = imin(KC, K - pc);
      pack_b(bs, pc, kc, jc, nc, bp, tmp);
      for (int ic = m0; ic < m1; ic += MC) {
        int mc = imin(MC, m1 - ic);
        pack_a(A, lda, ta, ic, mc, pc, kc, ap);
        for (int jr = 0; jr < nc; jr += NR) {
          int nr = imin(NR, nc - jr);
          for (int ir = 0; ir < mc; ir += MR) {
            int mr = imin(MR, mc - ir);
            kernel_4x8(kc, ap + ir * kc, bp + jr * kc, C + (uint32_t)(ic + ir) * (uint32_t)ldc + jc + jr, ldc, alpha,
                       mr, nr, edge);
          }
        }
      }
    }
  }
}

static inline void put(float* y, float v, float alpha, float beta) {
  *y = beta == 0.0f ? alpha * v : alpha * v + beta * *y;
}

// y[n0..n1) = alpha * x·op(B)[:, n] + beta*y, x contiguous (K).
void qk_gemv_region(int K, const float* x, const float* B, int ldb, int tb, float* y, float alpha, float beta, int n0,
                    int n1) {
  if (tb) {
    // y[n] = Σ_k x[k] B[n*ldb + k]: four rows at a time, two accumulators each.
    int n = n0;
    for (; n + 4 <= n1; n += 4) {
      const float* r0 = B + (uint32_t)n * (uint32_t)ldb;
      const float* r1 = r0 + ldb;
      const float* r2 = r1 + ldb;
      const float* r3 = r2 + ldb;
      v128_t a0 = wasm_f32x4_splat(0.0f), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
      int k = 0;
      for (; k + 8 <= K; k += 8) {
        v128_t x0 = wasm_v128_load(x + k), x1 = wasm_v128_load(x + k + 4);
        FMA(a0, x0, wasm_v128_load(r0 + k));
        FMA(b0, x1, wasm_v128_load(r0 + k + 4));
        FMA(a1, x0, wasm_v128_load(r1 + k));
        FMA(b1, x1, wasm_v128_load(r1 + k + 4));
        FMA(a2, x0, wasm_v128_load(r2 + k));
        FMA(b2, x1, wasm_v128_load(r2 + k + 4));
        FMA(a3, x0, wasm_v128_load(r3 + k));
        FMA(b3, x1, wasm_v128_load(r3 + k + 4));
      }
      float s0 = hsum(wasm_f32x4_add(a0, b0)), s1 = hsum(wasm_f32x4_add(a1, b1));
      float s2 = hsum(wasm_f32x4_add(a2, b2)), s3 = hsum(wasm_f32x4_add(a3, b3));
      for (; k < K; k++) {
        s0 += x[k] * r0[k];
        s1 += x[k] * r1[k];
        s2 += x[k] * r2[k];
        s3 += x[k] * r3[k];
      }
      put(y + n, s0, alpha, beta);
      put(y + n + 1, s1, alpha, beta);
      put(y + n + 2, s2, alpha, beta);
      put(y + n + 3, s3, alpha, beta);
    }
    for (; n < n1; n++) {
      const float* r = B + (uint32_t)n * (uint32_t)ldb;
      v128_t a = wasm_f32x4_splat(0.0f);
      int k = 0;
      for (; k + 4 <= K; k += 4) FMA(a, wasm_v128_load(x + k), wasm_v128_load(r + k));
      float s = hsum(a);
      for (; k < K; k++) s += x[k] * r[k];
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
