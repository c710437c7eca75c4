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
//
// Decoding a field costs one logical shift and one mask (the top field: the shift alone; the bottom field: the
// mask alone) instead of a shift pair: the block is first XORed with the top bit of every field, which turns
// each two's-complement field u into the unsigned u + C (C = 2^(CB−1)). The sum Σ (u + C)·xq of an int32 lane
// then exceeds the wanted Σ u·xq by C·Σ xq over that lane's columns of the group, an integer prepared once per
// call (ncorr[g], negated) that each lane starts from: the lane sums, and so every result, are the same
// integers as with signed decoding (int32 arithmetic wraps, so only the final sums must fit, as before). The
// shifts (which share two execution ports with the dot products on x86) drop from 2·FPI − 1 to FPI − 1 a block.
// 2-bit codes keep the signed shift pair (FIELD_S; with eight fields a lane the mask route measured no faster).
//
// Rows go four at a time for 4- and 8-bit containers (each xq load serves four rows, one int32 accumulator a
// row) and two at a time for 2-bit ones, taken from the quarters (halves) of a 128-row chunk so that several
// streams of codes are fetched side by side. Every row's integer group sums and float steps are those of the
// one-row kernel, so the results do not depend on the path.
#include "decode.h"

// xq (permuted, int16), ncorr[g] (the negated per-lane C·Σ xq of group g) and xs[g] = dx[g]·Σ xq, dx[g]
// from x (Kp floats, zero-padded).
static void prep_x(const int32_t* d, const float* x, int16_t* xq, v128_t* ncorr, float* dxs, float* xs) {
  int cb = d[D_CB], Kp = d[D_KP], ng = d[D_NG], gs = d[D_GS];
  int fpi = 16 / cb, bw = 128 / cb;
  v128_t c16 = wasm_i16x8_splat((int16_t)(1 << (cb - 1)));
  for (int g = 0; g < ng; g++) {
    int k0 = g * gs, k1 = imin(k0 + gs, Kp);
    float mx = absmax_f32(x, k0, k1);
    float inv = mx > 0.0f ? 32767.0f / mx : 0.0f;
    float dx = mx / 32767.0f;
    int sum = 0;
    v128_t corr = wasm_i32x4_splat(0);
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
        corr = wasm_i32x4_add(corr, wasm_i32x4_dot_i16x8(wasm_v128_load(dst + f * 8), c16));
      }
    }
    ncorr[g] = wasm_i32x4_neg(corr);
    dxs[g] = dx;
    xs[g] = dx * (float)sum;
  }
}

// Field f (of FPI = 16/CB) of every int16 lane of an offset block (v XOR the fields' top bits): u + C, unsigned.
#define FIELD(v, f, CB, m)                                                                \
  ((f) == 16 / (CB) - 1 ? wasm_u16x8_shr(v, 16 - (CB))                                    \
   : (f) == 0           ? wasm_v128_and(v, m)                                             \
                        : wasm_v128_and(wasm_u16x8_shr(v, (f) * (CB)), m))
// Field f of every int16 lane of a raw block, sign-extended (u itself): a shift pair.
#define FIELD_S(v, f, CB)                                                                 \
  ((f) == 16 / (CB) - 1 ? wasm_i16x8_shr(v, 16 - (CB)) : wasm_i16x8_shr(wasm_i16x8_shl(v, 16 - ((f) + 1) * (CB)), 16 - (CB)))
// The top bit of every CB-bit field of an int16 lane.
#define TOPS(CB) ((CB) == 2 ? (int16_t)0xAAAA : (CB) == 4 ? (int16_t)0x8888 : (int16_t)0x8080)

// One row: the lane sums of each group in int32 (from ncorr[g]), scaled once per group.
#define DEFINE_QMV_ROW(NAME, CB)                                                                            \
  static float NAME(const v128_t* w, const v128_t* xq, const v128_t* ncorr, const float* sc, const float* ze, \
                    const float* dxs, const float* xs, int ng, int bpg, int nb) {                             \
    const int fpi = 16 / (CB);                                                                                \
    const v128_t m = wasm_i16x8_splat((int16_t)((1 << (CB)) - 1)), tops = wasm_i16x8_splat(TOPS(CB));         \
    v128_t tot = wasm_f32x4_splat(0.0f);                                                                      \
    float zt = 0.0f;                                                                                          \
    for (int g = 0; g < ng; g++) {                                                                            \
      v128_t a0 = ncorr[g], a1 = wasm_i32x4_splat(0);                                                         \
      for (int b = g * bpg, be = imin(b + bpg, nb); b < be; b++) {                                            \
        v128_t v = wasm_v128_xor(wasm_v128_load(w + b), tops);                                                \
        const v128_t* xb = xq + b * fpi;                                                                      \
        _Pragma("clang loop unroll(full)") for (int f = 0; f < fpi; f += 2) {                                 \
          a0 = wasm_i32x4_add(a0, wasm_i32x4_dot_i16x8(FIELD(v, f, CB, m), wasm_v128_load(xb + f)));          \
          a1 = wasm_i32x4_add(a1, wasm_i32x4_dot_i16x8(FIELD(v, f + 1, CB, m), wasm_v128_load(xb + f + 1)));  \
        }                                                                                                     \
      }                                                                                                       \
      v128_t s = wasm_f32x4_splat(sc[g] * dxs[g]);                                                            \
      tot = wasm_f32x4_add(tot, wasm_f32x4_mul(wasm_f32x4_convert_i32x4(wasm_i32x4_add(a0, a1)), s));        \
      zt += sc[g] * ze[g] * xs[g];                                                                            \
    }                                                                                                         \
    return hsum(tot) - zt;                                                                                    \
  }
DEFINE_QMV_ROW(qmv_row_2, 2)
DEFINE_QMV_ROW(qmv_row_4, 4)
DEFINE_QMV_ROW(qmv_row_8, 8)

// Two rows per pass (whole groups), SG = 1: signed decoding (FIELD_S, no correction). The block loop is not
// unrolled across blocks (a full unroll hoisted every x load of a group and spilled registers).
#define DEFINE_QMV_ROW2(NAME, CB, BPG, SG)                                                                     \
  static void NAME(const v128_t* restrict w0, const v128_t* restrict w1, const v128_t* xq, const v128_t* ncorr, \
                   const float* sc0, const float* ze0, const float* sc1, const float* ze1, const float* dxs,     \
                   const float* xs, int ng, int bpg, float* y0, float* y1) {                                     \
    const int fpi = 16 / (CB);                                                                                   \
    (void)bpg;                                                                                                   \
    const v128_t m = wasm_i16x8_splat((int16_t)((1 << (CB)) - 1)), tops = wasm_i16x8_splat(TOPS(CB));            \
    v128_t t0 = wasm_f32x4_splat(0.0f), t1 = t0;                                                                 \
    float z0 = 0.0f, z1 = 0.0f;                                                                                  \
    for (int g = 0; g < ng; g++) {                                                                               \
      v128_t a1 = wasm_i32x4_splat(0), b1 = a1, a0 = SG ? a1 : ncorr[g], b0 = a0;                                          \
      _Pragma("clang loop unroll(disable)") for (int b = g * (BPG), be = b + (BPG); b < be; b++) {               \
        v128_t v = wasm_v128_load(w0 + b), u = wasm_v128_load(w1 + b);                                          \
        if (!SG) v = wasm_v128_xor(v, tops), u = wasm_v128_xor(u, tops); \
        const v128_t* xb = xq + b * fpi;                                                                         \
        _Pragma("clang loop unroll(full)") for (int f = 0; f < fpi; f += 2) {                                    \
          v128_t x0 = wasm_v128_load(xb + f), x1 = wasm_v128_load(xb + f + 1);                                   \
          a0 = wasm_i32x4_add(a0, wasm_i32x4_dot_i16x8((SG ? FIELD_S(v, f, CB) : FIELD(v, f, CB, m)), x0));                                 \
          b0 = wasm_i32x4_add(b0, wasm_i32x4_dot_i16x8((SG ? FIELD_S(u, f, CB) : FIELD(u, f, CB, m)), x0));                                 \
          a1 = wasm_i32x4_add(a1, wasm_i32x4_dot_i16x8((SG ? FIELD_S(v, f + 1, CB) : FIELD(v, f + 1, CB, m)), x1));                             \
          b1 = wasm_i32x4_add(b1, wasm_i32x4_dot_i16x8((SG ? FIELD_S(u, f + 1, CB) : FIELD(u, f + 1, CB, m)), x1));                             \
        }                                                                                                        \
      }                                                                                                          \
      t0 = wasm_f32x4_add(t0, wasm_f32x4_mul(wasm_f32x4_convert_i32x4(wasm_i32x4_add(a0, a1)),                   \
                                             wasm_f32x4_splat(sc0[g] * dxs[g])));                                \
      t1 = wasm_f32x4_add(t1, wasm_f32x4_mul(wasm_f32x4_convert_i32x4(wasm_i32x4_add(b0, b1)),                   \
                                             wasm_f32x4_splat(sc1[g] * dxs[g])));                                \
      z0 += sc0[g] * ze0[g] * xs[g];                                                                             \
      z1 += sc1[g] * ze1[g] * xs[g];                                                                             \
    }                                                                                                            \
    *y0 = hsum(t0) - z0;                                                                                         \
    *y1 = hsum(t1) - z1;                                                                                         \
  }
DEFINE_QMV_ROW2(qmv_rows2_2, 2, bpg, 1)
DEFINE_QMV_ROW2(qmv_rows2_2x1, 2, 1, 1)  // INT1/INT2 g64: one block a group, no block loop


// Four rows per pass (whole groups): each xq load serves four rows; one int32 accumulator a row.
// (Measured, 1 thread, same process interleaved: INT4 g128 2048×768 about +20 %, 32000×768 about +7 %
// over two rows.)
#define DEFINE_QMV_ROW4(NAME, CB)                                                                                 \
  static void NAME(const v128_t* const* w, const v128_t* xq, const v128_t* ncorr, const float* const* sc,          \
                   const float* const* ze, const float* dxs, const float* xs, int ng, int bpg, float* const* y) {  \
    const int fpi = 16 / (CB);                                                                                    \
    const v128_t m = wasm_i16x8_splat((int16_t)((1 << (CB)) - 1)), tops = wasm_i16x8_splat(TOPS(CB));             \
    const v128_t *w0 = w[0], *w1 = w[1], *w2 = w[2], *w3 = w[3];                                                  \
    v128_t t0 = wasm_f32x4_splat(0.0f), t1 = t0, t2 = t0, t3 = t0;                                                \
    float z0 = 0.0f, z1 = 0.0f, z2 = 0.0f, z3 = 0.0f;                                                             \
    for (int g = 0; g < ng; g++) {                                                                                \
      v128_t a0 = ncorr[g], a1 = a0, a2 = a0, a3 = a0;                                                            \
      _Pragma("clang loop unroll(disable)") for (int b = g * bpg, be = b + bpg; b < be; b++) {                    \
        v128_t v0 = wasm_v128_xor(wasm_v128_load(w0 + b), tops), v1 = wasm_v128_xor(wasm_v128_load(w1 + b), tops); \
        v128_t v2 = wasm_v128_xor(wasm_v128_load(w2 + b), tops), v3 = wasm_v128_xor(wasm_v128_load(w3 + b), tops); \
        const v128_t* xb = xq + b * fpi;                                                                          \
        _Pragma("clang loop unroll(full)") for (int f = 0; f < fpi; f++) {                                        \
          v128_t xf = wasm_v128_load(xb + f);                                                                     \
          a0 = wasm_i32x4_add(a0, wasm_i32x4_dot_i16x8(FIELD(v0, f, CB, m), xf));                                 \
          a1 = wasm_i32x4_add(a1, wasm_i32x4_dot_i16x8(FIELD(v1, f, CB, m), xf));                                 \
          a2 = wasm_i32x4_add(a2, wasm_i32x4_dot_i16x8(FIELD(v2, f, CB, m), xf));                                 \
          a3 = wasm_i32x4_add(a3, wasm_i32x4_dot_i16x8(FIELD(v3, f, CB, m), xf));                                 \
        }                                                                                                         \
      }                                                                                                           \
      float d = dxs[g], xg = xs[g];                                                                               \
      t0 = wasm_f32x4_add(t0, wasm_f32x4_mul(wasm_f32x4_convert_i32x4(a0), wasm_f32x4_splat(sc[0][g] * d)));     \
      t1 = wasm_f32x4_add(t1, wasm_f32x4_mul(wasm_f32x4_convert_i32x4(a1), wasm_f32x4_splat(sc[1][g] * d)));     \
      t2 = wasm_f32x4_add(t2, wasm_f32x4_mul(wasm_f32x4_convert_i32x4(a2), wasm_f32x4_splat(sc[2][g] * d)));     \
      t3 = wasm_f32x4_add(t3, wasm_f32x4_mul(wasm_f32x4_convert_i32x4(a3), wasm_f32x4_splat(sc[3][g] * d)));     \
      z0 += sc[0][g] * ze[0][g] * xg;                                                                             \
      z1 += sc[1][g] * ze[1][g] * xg;                                                                             \
      z2 += sc[2][g] * ze[2][g] * xg;                                                                             \
      z3 += sc[3][g] * ze[3][g] * xg;                                                                             \
    }                                                                                                             \
    *y[0] = hsum(t0) - z0;                                                                                        \
    *y[1] = hsum(t1) - z1;                                                                                        \
    *y[2] = hsum(t2) - z2;                                                                                        \
    *y[3] = hsum(t3) - z3;                                                                                        \
  }
DEFINE_QMV_ROW4(qmv_rows4_4, 4)
DEFINE_QMV_ROW4(qmv_rows4_8, 8)

typedef void (*Rows2)(const v128_t* restrict, const v128_t* restrict, const v128_t*, const v128_t*, const float*,
                      const float*, const float*, const float*, const float*, const float*, int, int, float*,
                      float*);

// The two-row kernel (2-bit containers) for a number of blocks per group.
static Rows2 rows2_for(int bpg) {
  return bpg == 1 ? qmv_rows2_2x1 : qmv_rows2_2;
}

void qk_qmv_run(int32_t* job, int tid, float* scratch) {
#ifdef __wasm_relaxed_simd__
  if (job[QV_I8]) {
    qk_qmv8_run(job, tid, scratch);
    return;
  }
#endif
  (void)tid;
  const int32_t* d = (const int32_t*)(uintptr_t)(uint32_t)job[Q_DESC];
  const float* x = (const float*)(uintptr_t)(uint32_t)job[Q_X];
  float* y = (float*)(uintptr_t)(uint32_t)job[Q_Y];
  int cb = d[D_CB], N = d[D_N], Kp = d[D_KP], ng = d[D_NG], gs = d[D_GS], wpr = d[D_WPR];
  int bw = 128 / cb, bpg = gs / bw, nb = Kp / bw;
  // scratch: xq (Kp int16), ncorr[ng] (v128), dx[ng], xs[ng]; every part 16-aligned
  int16_t* xq = (int16_t*)scratch;
  v128_t* ncorr = (v128_t*)(scratch + ((Kp / 2 + 3) & ~3));
  float* dxs = (float*)(ncorr + ng);
  float* xs = dxs + ng;
  prep_x(d, x, xq, ncorr, dxs, xs);
  const uint32_t* words = (const uint32_t*)(uintptr_t)(uint32_t)d[D_WORDS];
  const float* scales = (const float*)(uintptr_t)(uint32_t)d[D_SCALES];
  const float* zeros = (const float*)(uintptr_t)(uint32_t)d[D_ZEROS];
  const v128_t* x16 = (const v128_t*)xq;
  // whole groups only: the last group of a row must not be short
  int whole = ng * bpg == nb;
  Rows2 rows2 = rows2_for(bpg);
  for (;;) {
    int c = __atomic_fetch_add(&job[J_NEXT], 1, __ATOMIC_RELAXED);
    int n0 = c * QMV_CHUNK;
    if (n0 >= N) break;
    int n1 = imin(n0 + QMV_CHUNK, N);
    int n = n0;
    if (whole && cb != 2) {
      int qr = (n1 - n0) >> 2;
      for (; n < n0 + qr; n++) {
        QmvRows4 r4 = qmv_rows4_at(words, scales, zeros, y, n, qr, wpr, ng);
        (cb == 4 ? qmv_rows4_4 : qmv_rows4_8)(r4.w, x16, ncorr, r4.sc, r4.ze, dxs, xs, ng, bpg, r4.y);
      }
      n = n0 + 4 * qr;
    }
    if (whole && cb == 2) {
      int half = (n1 - n) >> 1;
      int s0 = n;
      for (; n < s0 + half; n++) {
        int m = n + half;
        rows2((const v128_t*)(words + (uint32_t)n * (uint32_t)wpr), (const v128_t*)(words + (uint32_t)m * (uint32_t)wpr),
              x16, ncorr, scales + (uint32_t)n * (uint32_t)ng, zeros + (uint32_t)n * (uint32_t)ng,
              scales + (uint32_t)m * (uint32_t)ng, zeros + (uint32_t)m * (uint32_t)ng, dxs, xs, ng, bpg, y + n, y + m);
      }
      n = s0 + 2 * half;
    }
    for (; n < n1; n++) {
      const v128_t* w = (const v128_t*)(words + (uint32_t)n * (uint32_t)wpr);
      const float* sc = scales + (uint32_t)n * (uint32_t)ng;
      const float* ze = zeros + (uint32_t)n * (uint32_t)ng;
      y[n] = cb == 4   ? qmv_row_4(w, x16, ncorr, sc, ze, dxs, xs, ng, bpg, nb)
             : cb == 2 ? qmv_row_2(w, x16, ncorr, sc, ze, dxs, xs, ng, bpg, nb)
                       : qmv_row_8(w, x16, ncorr, sc, ze, dxs, xs, ng, bpg, nb);
    }
  }
}
