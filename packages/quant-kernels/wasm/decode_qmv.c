// Quantized matvec for decoding (OP_QMV): y[n] = Σ_k W[n,k]·x[k] over a resident affine layer in 2-, 4- or
// 8-bit containers (INT1–INT8, contiguous groups of whole v128 blocks), with integer dot products.
// x is rounded to int16 once per call, one scale per weight group g:
//   dx[g] = max_{k∈g} |x[k]| / 32767,   xq[k] = round(x[k] / dx[g])      (|x − dx·xq| ≤ dx/2)
// and each row is
//   y[n] = Σ_g s[n,g] · dx[g] · (Σ_{k∈g} u[n,k]·xq[k] − z'[n,g] · Σ_{k∈g} xq[k])
// with the resident centred codes u = q − c and zeros z' = z − c (c = 2^(bits−1)): the integer sums
// are exact in int32 (the caller checks gs·2^(CB−1)·32767 < 2^31), so the only rounding beyond float
// arithmetic is x's int16 rounding. A block (one v128 of codes) read as eight int16 lanes holds
// FPI = 16/CB fields per lane; field f of lane L is column 4·(FPI·(L&1) + f) + (L>>1) of the block (see
// kernels.h), so x is stored permuted to that order and field f's codes multiply one v128 of xq with
// i32x4.dot_i16x8_s. Each thread prepares its own xq in its scratch, then takes chunks of rows.
#include "decode.h"

static inline int imin(int a, int b) { return a < b ? a : b; }

// xq (permuted, int16) and xs[g] = dx[g]·Σ xq, dx[g] from x (Kp floats, zero-padded).
static void prep_x(const int32_t* d, const float* x, int16_t* xq, float* dxs, float* xs) {
  int cb = d[D_CB], Kp = d[D_KP], ng = d[D_NG], gs = d[D_GS];
  int fpi = 16 / cb, bw = 128 / cb;
  for (int g = 0; g < ng; g++) {
    int k0 = g * gs, k1 = imin(k0 + gs, Kp);
    v128_t m = wasm_f32x4_splat(0.0f);
    for (int k = k0; k < k1; k += 4) m = wasm_f32x4_max(m, wasm_f32x4_abs(wasm_v128_load(x + k)));
    m = wasm_f32x4_max(m, wasm_i32x4_shuffle(m, m, 2, 3, 0, 1));
    m = wasm_f32x4_max(m, wasm_i32x4_shuffle(m, m, 1, 0, 3, 2));
    float mx = wasm_f32x4_extract_lane(m, 0);
    float inv = mx > 0.0f ? 32767.0f / mx : 0.0f;
    float dx = mx / 32767.0f;
    int sum = 0;
    for (int b0 = k0; b0 < k1; b0 += bw) {
      int16_t* dst = xq + b0;
      for (int f = 0; f < fpi; f++) {
        for (int L = 0; L < 8; L++) {
          int col = b0 + 4 * (fpi * (L & 1) + f) + (L >> 1);
          int q = (int)__builtin_rintf(x[col] * inv);
          q = q > 32767 ? 32767 : q < -32767 ? -32767 : q;
          dst[f * 8 + L] = (int16_t)q;
          sum += q;
        }
      }
    }
    dxs[g] = dx;
    xs[g] = dx * (float)sum;
  }
}

// One row: the code sum of each group in int32, scaled once per group.
#define DEFINE_QMV_ROW(NAME, CB)                                                                          \
  static float NAME(const v128_t* w, const v128_t* xq, const float* sc, const float* ze, const float* dxs,   \
                    const float* xs, int ng, int bpg, int nb) {                                             \
    const int fpi = 16 / (CB);                                                                               \
    v128_t tot = wasm_f32x4_splat(0.0f);                                                                     \
    float zt = 0.0f;                                                                                         \
    for (int g = 0; g < ng; g++) {                                                                           \
      v128_t a0 = wasm_i32x4_splat(0), a1 = a0;                                                              \
      for (int b = g * bpg, be = imin(b + bpg, nb); b < be; b++) {                                           \
        v128_t v = wasm_v128_load(w + b);                                                                    \
        const v128_t* xb = xq + b * fpi;                                                                     \
        _Pragma("clang loop unroll(full)") for (int f = 0; f < fpi; f += 2) {                                \
          v128_t u0 = wasm_i16x8_shr(wasm_i16x8_shl(v, 16 - (f + 1) * (CB)), 16 - (CB));                     \
          v128_t u1 = f + 2 == fpi ? wasm_i16x8_shr(v, 16 - (CB))                                            \
                                   : wasm_i16x8_shr(wasm_i16x8_shl(v, 16 - (f + 2) * (CB)), 16 - (CB));      \
          a0 = wasm_i32x4_add(a0, wasm_i32x4_dot_i16x8(u0, wasm_v128_load(xb + f)));                        \
          a1 = wasm_i32x4_add(a1, wasm_i32x4_dot_i16x8(u1, wasm_v128_load(xb + f + 1)));                    \
        }                                                                                                    \
      }                                                                                                      \
      v128_t s = wasm_f32x4_splat(sc[g] * dxs[g]);                                                           \
      tot = wasm_f32x4_add(tot, wasm_f32x4_mul(wasm_f32x4_convert_i32x4(wasm_i32x4_add(a0, a1)), s));       \
      zt += sc[g] * ze[g] * xs[g];                                                                           \
    }                                                                                                        \
    return hsum(tot) - zt;                                                                                   \
  }
DEFINE_QMV_ROW(qmv_row_2, 2)
DEFINE_QMV_ROW(qmv_row_4, 4)
DEFINE_QMV_ROW(qmv_row_8, 8)

// Two rows per pass for the common shapes (BPG blocks per group, a compile-time constant, and whole groups):
// each xq load serves both rows and the block loop unrolls fully, about a third fewer instructions per
// weight than two calls of the one-row kernel. Each row's integer group sums and float steps are those of
// the one-row kernel, so the results are identical.
#define DEFINE_QMV_ROW2(NAME, CB, BPG)                                                                        \
  static void NAME(const v128_t* restrict w0, const v128_t* restrict w1, const v128_t* xq, const float* sc0,  \
                   const float* ze0, const float* sc1, const float* ze1, const float* dxs, const float* xs,     \
                   int ng, float* y) {                                                                        \
    const int fpi = 16 / (CB);                                                                                \
    v128_t t0 = wasm_f32x4_splat(0.0f), t1 = t0;                                                              \
    float z0 = 0.0f, z1 = 0.0f;                                                                               \
    for (int g = 0; g < ng; g++) {                                                                            \
      v128_t a0 = wasm_i32x4_splat(0), a1 = a0, b0 = a0, b1 = a0;                                             \
      _Pragma("clang loop unroll(full)") for (int i = 0; i < (BPG); i++) {                                    \
        int b = g * (BPG) + i;                                                                                \
        v128_t v = wasm_v128_load(w0 + b), u = wasm_v128_load(w1 + b);                                        \
        const v128_t* xb = xq + b * fpi;                                                                      \
        _Pragma("clang loop unroll(full)") for (int f = 0; f < fpi; f += 2) {                                 \
          v128_t x0 = wasm_v128_load(xb + f), x1 = wasm_v128_load(xb + f + 1);                                \
          v128_t v0 = wasm_i16x8_shr(wasm_i16x8_shl(v, 16 - (f + 1) * (CB)), 16 - (CB));                     \
          v128_t v1 = f + 2 == fpi ? wasm_i16x8_shr(v, 16 - (CB))                                             \
                                   : wasm_i16x8_shr(wasm_i16x8_shl(v, 16 - (f + 2) * (CB)), 16 - (CB));       \
          v128_t u0 = wasm_i16x8_shr(wasm_i16x8_shl(u, 16 - (f + 1) * (CB)), 16 - (CB));                     \
          v128_t u1 = f + 2 == fpi ? wasm_i16x8_shr(u, 16 - (CB))                                             \
                                   : wasm_i16x8_shr(wasm_i16x8_shl(u, 16 - (f + 2) * (CB)), 16 - (CB));       \
          a0 = wasm_i32x4_add(a0, wasm_i32x4_dot_i16x8(v0, x0));                                              \
          a1 = wasm_i32x4_add(a1, wasm_i32x4_dot_i16x8(v1, x1));                                              \
          b0 = wasm_i32x4_add(b0, wasm_i32x4_dot_i16x8(u0, x0));                                              \
          b1 = wasm_i32x4_add(b1, wasm_i32x4_dot_i16x8(u1, x1));                                              \
        }                                                                                                     \
      }                                                                                                       \
      t0 = wasm_f32x4_add(t0, wasm_f32x4_mul(wasm_f32x4_convert_i32x4(wasm_i32x4_add(a0, a1)),                \
                                             wasm_f32x4_splat(sc0[g] * dxs[g])));                             \
      t1 = wasm_f32x4_add(t1, wasm_f32x4_mul(wasm_f32x4_convert_i32x4(wasm_i32x4_add(b0, b1)),                \
                                             wasm_f32x4_splat(sc1[g] * dxs[g])));                             \
      z0 += sc0[g] * ze0[g] * xs[g];                                                                          \
      z1 += sc1[g] * ze1[g] * xs[g];                                                                          \
    }                                                                                                         \
    y[0] = hsum(t0) - z0;                                                                                     \
    y[1] = hsum(t1) - z1;                                                                                     \
  }
DEFINE_QMV_ROW2(qmv_rows2_2x1, 2, 1)  // INT2 g64
DEFINE_QMV_ROW2(qmv_rows2_2x2, 2, 2)  // INT2 g128
DEFINE_QMV_ROW2(qmv_rows2_4x2, 4, 2)  // INT3/INT4 g64
DEFINE_QMV_ROW2(qmv_rows2_4x4, 4, 4)  // INT3/INT4 g128
DEFINE_QMV_ROW2(qmv_rows2_8x4, 8, 4)  // INT5–INT8 g64
DEFINE_QMV_ROW2(qmv_rows2_8x8, 8, 8)  // INT5–INT8 g128

typedef void (*Rows2)(const v128_t* restrict, const v128_t* restrict, const v128_t*, const float*, const float*,
                      const float*, const float*, const float*, const float*, int, float*);

// The two-row kernel for (CB, blocks per group), or 0.
static Rows2 rows2_for(int cb, int bpg) {
  if (cb == 2) return bpg == 1 ? qmv_rows2_2x1 : bpg == 2 ? qmv_rows2_2x2 : 0;
  if (cb == 4) return bpg == 2 ? qmv_rows2_4x2 : bpg == 4 ? qmv_rows2_4x4 : 0;
  return bpg == 4 ? qmv_rows2_8x4 : bpg == 8 ? qmv_rows2_8x8 : 0;
}

void qk_qmv_run(int32_t* job, int tid, float* scratch) {
  (void)tid;
  const int32_t* d = (const int32_t*)(uintptr_t)(uint32_t)job[Q_DESC];
  const float* x = (const float*)(uintptr_t)(uint32_t)job[Q_X];
  float* y = (float*)(uintptr_t)(uint32_t)job[Q_Y];
  int cb = d[D_CB], N = d[D_N], Kp = d[D_KP], ng = d[D_NG], gs = d[D_GS], wpr = d[D_WPR];
  int bw = 128 / cb, bpg = gs / bw, nb = Kp / bw;
  // scratch: xq (Kp int16, 16-aligned), dx[ng], xs[ng]
  int16_t* xq = (int16_t*)scratch;
  float* dxs = scratch + ((Kp / 2 + 3) & ~3);
  float* xs = dxs + ng;
  prep_x(d, x, xq, dxs, xs);
  const uint32_t* words = (const uint32_t*)(uintptr_t)(uint32_t)d[D_WORDS];
  const float* scales = (const float*)(uintptr_t)(uint32_t)d[D_SCALES];
  const float* zeros = (const float*)(uintptr_t)(uint32_t)d[D_ZEROS];
  const v128_t* x16 = (const v128_t*)xq;
  // whole groups only: the last group of a row must not be short
  Rows2 rows2 = ng * bpg == nb ? rows2_for(cb, bpg) : 0;
  for (;;) {
    int c = __atomic_fetch_add(&job[J_NEXT], 1, __ATOMIC_RELAXED);
    int n0 = c * 32;
    if (n0 >= N) break;
    int n1 = imin(n0 + 32, N);
    int n = n0;
    if (rows2) {
      for (; n + 2 <= n1; n += 2) {
        const uint32_t* r0 = words + (uint32_t)n * (uint32_t)wpr;
        const float* s0 = scales + (uint32_t)n * (uint32_t)ng;
        const float* z0 = zeros + (uint32_t)n * (uint32_t)ng;
        rows2((const v128_t*)r0, (const v128_t*)(r0 + wpr), x16, s0, z0, s0 + ng, z0 + ng, dxs, xs, ng, y + n);
      }
    }
    for (; n < n1; n++) {
      const v128_t* w = (const v128_t*)(words + (uint32_t)n * (uint32_t)wpr);
      const float* sc = scales + (uint32_t)n * (uint32_t)ng;
      const float* ze = zeros + (uint32_t)n * (uint32_t)ng;
      y[n] = cb == 4   ? qmv_row_4(w, x16, sc, ze, dxs, xs, ng, bpg, nb)
             : cb == 2 ? qmv_row_2(w, x16, sc, ze, dxs, xs, ng, bpg, nb)
                       : qmv_row_8(w, x16, sc, ze, dxs, xs, ng, bpg, nb);
    }
  }
}
