// Quantized matvec for decoding with int8 activations (OP_QMV with QV_I8 set; relaxed-SIMD module only):
// y[n] = Σ_k W[n,k]·x[k] over a resident affine layer in 4-bit containers (INT3–INT4, contiguous groups of
// whole v128 blocks), with i16x8.relaxed_dot_i8x16_i7x16_s. x is rounded to int8 once per call,
// one scale per weight group g (llama.cpp's Q4_0 decode rounds x to int8 too, per 32 columns):
//   dx[g] = max_{k∈g} |x[k]| / 127,   xq[k] = round(x[k] / dx[g])      (|x − dx·xq| ≤ dx/2)
// and each row is, as in decode_qmv.c,
//   y[n] = Σ_g s[n,g] · dx[g] · (Σ_{k∈g} u[n,k]·xq[k] − z'[n,g] · Σ_{k∈g} xq[k])
// with the resident centred codes u = q − c and zeros z' = z − c. The dot product's unsigned 7-bit operand is
// the code offset to u + C (C = 2^(CB−1): the block XORed with every field's top bit, then one field of every
// byte masked out: 0..2^CB − 1), its signed 8-bit operand xq (|xq| ≤ 127, so the pairwise int16 sums, at most
// 2·15·127, never saturate); the group's int32 accumulator starts at −C·Σ xq (lane 0), so its lanes add up to
// the integer Σ u·xq exactly (the caller checks gs·C·127 < 2^31).
// Byte i of a block holds FPB = 8/CB fields; field f of byte i is column 4·(FPB·(i&3) + f) + (i>>2) of the block
// (kernels.h's word layout read as bytes), so x is stored permuted to that order, one v128 of xq per field.
// The kernels are written for CB = 2 too, but only 4-bit containers use them: with 2-bit codes (one block a g64
// group, four fields a byte) this path measured no faster than decode_qmv.c's int16 two-row kernel, so
// 1–2-bit layers keep int16 activations. Rows go four at a time (each xq load serves four rows), taken from the
// quarters of a 32-row chunk as in decode_qmv.c; every row's integer group sums and float steps are those of the
// one-row kernel.
#include "decode.h"

#ifdef __wasm_relaxed_simd__
// xq (permuted, int8), ncorr[g] = (−C·Σ xq, 0, 0, 0), dxs[g] and xs[g] = dx[g]·Σ xq, from x (Kp floats,
// zero-padded).
static void prep_x8(const int32_t* d, const float* x, int8_t* xq, v128_t* ncorr, float* dxs, float* xs) {
  int cb = d[D_CB], Kp = d[D_KP], ng = d[D_NG], gs = d[D_GS];
  int fpb = 8 / cb, bw = 128 / cb;
  for (int g = 0; g < ng; g++) {
    int k0 = g * gs, k1 = qmv_imin(k0 + gs, Kp);
    float mx = absmax_f32(x, k0, k1);
    float inv = mx > 0.0f ? 127.0f / mx : 0.0f;
    float dx = mx / 127.0f;
    int sum = 0;
    for (int b0 = k0; b0 < k1; b0 += bw) {
      int8_t* dst = xq + b0;
      for (int f = 0; f < fpb; f++)
        for (int i = 0; i < 16; i++) {
          int q = (int)__builtin_rintf(x[b0 + 4 * (fpb * (i & 3) + f) + (i >> 2)] * inv);
          q = q > 127 ? 127 : q < -127 ? -127 : q;
          dst[f * 16 + i] = (int8_t)q;
          sum += q;
        }
    }
    ncorr[g] = wasm_i32x4_make(-(1 << (cb - 1)) * sum, 0, 0, 0);
    dxs[g] = dx;
    xs[g] = dx * (float)sum;
  }
}

// Field f (of FPB = 8/CB) of every byte of an offset block (v XOR the fields' top bits): u + C, unsigned.
#define FIELD8(v, f, CB, m) ((f) == 0 ? wasm_v128_and(v, m) : wasm_v128_and(wasm_u16x8_shr(v, (f) * (CB)), m))
#define TOPS8(CB) ((CB) == 2 ? (int8_t)0xAA : (int8_t)0x88)
// acc16 += the pairwise products of x (int8) and w (0..127) in int16 lanes (i16x8.relaxed_dot_i8x16_i7x16_s:
// pmaddubsw on x86). Node 20's V8 (11.3) computes i32x4.relaxed_dot_i8x16_i7x16_add_s wrongly in its baseline
// compiler (Liftoff: twice the dot product, the accumulator dropped), so the int32 form is not used: the int16
// sums are widened with i32x4.dot_i16x8_s against ones after at most RUN8(CB) blocks.
#define DOT8(a, x, w) a = wasm_i16x8_add(a, wasm_i16x8_relaxed_dot_i8x16_i7x16(x, w))
// Blocks whose int16 sums may pile up in a lane: each block adds FPB dot products of at most 2·(2^CB − 1)·127
// to a lane (8·3810 = 30480 for four 4-bit blocks, 40·762 = 30480 for ten 2-bit ones), below 2^15.
#define RUN8(CB) ((CB) == 4 ? 4 : 10)

// One row.
#define DEFINE_QMV8_ROW(NAME, CB)                                                                             \
  static float NAME(const v128_t* w, const v128_t* xq, const v128_t* ncorr, const float* sc, const float* ze,   \
                    const float* dxs, const float* xs, int ng, int bpg, int nb) {                               \
    const int fpb = 8 / (CB);                                                                                   \
    const v128_t m = wasm_i8x16_splat((int8_t)((1 << (CB)) - 1)), tops = wasm_i8x16_splat(TOPS8(CB));           \
    const v128_t ones = wasm_i16x8_splat(1);                                                                    \
    float tot = 0.0f, zt = 0.0f;                                                                                \
    for (int g = 0; g < ng; g++) {                                                                              \
      v128_t a = ncorr[g];                                                                                      \
      for (int r = g * bpg, be = qmv_imin(r + bpg, nb); r < be; r += RUN8(CB)) {                                   \
        v128_t h = wasm_i16x8_splat(0);                                                                         \
        for (int b = r, re = qmv_imin(r + RUN8(CB), be); b < re; b++) {                                            \
          v128_t v = wasm_v128_xor(wasm_v128_load(w + b), tops);                                                \
          const v128_t* xb = xq + b * fpb;                                                                      \
          _Pragma("clang loop unroll(full)") for (int f = 0; f < fpb; f++) DOT8(h, wasm_v128_load(xb + f), FIELD8(v, f, CB, m)); \
        }                                                                                                       \
        a = wasm_i32x4_add(a, wasm_i32x4_dot_i16x8(h, ones));                                                   \
      }                                                                                                         \
      int sum = wasm_i32x4_extract_lane(a, 0) + wasm_i32x4_extract_lane(a, 1) + wasm_i32x4_extract_lane(a, 2) +  \
                wasm_i32x4_extract_lane(a, 3);                                                                  \
      tot += (float)sum * (sc[g] * dxs[g]);                                                                     \
      zt += sc[g] * ze[g] * xs[g];                                                                              \
    }                                                                                                           \
    return tot - zt;                                                                                            \
  }
DEFINE_QMV8_ROW(qmv8_row_4, 4)

// Four rows per pass (whole groups): each xq load serves four rows; one int32 accumulator a row.
#define DEFINE_QMV8_ROW4(NAME, CB)                                                                                \
  static void NAME(const v128_t* const* w, const v128_t* xq, const v128_t* ncorr, const float* const* sc,          \
                   const float* const* ze, const float* dxs, const float* xs, int ng, int bpg, int nb,            \
                   float* const* y) {                                                                              \
    const int fpb = 8 / (CB);                                                                                     \
    const v128_t m = wasm_i8x16_splat((int8_t)((1 << (CB)) - 1)), tops = wasm_i8x16_splat(TOPS8(CB));             \
    const v128_t ones = wasm_i16x8_splat(1);                                                                      \
    const v128_t *w0 = w[0], *w1 = w[1], *w2 = w[2], *w3 = w[3];                                                  \
    v128_t tot = wasm_f32x4_splat(0.0f), zt = tot;                                                                \
    for (int g = 0; g < ng; g++) {                                                                                \
      v128_t a0 = ncorr[g], a1 = a0, a2 = a0, a3 = a0;                                                            \
      for (int r = g * bpg, be = qmv_imin(r + bpg, nb); r < be; r += RUN8(CB)) {                                     \
        v128_t h0 = wasm_i16x8_splat(0), h1 = h0, h2 = h0, h3 = h0;                                               \
        _Pragma("clang loop unroll(disable)") for (int b = r, re = qmv_imin(r + RUN8(CB), be); b < re; b++) {        \
          v128_t v0 = wasm_v128_xor(wasm_v128_load(w0 + b), tops), v1 = wasm_v128_xor(wasm_v128_load(w1 + b), tops); \
          v128_t v2 = wasm_v128_xor(wasm_v128_load(w2 + b), tops), v3 = wasm_v128_xor(wasm_v128_load(w3 + b), tops); \
          const v128_t* xb = xq + b * fpb;                                                                        \
          _Pragma("clang loop unroll(full)") for (int f = 0; f < fpb; f++) {                                      \
            v128_t xf = wasm_v128_load(xb + f);                                                                   \
            DOT8(h0, xf, FIELD8(v0, f, CB, m));                                                                   \
            DOT8(h1, xf, FIELD8(v1, f, CB, m));                                                                   \
            DOT8(h2, xf, FIELD8(v2, f, CB, m));                                                                   \
            DOT8(h3, xf, FIELD8(v3, f, CB, m));                                                                   \
          }                                                                                                       \
        }                                                                                                         \
        a0 = wasm_i32x4_add(a0, wasm_i32x4_dot_i16x8(h0, ones));                                                  \
        a1 = wasm_i32x4_add(a1, wasm_i32x4_dot_i16x8(h1, ones));                                                  \
        a2 = wasm_i32x4_add(a2, wasm_i32x4_dot_i16x8(h2, ones));                                                  \
        a3 = wasm_i32x4_add(a3, wasm_i32x4_dot_i16x8(h3, ones));                                                  \
      }                                                                                                           \
      /* lane j: row j's integer group sum, then its float steps (those of the one-row kernel), four rows at once */ \
      v128_t p01 = wasm_i32x4_add(wasm_i32x4_shuffle(a0, a1, 0, 4, 2, 6), wasm_i32x4_shuffle(a0, a1, 1, 5, 3, 7));  \
      v128_t p23 = wasm_i32x4_add(wasm_i32x4_shuffle(a2, a3, 0, 4, 2, 6), wasm_i32x4_shuffle(a2, a3, 1, 5, 3, 7));  \
      v128_t s = wasm_i32x4_add(wasm_i32x4_shuffle(p01, p23, 0, 1, 4, 5), wasm_i32x4_shuffle(p01, p23, 2, 3, 6, 7)); \
      v128_t scv = wasm_f32x4_make(sc[0][g], sc[1][g], sc[2][g], sc[3][g]);                                      \
      v128_t zev = wasm_f32x4_make(ze[0][g], ze[1][g], ze[2][g], ze[3][g]);                                      \
      tot = wasm_f32x4_add(tot, wasm_f32x4_mul(wasm_f32x4_convert_i32x4(s), wasm_f32x4_mul(scv, wasm_f32x4_splat(dxs[g])))); \
      zt = wasm_f32x4_add(zt, wasm_f32x4_mul(wasm_f32x4_mul(scv, zev), wasm_f32x4_splat(xs[g])));               \
    }                                                                                                             \
    tot = wasm_f32x4_sub(tot, zt);                                                                                \
    *y[0] = wasm_f32x4_extract_lane(tot, 0);                                                                      \
    *y[1] = wasm_f32x4_extract_lane(tot, 1);                                                                      \
    *y[2] = wasm_f32x4_extract_lane(tot, 2);                                                                      \
    *y[3] = wasm_f32x4_extract_lane(tot, 3);                                                                      \
  }
DEFINE_QMV8_ROW4(qmv8_rows4_4, 4)

#define QMV8_CHUNK 32

void qk_qmv8_run(int32_t* job, int tid, float* scratch) {
  (void)tid;
  const int32_t* d = PTR(const int32_t*, job[Q_DESC]);
  const float* x = PTR(const float*, job[Q_X]);
  float* y = PTR(float*, job[Q_Y]);
  int cb = d[D_CB], N = d[D_N], Kp = d[D_KP], ng = d[D_NG], gs = d[D_GS], wpr = d[D_WPR];
  int bpg = gs / (128 / cb), nb = Kp / (128 / cb);
  // scratch: xq (Kp int8), ncorr[ng] (v128), dx[ng], xs[ng]; every part 16-aligned (Kp is a multiple of 32)
  int8_t* xq = (int8_t*)scratch;
  v128_t* ncorr = (v128_t*)(scratch + Kp / 4);
  float* dxs = (float*)(ncorr + ng);
  float* xs = dxs + ng;
  prep_x8(d, x, xq, ncorr, dxs, xs);
  const uint32_t* words = PTR(const uint32_t*, d[D_WORDS]);
  const float* scales = PTR(const float*, d[D_SCALES]);
  const float* zeros = PTR(const float*, d[D_ZEROS]);
  const v128_t* x8 = (const v128_t*)xq;
  for (;;) {
    int c = __atomic_fetch_add(&job[J_NEXT], 1, __ATOMIC_RELAXED);
    int n0 = c * QMV8_CHUNK;
    if (n0 >= N) break;
    int n1 = qmv_imin(n0 + QMV8_CHUNK, N);
    int n = n0;
    int qr = (n1 - n0) >> 2;
    for (; n < n0 + qr; n++) {
      QmvRows4 r4 = qmv_rows4_at(words, scales, zeros, y, n, qr, wpr, ng);
      qmv8_rows4_4(r4.w, x8, ncorr, r4.sc, r4.ze, dxs, xs, ng, bpg, nb, r4.y);
    }
    for (n = n0 + 4 * qr; n < n1; n++) {
      const v128_t* w = (const v128_t*)(words + (uint32_t)n * (uint32_t)wpr);
      const float* sc = scales + (uint32_t)n * (uint32_t)ng;
      const float* ze = zeros + (uint32_t)n * (uint32_t)ng;
      y[n] = qmv8_row_4(w, x8, ncorr, sc, ze, dxs, xs, ng, bpg, nb);
    }
  }
}
#endif
