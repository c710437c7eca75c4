// Resident quantized weights: re-packing into lane-interleaved containers (see kernels.h),
// tile dequantization, and the fused kernels
//   y[n]  = Σ_g s[n,g] · (Σ_{k∈g} u[n,k]·x[k] − z'[n,g] · Σ_{k∈g} x[k])
//   dx[k] = Σ_n g[n] · s[n,g(k)] · (u[n,k] − z'[n,g(k)])
// with centred codes u = q − c and zeros z' = z − c, c = 2^(bits−1). Centring keeps the two terms
// of the matvec small (symmetric formats have z' = 0 exactly, so nothing cancels), and signed
// codes decode with two shifts (shl, shr_s) and no mask.
#include "quant.h"

static inline int imin(int a, int b) { return a < b ? a : b; }

// Columns of x per tile in the fused matvec (16 KiB of x).
#define QK_XTILE 4096

static inline int log2_per(int cb) { return cb == 2 ? 4 : cb == 4 ? 3 : 2; }

int qk_fast(const int32_t* d) { return d[D_GIDX] == 0 && d[D_GS] > 0 && (d[D_GS] & 3) == 0; }

// Centred code of column k of a resident row.
static inline int32_t code_at(const uint32_t* w, int cb, int lp, int k) {
  int bw = 4 << lp;
  int blk = k >> (lp + 2);
  int rem = k & (bw - 1);
  int t = rem >> 2;
  return ((int32_t)(w[blk * 4 + (rem & 3)] << (32 - (t + 1) * cb))) >> (32 - cb);
}

// The four centred codes of step t of a v128 block.
static inline v128_t decode(v128_t v, int t, int cb) {
  return wasm_i32x4_shr(wasm_i32x4_shl(v, 32 - (t + 1) * cb), 32 - cb);
}

static inline int group_of(const int32_t* d, int k) {
  const int32_t* gidx = (const int32_t*)(uintptr_t)d[D_GIDX];
  return gidx ? gidx[k] : k / d[D_GS];
}

// Re-packs a bitpack matrix (LSB-first stream per row, rows word-aligned, srcWpr words per row)
// into the resident container layout, centring each code. The destination must be zeroed.
QK_EXPORT(qk_repack) void qk_repack(const int32_t* d, const uint32_t* src, int srcWpr) {
  int bits = d[D_BITS], cb = d[D_CB], lp = log2_per(cb), N = d[D_N], K = d[D_K], wpr = d[D_WPR];
  uint32_t* words = (uint32_t*)(uintptr_t)d[D_WORDS];
  uint32_t mask = (1u << bits) - 1u, cmask = (1u << cb) - 1u, c = 1u << (bits - 1);
  int bw = 4 << lp;
  for (int n = 0; n < N; n++) {
    const uint32_t* s = src + (uint32_t)n * (uint32_t)srcWpr;
    uint32_t* w = words + (uint32_t)n * (uint32_t)wpr;
    for (int k = 0; k < K; k++) {
      uint32_t bit = (uint32_t)k * (uint32_t)bits;
      uint32_t wi = bit >> 5, sh = bit & 31;
      uint32_t v = s[wi] >> sh;
      if (sh + bits > 32) v |= s[wi + 1] << (32 - sh);
      v = ((v & mask) - c) & cmask;
      int blk = k >> (lp + 2), rem = k & (bw - 1);
      w[blk * 4 + (rem & 3)] |= v << ((rem >> 2) * cb);
    }
  }
}

void qk_dequant_range(const int32_t* d, int row, int k0, int k1, float* out) {
  int cb = d[D_CB], lp = log2_per(cb), ng = d[D_NG], gs = d[D_GS];
  const uint32_t* w = (const uint32_t*)(uintptr_t)d[D_WORDS] + (uint32_t)row * (uint32_t)d[D_WPR];
  const float* sc = (const float*)(uintptr_t)d[D_SCALES] + (uint32_t)row * (uint32_t)ng;
  const float* ze = (const float*)(uintptr_t)d[D_ZEROS] + (uint32_t)row * (uint32_t)ng;
  int k = k0;
  if (qk_fast(d) && (k0 & 3) == 0) {
    int per = 1 << lp;
    while (k + 4 <= k1) {
      int g = k / gs;
      int end = imin((g + 1) * gs, k1);
      int ve = k + ((end - k) & ~3);
      if (ve == k) break;
      v128_t s = wasm_f32x4_splat(sc[g]), z = wasm_f32x4_splat(ze[g]);
      for (; k < ve; k += 4) {
        v128_t v = wasm_v128_load(w + (k >> (lp + 2)) * 4);
        v128_t q = decode(v, (k >> 2) & (per - 1), cb);
        wasm_v128_store(out + (k - k0), wasm_f32x4_mul(wasm_f32x4_sub(wasm_f32x4_convert_i32x4(q), z), s));
      }
    }
  }
  for (; k < k1; k++) {
    int g = group_of(d, k);
    out[k - k0] = sc[g] * ((float)code_at(w, cb, lp, k) - ze[g]);
  }
}

static inline float hsum(v128_t v) {
  return wasm_f32x4_extract_lane(v, 0) + wasm_f32x4_extract_lane(v, 1) + wasm_f32x4_extract_lane(v, 2) +
         wasm_f32x4_extract_lane(v, 3);
}

#define FMA(c, a, b) c = wasm_f32x4_add(c, wasm_f32x4_mul(a, b))

// Σ_{k in [k0,k1)} u[k]·x[k] for 4-aligned k0, k1.
static inline v128_t dot_steps(const uint32_t* w, const float* x, int cb, int lp, int k0, int k1) {
  v128_t a = wasm_f32x4_splat(0.0f);
  int per = 1 << lp;
  for (int k = k0; k < k1; k += 4) {
    v128_t v = wasm_v128_load(w + (k >> (lp + 2)) * 4);
    FMA(a, wasm_f32x4_convert_i32x4(decode(v, (k >> 2) & (per - 1), cb)), wasm_v128_load(x + k));
  }
  return a;
}

// One weight row, container width CB (a compile-time constant after inlining).
#define DEFINE_ROW(CB, LP)                                                                                    \
  static float row_##CB(const uint32_t* w, const float* x, const float* xs, const float* sc, const float* ze,    \
                        int g0, int ng, int gs, int Kp) {                                                       \
    const int per = 1 << LP, bw = 4 << LP;                                                                      \
    v128_t tot = wasm_f32x4_splat(0.0f);                                                                        \
    float corr = 0.0f;                                                                                          \
    for (int g = g0; g < ng; g++) {                                                                             \
      int k0 = g * gs, k1 = imin(k0 + gs, Kp);                                                                  \
      v128_t a0 = wasm_f32x4_splat(0.0f), a1 = a0;                                                              \
      if ((k0 & (bw - 1)) == 0 && ((k1 - k0) & (bw - 1)) == 0) {                                                \
        for (int b = k0 >> (LP + 2); b < (k1 >> (LP + 2)); b++) {                                               \
          v128_t v = wasm_v128_load(w + b * 4);                                                                 \
          const float* xb = x + b * bw;                                                                         \
          _Pragma("clang loop unroll(full)") for (int t = 0; t < per; t += 2) {                                 \
            FMA(a0, wasm_f32x4_convert_i32x4(decode(v, t, CB)), wasm_v128_load(xb + 4 * t));                    \
            FMA(a1, wasm_f32x4_convert_i32x4(decode(v, t + 1, CB)), wasm_v128_load(xb + 4 * t + 4));            \
          }                                                                                                     \
        }                                                                                                       \
      } else {                                                                                                  \
        a0 = dot_steps(w, x, CB, LP, k0, k1);                                                                   \
      }                                                                                                         \
      FMA(tot, wasm_f32x4_add(a0, a1), wasm_f32x4_splat(sc[g]));                                                \
      corr += sc[g] * ze[g] * xs[g];                                                                            \
    }                                                                                                           \
    return hsum(tot) - corr;                                                                                    \
  }
DEFINE_ROW(2, 4)
DEFINE_ROW(4, 3)
DEFINE_ROW(8, 2)

// Two weight rows at once (w and w + wpr): two independent code streams, one x load per step.
#define DEFINE_ROW2(CB, LP)                                                                                   \
  static void row2_##CB(const uint32_t* w, int wpr, const float* x, const float* xs, const float* sc,          \
                        const float* ze, int g0, int ng, int rowNg, int gs, int Kp, float* out) {               \
    const int per = 1 << LP, bw = 4 << LP;                                                                      \
    const uint32_t* w2 = w + wpr;                                                                               \
    v128_t tot = wasm_f32x4_splat(0.0f), tot2 = tot;                                                            \
    float corr = 0.0f, corr2 = 0.0f;                                                                            \
    for (int g = g0; g < ng; g++) {                                                                             \
      int k0 = g * gs, k1 = imin(k0 + gs, Kp);                                                                  \
      v128_t a0 = wasm_f32x4_splat(0.0f), a1 = a0, b0 = a0, b1 = a0;                                            \
      if ((k0 & (bw - 1)) == 0 && ((k1 - k0) & (bw - 1)) == 0) {                                                \
        for (int b = k0 >> (LP + 2); b < (k1 >> (LP + 2)); b++) {                                               \
          v128_t v = wasm_v128_load(w + b * 4), u = wasm_v128_load(w2 + b * 4);                                 \
          const float* xb = x + b * bw;                                                                         \
          _Pragma("clang loop unroll(full)") for (int t = 0; t < per; t += 2) {                                 \
            v128_t xa = wasm_v128_load(xb + 4 * t), xc = wasm_v128_load(xb + 4 * t + 4);                        \
            FMA(a0, wasm_f32x4_convert_i32x4(decode(v, t, CB)), xa);                                            \
            FMA(b0, wasm_f32x4_convert_i32x4(decode(u, t, CB)), xa);                                            \
            FMA(a1, wasm_f32x4_convert_i32x4(decode(v, t + 1, CB)), xc);                                        \
            FMA(b1, wasm_f32x4_convert_i32x4(decode(u, t + 1, CB)), xc);                                        \
          }                                                                                                     \
        }                                                                                                       \
      } else {                                                                                                  \
        a0 = dot_steps(w, x, CB, LP, k0, k1);                                                                   \
        b0 = dot_steps(w2, x, CB, LP, k0, k1);                                                                  \
      }                                                                                                         \
      FMA(tot, wasm_f32x4_add(a0, a1), wasm_f32x4_splat(sc[g]));                                                \
      FMA(tot2, wasm_f32x4_add(b0, b1), wasm_f32x4_splat(sc[rowNg + g]));                                       \
      corr += sc[g] * ze[g] * xs[g];                                                                            \
      corr2 += sc[rowNg + g] * ze[rowNg + g] * xs[g];                                                           \
    }                                                                                                           \
    out[0] = hsum(tot) - corr;                                                                                  \
    out[1] = hsum(tot2) - corr2;                                                                                \
  }
DEFINE_ROW2(2, 4)
DEFINE_ROW2(4, 3)
DEFINE_ROW2(8, 2)

void qk_xsums(const int32_t* d, const float* x, float* xs) {
  int ng = d[D_NG], gs = d[D_GS], Kp = d[D_KP];
  for (int g = 0; g < ng; g++) {
    int k0 = g * gs, k1 = imin(k0 + gs, Kp);
    v128_t a = wasm_f32x4_splat(0.0f);
    for (int k = k0; k < k1; k += 4) a = wasm_f32x4_add(a, wasm_v128_load(x + k));
    xs[g] = hsum(a);
  }
}

void qk_qmatvec_rows(const int32_t* d, const float* x, const float* xs, float* y, int n0, int n1, float* tmp) {
  int cb = d[D_CB], ng = d[D_NG], gs = d[D_GS], Kp = d[D_KP], K = d[D_K], wpr = d[D_WPR];
  const uint32_t* words = (const uint32_t*)(uintptr_t)d[D_WORDS];
  const float* scales = (const float*)(uintptr_t)d[D_SCALES];
  const float* zeros = (const float*)(uintptr_t)d[D_ZEROS];
  if (!qk_fast(d)) {
    // Act-order or odd group length: dequantize one row at a time, then dot.
    for (int n = n0; n < n1; n++) {
      qk_dequant_range(d, n, 0, K, tmp);
      v128_t a = wasm_f32x4_splat(0.0f);
      int k = 0;
      for (; k + 4 <= K; k += 4) FMA(a, wasm_v128_load(tmp + k), wasm_v128_load(x + k));
      float s = hsum(a);
      for (; k < K; k++) s += tmp[k] * x[k];
      y[n] = s;
    }
    return;
  }
  // Columns in tiles of about QK_XTILE so the tile of x stays in L1 while the rows stream past.
  int gt = gs >= QK_XTILE ? 1 : QK_XTILE / gs;
  for (int g0 = 0; g0 < ng; g0 += gt) {
    int g1 = imin(g0 + gt, ng);
    int n = n0;
    for (; n + 2 <= n1; n += 2) {
      const uint32_t* w = words + (uint32_t)n * (uint32_t)wpr;
      const float* sc = scales + (uint32_t)n * (uint32_t)ng;
      const float* ze = zeros + (uint32_t)n * (uint32_t)ng;
      float part[2];
      if (cb == 2) row2_2(w, wpr, x, xs, sc, ze, g0, g1, ng, gs, Kp, part);
      else if (cb == 4) row2_4(w, wpr, x, xs, sc, ze, g0, g1, ng, gs, Kp, part);
      else row2_8(w, wpr, x, xs, sc, ze, g0, g1, ng, gs, Kp, part);
      y[n] = g0 == 0 ? part[0] : y[n] + part[0];
      y[n + 1] = g0 == 0 ? part[1] : y[n + 1] + part[1];
    }
    for (; n < n1; n++) {
      const uint32_t* w = words + (uint32_t)n * (uint32_t)wpr;
      const float* sc = scales + (uint32_t)n * (uint32_t)ng;
      const float* ze = zeros + (uint32_t)n * (uint32_t)ng;
      float part = cb == 2   ? row_2(w, x, xs, sc, ze, g0, g1, gs, Kp)
                   : cb == 4 ? row_4(w, x, xs, sc, ze, g0, g1, gs, Kp)
                             : row_8(w, x, xs, sc, ze, g0, g1, gs, Kp);
      y[n] = g0 == 0 ? part : y[n] + part;
    }
  }
}

void qk_qmatvec_t_cols(const int32_t* d, const float* g, float* dx, int k0, int k1, float* tmp) {
  int cb = d[D_CB], lp = log2_per(cb), ng = d[D_NG], gs = d[D_GS], K = d[D_K], N = d[D_N], wpr = d[D_WPR];
  int per = 1 << lp;
  const uint32_t* words = (const uint32_t*)(uintptr_t)d[D_WORDS];
  const float* scales = (const float*)(uintptr_t)d[D_SCALES];
  const float* zeros = (const float*)(uintptr_t)d[D_ZEROS];
  for (int k = k0; k < k1; k += 4) wasm_v128_store(tmp + (k - k0), wasm_f32x4_splat(0.0f));
  for (int n = 0; n < N; n++) {
    const uint32_t* w = words + (uint32_t)n * (uint32_t)wpr;
    const float* sc = scales + (uint32_t)n * (uint32_t)ng;
    const float* ze = zeros + (uint32_t)n * (uint32_t)ng;
    float c = g[n];
    int k = k0;
    while (k < k1) {
      int gi = k / gs;
      int end = imin((gi + 1) * gs, k1);
      float cs = c * sc[gi];
      v128_t a = wasm_f32x4_splat(cs), b = wasm_f32x4_splat(-cs * ze[gi]);
      for (; k < end; k += 4) {
        v128_t v = wasm_v128_load(w + (k >> (lp + 2)) * 4);
        v128_t q = wasm_f32x4_convert_i32x4(decode(v, (k >> 2) & (per - 1), cb));
        float* t = tmp + (k - k0);
        wasm_v128_store(t, wasm_f32x4_add(wasm_v128_load(t), wasm_f32x4_add(wasm_f32x4_mul(q, a), b)));
      }
    }
  }
  int kend = imin(k1, K);
  for (int k = k0; k < kend; k++) dx[k] = tmp[k - k0];
}
