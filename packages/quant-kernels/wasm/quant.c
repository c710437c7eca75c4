// Resident quantized weights: re-packing into lane-interleaved containers (see kernels.h),
// tile dequantization, and the fused kernels
//   y[n]  = Σ_g s[n,g] · (Σ_{k∈g} u[n,k]·x[k] − z'[n,g] · Σ_{k∈g} x[k])
//   dx[k] = Σ_n g[n] · s[n,g(k)] · (u[n,k] − z'[n,g(k)])
// with centred codes u = q − c and zeros z' = z − c, c = 2^(bits−1). Centring keeps the two terms
// of the matvec small (symmetric formats have z' = 0 exactly, so nothing cancels), and signed
// codes decode with two shifts (shl, shr_s) and no mask.
#include "quant.h"

// Columns of x per tile in the fused matvec (16 KiB of x).
#define QK_XTILE 16384

static inline int log2_per(int cb) { return cb == 2 ? 4 : cb == 4 ? 3 : 2; }

// Codebook formats (D_LUT) are never fast: every kernel reaches them through qk_dequant_range.
int qk_fast(const int32_t* d) { return d[D_LUT] == 0 && d[D_GIDX] == 0 && d[D_GS] > 0 && (d[D_GS] & 3) == 0; }

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

// Codebook decode of one row range: out = s[g]·lut[u + c] (u the centred code, c = 2^(bits−1)), one
// float32 rounding of the product, as the reference computes fround(scale·codebook[q]). Four columns
// at a time when they share a group (contiguous groups whose length is a multiple of 4).
// Codebooks of up to 16 entries (bits <= 4; the resident table is zero-padded to 16 floats) are looked
// up in registers: the table is four v128s of four floats; byte j of lane i is byte 4·(q & 3) + j of
// table q >> 2 (one swizzle per table), and the right table's bytes are selected by q >> 2.
static inline v128_t lut16(v128_t q, v128_t t0, v128_t t1, v128_t t2, v128_t t3) {
  v128_t idx = wasm_i32x4_add(wasm_i32x4_mul(wasm_v128_and(q, wasm_i32x4_splat(3)), wasm_i32x4_splat(0x04040404)),
                              wasm_i32x4_splat(0x03020100));
  v128_t hi = wasm_i32x4_shr(q, 2);
  v128_t r = wasm_i8x16_swizzle(t0, idx);
  r = wasm_v128_bitselect(wasm_i8x16_swizzle(t1, idx), r, wasm_i32x4_eq(hi, wasm_i32x4_splat(1)));
  r = wasm_v128_bitselect(wasm_i8x16_swizzle(t2, idx), r, wasm_i32x4_eq(hi, wasm_i32x4_splat(2)));
  return wasm_v128_bitselect(wasm_i8x16_swizzle(t3, idx), r, wasm_i32x4_eq(hi, wasm_i32x4_splat(3)));
}

static void lut_range(const int32_t* d, const uint32_t* w, const float* sc, int k0, int k1, float* out) {
  int cb = d[D_CB], lp = log2_per(cb), gs = d[D_GS], per = 1 << lp, c = 1 << (d[D_BITS] - 1);
  const float* base = (const float*)(uintptr_t)d[D_LUT];
  const float* lut = base + c;
  int k = k0;
  if (d[D_GIDX] == 0 && gs > 0 && (gs & 3) == 0 && (k0 & 3) == 0) {
    if (d[D_BITS] <= 4) {
      v128_t t0 = wasm_v128_load(base), t1 = wasm_v128_load(base + 4), t2 = wasm_v128_load(base + 8),
             t3 = wasm_v128_load(base + 12), cv = wasm_i32x4_splat(c);
      for (; k + 4 <= k1; k += 4) {
        v128_t u = decode(wasm_v128_load(w + (k >> (lp + 2)) * 4), (k >> 2) & (per - 1), cb);
        v128_t t = lut16(wasm_i32x4_add(u, cv), t0, t1, t2, t3);
        wasm_v128_store(out + (k - k0), wasm_f32x4_mul(t, wasm_f32x4_splat(sc[k / gs])));
      }
    }
    for (; k + 4 <= k1; k += 4) {
      v128_t u = decode(wasm_v128_load(w + (k >> (lp + 2)) * 4), (k >> 2) & (per - 1), cb);
      v128_t t = wasm_f32x4_make(lut[wasm_i32x4_extract_lane(u, 0)], lut[wasm_i32x4_extract_lane(u, 1)],
                                 lut[wasm_i32x4_extract_lane(u, 2)], lut[wasm_i32x4_extract_lane(u, 3)]);
      wasm_v128_store(out + (k - k0), wasm_f32x4_mul(t, wasm_f32x4_splat(sc[k / gs])));
    }
  }
  for (; k < k1; k++) out[k - k0] = sc[group_of(d, k)] * lut[code_at(w, cb, lp, k)];
}

void qk_dequant_range(const int32_t* d, int row, int k0, int k1, float* out) {
  if (d[D_BLOCK]) {
    qk_block_range(d, row, k0, imin(k1, d[D_K]), out);
    return;
  }
  int cb = d[D_CB], lp = log2_per(cb), ng = d[D_NG], gs = d[D_GS];
  const uint32_t* w = (const uint32_t*)(uintptr_t)d[D_WORDS] + (uint32_t)row * (uint32_t)d[D_WPR];
  const float* sc = (const float*)(uintptr_t)d[D_SCALES] + (uint32_t)row * (uint32_t)ng;
  if (d[D_LUT]) {
    lut_range(d, w, sc, k0, k1, out);
    return;
  }
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

// Two decodes for the fused matvec.
// - Shift (any format): two shifts per field (shl, shr_s) give the centred code u itself.
// - Offset (asymmetric formats whose codes fill their container, D_OFFSET = 1): one AND per field.
//   XOR with the container's sign bits (SIGN_CB) turns every centred field u into the offset-binary
//   q = u + C, C = 2^(CB−1) (the format's own code, as bits = CB); AND with the field's mask leaves
//   q·2^(CB·t) in place, which converts to float exactly, and the prescaled x' = x·2^(−CB·t)
//   (qk_xprescale; a power of two, so exact) undoes the 2^(CB·t). The top field (t = PER−1) would
//   convert as a negative number, so it is shifted down instead and its x' is x itself. The row is
//   then s·(Σqx − z·Σx) with the format's own zeros z = z' + C. That is the usual asymmetric sum;
//   it cancels about as much as the centred one does when z' ≠ 0, which is why symmetric formats
//   (z' = 0, nothing cancels) keep the shift decode. Shifts share the vector pipes with the float
//   convert and add, AND does not: the offset decode is about 1.3× faster.
#define SIGN_2 0xAAAAAAAAu
#define SIGN_4 0x88888888u
#define SIGN_8 0x80808080u

// Field t of block v (already XORed with SIGN_CB when OFF). m: the field mask of t = 0, a runtime
// value: as a constant, V8 would rebuild each shifted mask from immediates at every use; as a value
// the shifted masks are computed once per row.
#define FIELD(v, t, CB, PER, m, OFF)                                                                      \
  (!(OFF)           ? decode(v, t, CB)                                                                    \
   : (t) == (PER)-1 ? wasm_u32x4_shr(v, 32 - (CB))                                                        \
                    : wasm_v128_and(v, wasm_i32x4_shl(m, (t) * (CB))))

// Σ_{g∈[g0,g1)} s[g]·(z'[g] + c)·xs[g]: the zero-point term of a row, four groups at a time.
static inline float zero_term(const float* sc, const float* ze, const float* xs, int g0, int g1, float c) {
  v128_t a = wasm_f32x4_splat(0.0f), cv = wasm_f32x4_splat(c);
  int g = g0;
  for (; g + 4 <= g1; g += 4) {
    v128_t z = wasm_f32x4_add(wasm_v128_load(ze + g), cv);
    FMA(a, wasm_f32x4_mul(wasm_v128_load(sc + g), z), wasm_v128_load(xs + g));
  }
  float r = hsum(a);
  for (; g < g1; g++) r += sc[g] * (ze[g] + c) * xs[g];
  return r;
}

// Rows whose groups are not whole v128 blocks (group length not a multiple of 4·PER): one 4-column
// step at a time with the shift decode, on x itself.
static float row_steps(const uint32_t* w, const float* x, const float* xs, const float* sc, const float* ze, int cb,
                       int g0, int ng, int gs, int Kp) {
  int lp = log2_per(cb);
  v128_t tot = wasm_f32x4_splat(0.0f);
  for (int g = g0; g < ng; g++) {
    int k0 = g * gs, k1 = imin(k0 + gs, Kp);
    FMA(tot, dot_steps(w, x, cb, lp, k0, k1), wasm_f32x4_splat(sc[g]));
  }
  return hsum(tot) - zero_term(sc, ze, xs, g0, ng, 0.0f);
}

// One weight row, container width CB and decode OFF (compile-time constants after inlining), groups
// of whole blocks. xp: x prescaled (qk_xprescale) for the offset decode, x itself for the shift one.
#define DEFINE_ROW(NAME, CB, LP, OFF)                                                                         \
  static float NAME(const uint32_t* w, const float* xp, const float* xs, const float* sc, const float* ze,     \
                    int g0, int ng, int gs, int Kp, uint32_t cmask) {                                           \
    const int per = 1 << LP, bw = 4 << LP, bpg = gs >> (LP + 2), nb = Kp >> (LP + 2);                           \
    const v128_t sign = wasm_u32x4_splat(OFF ? SIGN_##CB : 0u), m = wasm_u32x4_splat(cmask);                    \
    v128_t tot = wasm_f32x4_splat(0.0f);                                                                        \
    for (int g = g0; g < ng; g++) {                                                                             \
      v128_t a0 = wasm_f32x4_splat(0.0f), a1 = a0;                                                              \
      for (int b = g * bpg, be = imin(b + bpg, nb); b < be; b++) {                                              \
        v128_t v = wasm_v128_xor(wasm_v128_load(w + b * 4), sign);                                              \
        const float* xb = xp + b * bw;                                                                          \
        _Pragma("clang loop unroll(full)") for (int t = 0; t < per; t += 2) {                                   \
          FMA(a0, wasm_f32x4_convert_i32x4(FIELD(v, t, CB, per, m, OFF)), wasm_v128_load(xb + 4 * t));          \
          FMA(a1, wasm_f32x4_convert_i32x4(FIELD(v, t + 1, CB, per, m, OFF)), wasm_v128_load(xb + 4 * t + 4));  \
        }                                                                                                       \
      }                                                                                                         \
      FMA(tot, wasm_f32x4_add(a0, a1), wasm_v128_load32_splat(sc + g));                                         \
    }                                                                                                           \
    return hsum(tot) - zero_term(sc, ze, xs, g0, ng, OFF ? (float)(1 << (CB - 1)) : 0.0f);                      \
  }
DEFINE_ROW(row_2, 2, 4, 0)
DEFINE_ROW(row_4, 4, 3, 0)
DEFINE_ROW(row_8, 8, 2, 0)
DEFINE_ROW(row_2o, 2, 4, 1)
DEFINE_ROW(row_4o, 4, 3, 1)
DEFINE_ROW(row_8o, 8, 2, 1)

// Two weight rows at once (w and w + wpr): two independent code streams, one x load per step.
#define DEFINE_ROW2(NAME, CB, LP, OFF)                                                                        \
  static void NAME(const uint32_t* w, int wpr, const float* xp, const float* xs, const float* sc,              \
                   const float* ze, int g0, int ng, int rowNg, int gs, int Kp, uint32_t cmask, float* out) {    \
    const int per = 1 << LP, bw = 4 << LP, bpg = gs >> (LP + 2), nb = Kp >> (LP + 2);                           \
    const v128_t sign = wasm_u32x4_splat(OFF ? SIGN_##CB : 0u), m = wasm_u32x4_splat(cmask);                    \
    const uint32_t* w2 = w + wpr;                                                                               \
    v128_t tot = wasm_f32x4_splat(0.0f), tot2 = tot;                                                            \
    for (int g = g0; g < ng; g++) {                                                                             \
      v128_t a0 = wasm_f32x4_splat(0.0f), a1 = a0, b0 = a0, b1 = a0;                                            \
      for (int b = g * bpg, be = imin(b + bpg, nb); b < be; b++) {                                              \
        v128_t v = wasm_v128_xor(wasm_v128_load(w + b * 4), sign);                                              \
        v128_t u = wasm_v128_xor(wasm_v128_load(w2 + b * 4), sign);                                             \
        const float* xb = xp + b * bw;                                                                          \
        _Pragma("clang loop unroll(full)") for (int t = 0; t < per; t += 2) {                                   \
          v128_t xa = wasm_v128_load(xb + 4 * t), xc = wasm_v128_load(xb + 4 * t + 4);                          \
          FMA(a0, wasm_f32x4_convert_i32x4(FIELD(v, t, CB, per, m, OFF)), xa);                                  \
          FMA(b0, wasm_f32x4_convert_i32x4(FIELD(u, t, CB, per, m, OFF)), xa);                                  \
          FMA(a1, wasm_f32x4_convert_i32x4(FIELD(v, t + 1, CB, per, m, OFF)), xc);                              \
          FMA(b1, wasm_f32x4_convert_i32x4(FIELD(u, t + 1, CB, per, m, OFF)), xc);                              \
        }                                                                                                       \
      }                                                                                                         \
      FMA(tot, wasm_f32x4_add(a0, a1), wasm_v128_load32_splat(sc + g));                                         \
      FMA(tot2, wasm_f32x4_add(b0, b1), wasm_v128_load32_splat(sc + rowNg + g));                                \
    }                                                                                                           \
    const float c = OFF ? (float)(1 << (CB - 1)) : 0.0f;                                                        \
    out[0] = hsum(tot) - zero_term(sc, ze, xs, g0, ng, c);                                                      \
    out[1] = hsum(tot2) - zero_term(sc + rowNg, ze + rowNg, xs, g0, ng, c);                                     \
  }
DEFINE_ROW2(row2_2, 2, 4, 0)
DEFINE_ROW2(row2_4, 4, 3, 0)
DEFINE_ROW2(row2_8, 8, 2, 0)
DEFINE_ROW2(row2_2o, 2, 4, 1)
DEFINE_ROW2(row2_4o, 4, 3, 1)
DEFINE_ROW2(row2_8o, 8, 2, 1)

void qk_xprescale(const int32_t* d, const float* x, float* xp) {
  int cb = d[D_CB], lp = log2_per(cb), Kp = d[D_KP];
  int per = 1 << lp, bw = 4 << lp;
  for (int k = 0; k < Kp; k += 4) {
    int t = (k & (bw - 1)) >> 2;
    // 2^(−CB·t) built from its exponent bits; 1 for the top field.
    union {
      uint32_t i;
      float f;
    } u;
    u.i = (uint32_t)(127 - (t == per - 1 ? 0 : cb * t)) << 23;
    wasm_v128_store(xp + k, wasm_f32x4_mul(wasm_v128_load(x + k), wasm_f32x4_splat(u.f)));
  }
}

void qk_xsums(const int32_t* d, const float* x, float* xs) {
  int ng = d[D_NG], gs = d[D_GS], Kp = d[D_KP];
  for (int g = 0; g < ng; g++) {
    int k0 = g * gs, k1 = imin(k0 + gs, Kp);
    v128_t a = wasm_f32x4_splat(0.0f);
    for (int k = k0; k < k1; k += 4) a = wasm_f32x4_add(a, wasm_v128_load(x + k));
    xs[g] = hsum(a);
  }
}

// Fused codebook matvec (bits <= 4, contiguous groups whose length is a multiple of 4):
// y[n] = Σ_g s[n,g] · Σ_{k∈g} lut[q[n,k]]·x[k], the table in registers (lut16), no row buffer.
// x holds Kp floats, zero-padded, so the padding columns add nothing.
static void lut_matvec_rows(const int32_t* d, const float* x, float* y, int n0, int n1) {
  int cb = d[D_CB], lp = log2_per(cb), per = 1 << lp, ng = d[D_NG], gs = d[D_GS], Kp = d[D_KP], wpr = d[D_WPR];
  const uint32_t* words = (const uint32_t*)(uintptr_t)d[D_WORDS];
  const float* scales = (const float*)(uintptr_t)d[D_SCALES];
  const float* base = (const float*)(uintptr_t)d[D_LUT];
  v128_t t0 = wasm_v128_load(base), t1 = wasm_v128_load(base + 4), t2 = wasm_v128_load(base + 8),
         t3 = wasm_v128_load(base + 12), cv = wasm_i32x4_splat(1 << (d[D_BITS] - 1));
  for (int n = n0; n < n1; n++) {
    const uint32_t* w = words + (uint32_t)n * (uint32_t)wpr;
    const float* sc = scales + (uint32_t)n * (uint32_t)ng;
    v128_t tot = wasm_f32x4_splat(0.0f);
    for (int g = 0; g < ng; g++) {
      v128_t a = wasm_f32x4_splat(0.0f);
      for (int k = g * gs, k1 = imin(k + gs, Kp); k < k1; k += 4) {
        v128_t u = decode(wasm_v128_load(w + (k >> (lp + 2)) * 4), (k >> 2) & (per - 1), cb);
        FMA(a, lut16(wasm_i32x4_add(u, cv), t0, t1, t2, t3), wasm_v128_load(x + k));
      }
      FMA(tot, a, wasm_v128_load32_splat(sc + g));
    }
    y[n] = hsum(tot);
  }
}

// Codebooks in 4-bit containers (bits 3 or 4), groups of whole 32-column blocks: the "planar" matvec.
// A block is 32 nibbles; lane i, field t holds column 4t + i. Masking the even fields (lo) and shifting
// down the odd ones (hi) gives 16 codes per v128, one per byte; four swizzles read byte j of each code's
// float from byte plane j of the table, and two rounds of interleaves (unpack bytes, then 16-bit units)
// assemble four f32x4 of whole floats: from lo, lane b of vector i is column 8b + i; from hi, 8b + 4 + i.
// x is permuted once per call to that order (qk_lut_xperm), so the inner loop is loads and FMAs.
int qk_lut_planar(const int32_t* d) {
  return d[D_LUT] != 0 && d[D_CB] == 4 && d[D_GIDX] == 0 && d[D_GS] > 0 && (d[D_GS] & 31) == 0;
}

void qk_lut_xperm(const int32_t* d, const float* x, float* xp) {
  int Kp = d[D_KP];
  for (int b0 = 0; b0 < Kp; b0 += 32)
    for (int h = 0; h < 2; h++)
      for (int i = 0; i < 4; i++)
        for (int b = 0; b < 4; b++) xp[b0 + h * 16 + i * 4 + b] = x[b0 + 8 * b + 4 * h + i];
}

#define UNPACK8_LO(a, b) wasm_i8x16_shuffle(a, b, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23)
#define UNPACK8_HI(a, b) wasm_i8x16_shuffle(a, b, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31)
#define UNPACK16_LO(a, b) wasm_i8x16_shuffle(a, b, 0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23)
#define UNPACK16_HI(a, b) wasm_i8x16_shuffle(a, b, 8, 9, 24, 25, 10, 11, 26, 27, 12, 13, 28, 29, 14, 15, 30, 31)

// acc += the 16 floats of codes L (one per byte) times xb[0..16) (permuted x).
#define PLANAR(L, xb, acc)                                                                 \
  do {                                                                                     \
    v128_t r0 = wasm_i8x16_swizzle(p0, L), r1 = wasm_i8x16_swizzle(p1, L);                 \
    v128_t r2 = wasm_i8x16_swizzle(p2, L), r3 = wasm_i8x16_swizzle(p3, L);                 \
    v128_t alo = UNPACK8_LO(r0, r1), ahi = UNPACK8_HI(r0, r1);                             \
    v128_t blo = UNPACK8_LO(r2, r3), bhi = UNPACK8_HI(r2, r3);                             \
    FMA(acc, UNPACK16_LO(alo, blo), wasm_v128_load(xb));                                   \
    FMA(acc, UNPACK16_HI(alo, blo), wasm_v128_load((xb) + 4));                             \
    FMA(acc, UNPACK16_LO(ahi, bhi), wasm_v128_load((xb) + 8));                             \
    FMA(acc, UNPACK16_HI(ahi, bhi), wasm_v128_load((xb) + 12));                            \
  } while (0)

static void lut_matvec_planar(const int32_t* d, const float* xp, float* y, int n0, int n1) {
  int ng = d[D_NG], gs = d[D_GS], Kp = d[D_KP], wpr = d[D_WPR], nb = Kp >> 5, bpg = gs >> 5;
  const uint32_t* words = (const uint32_t*)(uintptr_t)d[D_WORDS];
  const float* scales = (const float*)(uintptr_t)d[D_SCALES];
  const uint8_t* lut = (const uint8_t*)(uintptr_t)d[D_LUT];
  uint8_t planes[64];
  for (int e = 0; e < 16; e++)
    for (int j = 0; j < 4; j++) planes[j * 16 + e] = lut[e * 4 + j];
  v128_t p0 = wasm_v128_load(planes), p1 = wasm_v128_load(planes + 16), p2 = wasm_v128_load(planes + 32),
         p3 = wasm_v128_load(planes + 48);
  v128_t m = wasm_i8x16_splat(15), cv = wasm_i8x16_splat((int8_t)(1 << (d[D_BITS] - 1)));
  for (int n = n0; n < n1; n++) {
    const uint32_t* w = words + (uint32_t)n * (uint32_t)wpr;
    const float* sc = scales + (uint32_t)n * (uint32_t)ng;
    v128_t tot = wasm_f32x4_splat(0.0f);
    for (int g = 0; g < ng; g++) {
      v128_t a0 = wasm_f32x4_splat(0.0f), a1 = a0;
      for (int b = g * bpg, be = imin(b + bpg, nb); b < be; b++) {
        v128_t v = wasm_v128_load(w + b * 4);
        // Stored nibbles are centred, (q − c) mod 16: add c back.
        v128_t lo = wasm_v128_and(wasm_i8x16_add(wasm_v128_and(v, m), cv), m);
        v128_t hi = wasm_v128_and(wasm_i8x16_add(wasm_u8x16_shr(v, 4), cv), m);
        const float* xb = xp + b * 32;
        PLANAR(lo, xb, a0);
        PLANAR(hi, xb + 16, a1);
      }
      FMA(tot, wasm_f32x4_add(a0, a1), wasm_v128_load32_splat(sc + g));
    }
    y[n] = hsum(tot);
  }
}

void qk_qmatvec_rows(const int32_t* d, const float* x, const float* xp, const float* xs, float* y, int n0, int n1,
                     float* tmp) {
  if (d[D_BLOCK]) {
    // ggml block formats: decode a block into L1 and dot it at once (ggml_blocks.c).
    for (int n = n0; n < n1; n++) y[n] = qk_block_dot(d, n, x);
    return;
  }
  if (qk_lut_planar(d)) {
    lut_matvec_planar(d, xp, y, n0, n1);
    return;
  }
  int cb = d[D_CB], ng = d[D_NG], gs = d[D_GS], Kp = d[D_KP], K = d[D_K], wpr = d[D_WPR];
  const uint32_t* words = (const uint32_t*)(uintptr_t)d[D_WORDS];
  const float* scales = (const float*)(uintptr_t)d[D_SCALES];
  const float* zeros = (const float*)(uintptr_t)d[D_ZEROS];
  if (d[D_LUT] && d[D_BITS] <= 4 && d[D_GIDX] == 0 && gs > 0 && (gs & 3) == 0) {
    lut_matvec_rows(d, x, y, n0, n1);
    return;
  }
  uint32_t cmask = (1u << cb) - 1u;
  __asm__("" : "+r"(cmask));  // opaque to the constant folder (see FIELD)
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
  // Columns in tiles of about QK_XTILE so the tile of x stays in cache while the rows stream past.
  int gt = gs >= QK_XTILE ? 1 : QK_XTILE / gs;
  int blocks = (gs & ((4 << log2_per(cb)) - 1)) == 0, off = d[D_OFFSET];
  for (int g0 = 0; g0 < ng; g0 += gt) {
    int g1 = imin(g0 + gt, ng);
    int n = n0;
    for (; blocks && n + 2 <= n1; n += 2) {
      const uint32_t* w = words + (uint32_t)n * (uint32_t)wpr;
      const float* sc = scales + (uint32_t)n * (uint32_t)ng;
      const float* ze = zeros + (uint32_t)n * (uint32_t)ng;
      float part[2];
      if (off) {
        if (cb == 2) row2_2o(w, wpr, xp, xs, sc, ze, g0, g1, ng, gs, Kp, cmask, part);
        else if (cb == 4) row2_4o(w, wpr, xp, xs, sc, ze, g0, g1, ng, gs, Kp, cmask, part);
        else row2_8o(w, wpr, xp, xs, sc, ze, g0, g1, ng, gs, Kp, cmask, part);
      } else {
        if (cb == 2) row2_2(w, wpr, x, xs, sc, ze, g0, g1, ng, gs, Kp, cmask, part);
        else if (cb == 4) row2_4(w, wpr, x, xs, sc, ze, g0, g1, ng, gs, Kp, cmask, part);
        else row2_8(w, wpr, x, xs, sc, ze, g0, g1, ng, gs, Kp, cmask, part);
      }
      y[n] = g0 == 0 ? part[0] : y[n] + part[0];
      y[n + 1] = g0 == 0 ? part[1] : y[n + 1] + part[1];
    }
    for (; n < n1; n++) {
      const uint32_t* w = words + (uint32_t)n * (uint32_t)wpr;
      const float* sc = scales + (uint32_t)n * (uint32_t)ng;
      const float* ze = zeros + (uint32_t)n * (uint32_t)ng;
      float part = !blocks   ? row_steps(w, x, xs, sc, ze, cb, g0, g1, gs, Kp)
                   : off     ? (cb == 2   ? row_2o(w, xp, xs, sc, ze, g0, g1, gs, Kp, cmask)
                                : cb == 4 ? row_4o(w, xp, xs, sc, ze, g0, g1, gs, Kp, cmask)
                                          : row_8o(w, xp, xs, sc, ze, g0, g1, gs, Kp, cmask))
                   : cb == 2 ? row_2(w, x, xs, sc, ze, g0, g1, gs, Kp, cmask)
                   : cb == 4 ? row_4(w, x, xs, sc, ze, g0, g1, gs, Kp, cmask)
                             : row_8(w, x, xs, sc, ze, g0, g1, gs, Kp, cmask);
      y[n] = g0 == 0 ? part : y[n] + part;
    }
  }
}

// Fused codebook backward for few rows (bits <= 4, contiguous groups of a multiple of 4 columns):
// tmp[k − k0] += Σ_n (g[n]·s[n,g(k)]) · lut[q[n,k]], the table in registers (lut16).
static void lut_matvec_t_cols(const int32_t* d, const float* g, int k0, int k1, float* tmp) {
  int cb = d[D_CB], lp = log2_per(cb), per = 1 << lp, ng = d[D_NG], gs = d[D_GS], N = d[D_N], wpr = d[D_WPR];
  const uint32_t* words = (const uint32_t*)(uintptr_t)d[D_WORDS];
  const float* scales = (const float*)(uintptr_t)d[D_SCALES];
  const float* base = (const float*)(uintptr_t)d[D_LUT];
  v128_t t0 = wasm_v128_load(base), t1 = wasm_v128_load(base + 4), t2 = wasm_v128_load(base + 8),
         t3 = wasm_v128_load(base + 12), cv = wasm_i32x4_splat(1 << (d[D_BITS] - 1));
  for (int n = 0; n < N; n++) {
    const uint32_t* w = words + (uint32_t)n * (uint32_t)wpr;
    const float* sc = scales + (uint32_t)n * (uint32_t)ng;
    int k = k0;
    while (k < k1) {
      int gi = k / gs;
      int end = imin((gi + 1) * gs, k1);
      v128_t a = wasm_f32x4_splat(g[n] * sc[gi]);
      for (; k < end; k += 4) {
        v128_t u = decode(wasm_v128_load(w + (k >> (lp + 2)) * 4), (k >> 2) & (per - 1), cb);
        float* t = tmp + (k - k0);
        wasm_v128_store(t, wasm_f32x4_add(wasm_v128_load(t), wasm_f32x4_mul(lut16(wasm_i32x4_add(u, cv), t0, t1, t2, t3), a)));
      }
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
  if (d[D_LUT]) {
    lut_matvec_t_cols(d, g, k0, k1, tmp);
    for (int k = k0, kend = imin(k1, K); k < kend; k++) dx[k] = tmp[k - k0];
    return;
  }
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
