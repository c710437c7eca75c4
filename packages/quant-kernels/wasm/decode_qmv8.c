// Quantized matvec for decoding with int8 activations (OP_QMV with QV_I8 set; relaxed-SIMD module only):
// y[n] = Σ_k W[n,k]·x[k] over a resident affine layer in 4-bit containers (INT3–INT4, contiguous groups of
// whole v128 blocks of 32 columns), with i16x8.relaxed_dot_i8x16_i7x16_s. x is rounded to int8 once per call
// with one step per block b (32 columns) of weight group g, a power-of-two fraction of the group's step
// (llama.cpp's Q4_0 decode rounds x to int8 per 32 columns too, with free steps):
//   dx[g] = max_{k∈g} |x[k]| / 127,   e[b] = the largest e ≤ E with max_{k∈b} |x[k]| · 2^e ≤ max_{k∈g} |x[k]|,
//   xq[k] = round(x[k] · 2^e[b] / dx[g])                       (|xq| ≤ 127, |x − dx·2^−e[b]·xq| ≤ dx·2^−e[b]/2)
// so a block whose values are small beside the group's maximum keeps 7 significant bits instead of a few. The
// power-of-two steps keep a group's sum one integer: with m[b] = 2^(E − e[b]) each row is
//   y[n] = Σ_g s[n,g] · dx[g]·2^−E · (Σ_b m[b] · Σ_{k∈b} u[n,k]·xq[k] − z'[n,g] · Σ_b m[b] · Σ_{k∈b} xq[k])
// with the resident centred codes u = q − c and zeros z' = z − c, exact in int32 while gs·C·127·2^E < 2^31
// (C = 2^(CB−1) = 8): E is the largest such exponent ≤ 14 (m[b] an int16), per layer (g128: 14).
// The dot product's unsigned 7-bit operand is the code offset to u + C (the block XORed with every field's top
// bit, then one field of every byte masked out: 0..15), its signed 8-bit operand xq (the pairwise int16 sums, at
// most 2·15·127, never saturate); a block's two fields add up in int16 (≤ 4·15·127 per lane) and widen to int32
// with i32x4.dot_i16x8_s against m[b] (its scaling for free); the group's int32 accumulator starts at
// −C·Σ_b m[b]·Σ xq (lane 0), so its lanes add up to the integer Σ_b m[b]·Σ u·xq exactly.
// Node 20's V8 (11.3) computes i32x4.relaxed_dot_i8x16_i7x16_add_s wrongly in its baseline compiler (Liftoff:
// twice the dot product, the accumulator dropped), so that form is not used.
// Byte i of a block holds two fields; field f of byte i is column 4·(2·(i&3) + f) + (i>>2) of the block
// (kernels.h's word layout read as bytes), so x is stored permuted to that order, one v128 of xq per field.
// 1–2-bit layers keep decode_qmv.c's int16 activations (with 2-bit codes this path measured no faster).
// Rows go four at a time (each xq load serves four rows), taken from the quarters of a 128-row chunk as in
// decode_qmv.c; every row's integer group sums and float steps are those of the one-row kernel.
#include "decode.h"

#ifdef __wasm_relaxed_simd__
// The block exponent bound E of a layer: the largest E ≤ 14 with gs·8·127·2^E < 2^31.
static int qmv8_emax(int gs) {
  int e = 0;
  while (e < 14 && ((int64_t)gs * 8 * 127 << (e + 1)) < ((int64_t)1 << 31)) e++;
  return e;
}

// xq (permuted, int8), mul[b] = m[b] (int16 lanes), ncorr[g] = (−C·Σ_b m[b]·Σ xq, 0, 0, 0), dxs[g] = dx[g]·2^−E
// and xs[g] = dxs[g]·Σ_b m[b]·Σ xq, from x (Kp floats, zero-padded).
static void prep_x8(const int32_t* d, const float* x, int8_t* xq, v128_t* mul, v128_t* ncorr, float* dxs,
                    float* xs) {
  int Kp = d[D_KP], ng = d[D_NG], gs = d[D_GS];
  int emax = qmv8_emax(gs);
  for (int g = 0; g < ng; g++) {
    int k0 = g * gs, k1 = imin(k0 + gs, Kp);
    float mx = absmax_f32(x, k0, k1);
    float inv = mx > 0.0f ? 127.0f / mx : 0.0f;
    float dx = mx / 127.0f;
    int sum = 0;
    for (int b0 = k0; b0 < k1; b0 += 32) {
      float mb = absmax_f32(x, b0, b0 + 32);
      int e = 0;
      while (e < emax && mb * (float)(2 << e) <= mx) e++;
      float up = (float)(1 << e);
      int m = 1 << (emax - e), bsum = 0;
      int8_t* dst = xq + b0;
      for (int f = 0; f < 2; f++)
        for (int i = 0; i < 16; i++) {
          int q = (int)__builtin_rintf(x[b0 + 4 * (2 * (i & 3) + f) + (i >> 2)] * inv * up);
          q = q > 127 ? 127 : q < -127 ? -127 : q;
          dst[f * 16 + i] = (int8_t)q;
          bsum += q;
        }
      mul[b0 / 32] = wasm_i16x8_splat((int16_t)m);
      sum += m * bsum;
    }
    ncorr[g] = wasm_i32x4_make(-8 * sum, 0, 0, 0);
    dxs[g] = dx * (1.0f / (float)(1 << emax));
    xs[g] = dxs[g] * (float)sum;
  }
}

#define LO4(v, m) wasm_v128_and(v, m)
#define HI4(v, m) wasm_v128_and(wasm_u16x8_shr(v, 4), m)
// The int16 lanes of block v's (offset codes) products with its two fields of xq: 4 products a lane.
#define DOT2(x0, x1, v, m) \
  wasm_i16x8_add(wasm_i16x8_relaxed_dot_i8x16_i7x16(x0, LO4(v, m)), wasm_i16x8_relaxed_dot_i8x16_i7x16(x1, HI4(v, m)))

// One row.
static float qmv8_row(const v128_t* w, const v128_t* xq, const v128_t* mul, const v128_t* ncorr, const float* sc,
                      const float* ze, const float* dxs, const float* xs, int ng, int bpg, int nb) {
  const v128_t m = wasm_i8x16_splat(0x0F), tops = wasm_i8x16_splat((int8_t)0x88);
  float tot = 0.0f, zt = 0.0f;
  for (int g = 0; g < ng; g++) {
    v128_t a = ncorr[g];
    for (int b = g * bpg, be = imin(b + bpg, nb); b < be; b++) {
      v128_t v = wasm_v128_xor(wasm_v128_load(w + b), tops);
      a = wasm_i32x4_add(a, wasm_i32x4_dot_i16x8(DOT2(xq[2 * b], xq[2 * b + 1], v, m), mul[b]));
    }
    int sum = wasm_i32x4_extract_lane(a, 0) + wasm_i32x4_extract_lane(a, 1) + wasm_i32x4_extract_lane(a, 2) +
              wasm_i32x4_extract_lane(a, 3);
    tot += (float)sum * (sc[g] * dxs[g]);
    zt += sc[g] * ze[g] * xs[g];
  }
  return tot - zt;
}

// Four rows per pass: each xq (and m) load serves four rows; one int32 accumulator a row.
static void qmv8_rows4(const v128_t* const* w, const v128_t* xq, const v128_t* mul, const v128_t* ncorr,
                       const float* const* sc, const float* const* ze, const float* dxs, const float* xs, int ng,
                       int bpg, int nb, float* const* y) {
  const v128_t m = wasm_i8x16_splat(0x0F), tops = wasm_i8x16_splat((int8_t)0x88);
  const v128_t *w0 = w[0], *w1 = w[1], *w2 = w[2], *w3 = w[3];
  v128_t tot = wasm_f32x4_splat(0.0f), zt = tot;
  for (int g = 0; g < ng; g++) {
    v128_t a0 = ncorr[g], a1 = a0, a2 = a0, a3 = a0;
    _Pragma("clang loop unroll(disable)") for (int b = g * bpg, be = imin(b + bpg, nb); b < be; b++) {
      v128_t x0 = xq[2 * b], x1 = xq[2 * b + 1], mb = mul[b];
      v128_t v0 = wasm_v128_xor(wasm_v128_load(w0 + b), tops), v1 = wasm_v128_xor(wasm_v128_load(w1 + b), tops);
      v128_t v2 = wasm_v128_xor(wasm_v128_load(w2 + b), tops), v3 = wasm_v128_xor(wasm_v128_load(w3 + b), tops);
      a0 = wasm_i32x4_add(a0, wasm_i32x4_dot_i16x8(DOT2(x0, x1, v0, m), mb));
      a1 = wasm_i32x4_add(a1, wasm_i32x4_dot_i16x8(DOT2(x0, x1, v1, m), mb));
      a2 = wasm_i32x4_add(a2, wasm_i32x4_dot_i16x8(DOT2(x0, x1, v2, m), mb));
      a3 = wasm_i32x4_add(a3, wasm_i32x4_dot_i16x8(DOT2(x0, x1, v3, m), mb));
    }
    // lane j: row j's integer group sum, then its float steps (those of the one-row kernel), four rows at once
    v128_t p01 = wasm_i32x4_add(wasm_i32x4_shuffle(a0, a1, 0, 4, 2, 6), wasm_i32x4_shuffle(a0, a1, 1, 5, 3, 7));
    v128_t p23 = wasm_i32x4_add(wasm_i32x4_shuffle(a2, a3, 0, 4, 2, 6), wasm_i32x4_shuffle(a2, a3, 1, 5, 3, 7));
    v128_t s = wasm_i32x4_add(wasm_i32x4_shuffle(p01, p23, 0, 1, 4, 5), wasm_i32x4_shuffle(p01, p23, 2, 3, 6, 7));
    v128_t scv = wasm_f32x4_make(sc[0][g], sc[1][g], sc[2][g], sc[3][g]);
    v128_t zev = wasm_f32x4_make(ze[0][g], ze[1][g], ze[2][g], ze[3][g]);
    tot = wasm_f32x4_add(tot, wasm_f32x4_mul(wasm_f32x4_convert_i32x4(s), wasm_f32x4_mul(scv, wasm_f32x4_splat(dxs[g]))));
    zt = wasm_f32x4_add(zt, wasm_f32x4_mul(wasm_f32x4_mul(scv, zev), wasm_f32x4_splat(xs[g])));
  }
  tot = wasm_f32x4_sub(tot, zt);
  *y[0] = wasm_f32x4_extract_lane(tot, 0);
  *y[1] = wasm_f32x4_extract_lane(tot, 1);
  *y[2] = wasm_f32x4_extract_lane(tot, 2);
  *y[3] = wasm_f32x4_extract_lane(tot, 3);
}

void qk_qmv8_run(int32_t* job, int tid, float* scratch) {
  (void)tid;
  const int32_t* d = PTR(const int32_t*, job[Q_DESC]);
  const float* x = PTR(const float*, job[Q_X]);
  float* y = PTR(float*, job[Q_Y]);
  int N = d[D_N], Kp = d[D_KP], ng = d[D_NG], gs = d[D_GS], wpr = d[D_WPR];
  int bpg = gs / 32, nb = Kp / 32;
  // scratch: xq (Kp int8), mul[nb] (v128), ncorr[ng] (v128), dx[ng], xs[ng]; every part 16-aligned (Kp is a
  // multiple of 32)
  int8_t* xq = (int8_t*)scratch;
  v128_t* mul = (v128_t*)(scratch + Kp / 4);
  v128_t* ncorr = mul + nb;
  float* dxs = (float*)(ncorr + ng);
  float* xs = dxs + ng;
  prep_x8(d, x, xq, mul, ncorr, dxs, xs);
  const uint32_t* words = PTR(const uint32_t*, d[D_WORDS]);
  const float* scales = PTR(const float*, d[D_SCALES]);
  const float* zeros = PTR(const float*, d[D_ZEROS]);
  const v128_t* x8 = (const v128_t*)xq;
  for (;;) {
    int c = __atomic_fetch_add(&job[J_NEXT], 1, __ATOMIC_RELAXED);
    int n0 = c * QMV_CHUNK;
    if (n0 >= N) break;
    int n1 = imin(n0 + QMV_CHUNK, N);
    int n = n0;
    int qr = (n1 - n0) >> 2;
    for (; n < n0 + qr; n++) {
      QmvRows4 r4 = qmv_rows4_at(words, scales, zeros, y, n, qr, wpr, ng);
      qmv8_rows4(r4.w, x8, mul, ncorr, r4.sc, r4.ze, dxs, xs, ng, bpg, nb, r4.y);
    }
    for (n = n0 + 4 * qr; n < n1; n++) {
      const v128_t* w = (const v128_t*)(words + (uint32_t)n * (uint32_t)wpr);
      const float* sc = scales + (uint32_t)n * (uint32_t)ng;
      const float* ze = zeros + (uint32_t)n * (uint32_t)ng;
      y[n] = qmv8_row(w, x8, mul, ncorr, sc, ze, dxs, xs, ng, bpg, nb);
    }
  }
}
#endif
