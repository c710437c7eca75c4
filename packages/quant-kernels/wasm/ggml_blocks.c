// ggml block formats (decode "block": q4_0 … q6_k, iq4_nl-ggml, iq4_xs): the resident words are the
// layer's own ggml blocks (each row padded to whole words), decoded a block at a time into floats for
// the tiled GEMM, the row-at-a-time matvec and dequantize (every kernel reaches them through
// qk_dequant_range). Each value is computed as the reference (@int21/io's dequantizers) does: every
// product before the last is exact in float32, so the one rounding matches and the decode is bit-exact.
#include "quant.h"

// ggml type ids (ggml.h).
#define T_Q4_0 2
#define T_Q4_1 3
#define T_Q5_0 6
#define T_Q5_1 7
#define T_Q8_0 8
#define T_Q2_K 10
#define T_Q3_K 11
#define T_Q4_K 12
#define T_Q5_K 13
#define T_Q6_K 14
#define T_IQ4_NL 20
#define T_IQ4_XS 23

static const int8_t IQ4NL_I8[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

// Little-endian f16 at p, exactly as a float.
static inline float h2f(const uint8_t* p) {
  uint32_t h = (uint32_t)p[0] | ((uint32_t)p[1] << 8);
  uint32_t sign = (h & 0x8000u) << 16, e = (h >> 10) & 31u, m = h & 0x3ffu;
  union {
    uint32_t u;
    float f;
  } v;
  if (e == 0) {
    float f = (float)m * 5.9604644775390625e-8f;  // m · 2^-24
    return sign ? -f : f;
  }
  v.u = sign | (e == 31 ? (0xffu << 23) | (m << 13) : ((e + 112u) << 23) | (m << 13));
  return v.f;
}

static inline uint32_t u32le(const uint8_t* p) {
  return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

// 6-bit scale (j-th) and min of a Q4_K / Q5_K block, from the 12 bytes at s.
static inline void k4(const uint8_t* s, int j, int* sc, int* m) {
  if (j < 4) {
    *sc = s[j] & 63;
    *m = s[j + 4] & 63;
  } else {
    *sc = (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4);
    *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}


// y[0..16) = a·q − m for the 16 codes q (u8 lanes of v): each lane converted exactly, one multiply and one
// subtract in float32 — the same operations as the scalar decode, so the same bits.
static inline void store16_am(v128_t v, float a, float m, float* y) {
  v128_t va = wasm_f32x4_splat(a), vm = wasm_f32x4_splat(m);
  v128_t lo = wasm_u16x8_extend_low_u8x16(v), hi = wasm_u16x8_extend_high_u8x16(v);
  wasm_v128_store(y, wasm_f32x4_sub(wasm_f32x4_mul(va, wasm_f32x4_convert_i32x4(wasm_u32x4_extend_low_u16x8(lo))), vm));
  wasm_v128_store(y + 4, wasm_f32x4_sub(wasm_f32x4_mul(va, wasm_f32x4_convert_i32x4(wasm_u32x4_extend_high_u16x8(lo))), vm));
  wasm_v128_store(y + 8, wasm_f32x4_sub(wasm_f32x4_mul(va, wasm_f32x4_convert_i32x4(wasm_u32x4_extend_low_u16x8(hi))), vm));
  wasm_v128_store(y + 12, wasm_f32x4_sub(wasm_f32x4_mul(va, wasm_f32x4_convert_i32x4(wasm_u32x4_extend_high_u16x8(hi))), vm));
}

// y[0..16) = a·q for the 16 signed codes q (i8 lanes of v).
static inline void store16_a(v128_t v, float a, float* y) {
  v128_t va = wasm_f32x4_splat(a);
  v128_t lo = wasm_i16x8_extend_low_i8x16(v), hi = wasm_i16x8_extend_high_i8x16(v);
  wasm_v128_store(y, wasm_f32x4_mul(va, wasm_f32x4_convert_i32x4(wasm_i32x4_extend_low_i16x8(lo))));
  wasm_v128_store(y + 4, wasm_f32x4_mul(va, wasm_f32x4_convert_i32x4(wasm_i32x4_extend_high_i16x8(lo))));
  wasm_v128_store(y + 8, wasm_f32x4_mul(va, wasm_f32x4_convert_i32x4(wasm_i32x4_extend_low_i16x8(hi))));
  wasm_v128_store(y + 12, wasm_f32x4_mul(va, wasm_f32x4_convert_i32x4(wasm_i32x4_extend_high_i16x8(hi))));
}

#define NIB_LO(v) wasm_v128_and(v, wasm_i8x16_splat(15))
#define NIB_HI(v) wasm_u8x16_shr(v, 4)

// The 32 4-bit codes of sub-block j of a Q4_K / Q5_K block whose `qs` starts at q: the low (even j) or
// high (odd j) nibbles of the 32 bytes at q + 32·(j / 2), as two vectors of 16.
static inline void k4_nibbles(const uint8_t* q, int j, v128_t* q0, v128_t* q1) {
  q += 32 * (j >> 1);
  v128_t a = wasm_v128_load(q), b = wasm_v128_load(q + 16);
  *q0 = j & 1 ? NIB_HI(a) : NIB_LO(a);
  *q1 = j & 1 ? NIB_HI(b) : NIB_LO(b);
}

static inline int block_size(int t) { return t >= T_Q2_K && t != T_IQ4_NL ? 256 : 32; }

static int block_bytes(int t) {
  switch (t) {
    case T_Q4_0: return 18;
    case T_Q4_1: return 20;
    case T_Q5_0: return 22;
    case T_Q5_1: return 24;
    case T_Q8_0: return 34;
    case T_Q2_K: return 84;
    case T_Q3_K: return 110;
    case T_Q4_K: return 144;
    case T_Q5_K: return 176;
    case T_Q6_K: return 210;
    case T_IQ4_NL: return 18;
    case T_IQ4_XS: return 136;
    default: return 0;
  }
}

// The block_size(t) weights of the block at b, into y.
static void decode_block(int t, const uint8_t* b, float* y) {
  switch (t) {
    case T_Q4_0: {
      float d = h2f(b);
      v128_t q = wasm_v128_load(b + 2), c = wasm_i8x16_splat(8);
      store16_a(wasm_i8x16_sub(NIB_LO(q), c), d, y);
      store16_a(wasm_i8x16_sub(NIB_HI(q), c), d, y + 16);
      break;
    }
    case T_Q4_1: {
      float d = h2f(b), m = h2f(b + 2);
      for (int j = 0; j < 16; j++) {
        y[j] = d * (float)(b[4 + j] & 15) + m;
        y[j + 16] = d * (float)(b[4 + j] >> 4) + m;
      }
      break;
    }
    case T_Q5_0: {
      float d = h2f(b);
      uint32_t qh = u32le(b + 2);
      for (int j = 0; j < 16; j++) {
        int q0 = (b[6 + j] & 15) | (((qh >> j) & 1) << 4), q1 = (b[6 + j] >> 4) | (((qh >> (j + 16)) & 1) << 4);
        y[j] = d * (float)(q0 - 16);
        y[j + 16] = d * (float)(q1 - 16);
      }
      break;
    }
    case T_Q5_1: {
      float d = h2f(b), m = h2f(b + 2);
      uint32_t qh = u32le(b + 4);
      for (int j = 0; j < 16; j++) {
        int q0 = (b[8 + j] & 15) | (((qh >> j) & 1) << 4), q1 = (b[8 + j] >> 4) | (((qh >> (j + 16)) & 1) << 4);
        y[j] = d * (float)q0 + m;
        y[j + 16] = d * (float)q1 + m;
      }
      break;
    }
    case T_Q8_0: {
      float d = h2f(b);
      store16_a(wasm_v128_load(b + 2), d, y);
      store16_a(wasm_v128_load(b + 18), d, y + 16);
      break;
    }
    case T_Q2_K: {
      // Weight 128h + 32s + l: bits 2s of qs[32h + l]; sub-block (128h + 32s + l) / 16.
      float d = h2f(b + 80), dmin = h2f(b + 82);
      for (int h = 0; h < 2; h++) {
        for (int s = 0; s < 4; s++) {
          for (int half = 0; half < 2; half++) {
            int sc = b[8 * h + 2 * s + half];
            float a = d * (float)(sc & 15), m = dmin * (float)(sc >> 4);
            float* yo = y + 128 * h + 32 * s + 16 * half;
            v128_t qq = wasm_v128_load(b + 16 + 32 * h + 16 * half);
            store16_am(wasm_v128_and(wasm_u8x16_shr(qq, 2 * s), wasm_i8x16_splat(3)), a, m, yo);
          }
        }
      }
      break;
    }
    case T_Q3_K: {
      // Weight 128h + 32s + l: low bits 2s of qs[32h + l], high bit 4h + s of hmask[l].
      float d = h2f(b + 108);
      const uint8_t* sb = b + 96;
      for (int h = 0; h < 2; h++) {
        for (int s = 0; s < 4; s++) {
          for (int half = 0; half < 2; half++) {
            int k = 8 * h + 2 * s + half;
            int low = k < 8 ? sb[k] & 15 : sb[k - 8] >> 4;
            int high = (sb[8 + (k & 3)] >> (2 * (k >> 2))) & 3;
            float a = d * (float)((low | (high << 4)) - 32);
            float* yo = y + 128 * h + 32 * s + 16 * half;
            const uint8_t* qq = b + 32 + 32 * h + 16 * half;
            const uint8_t* hm = b + 16 * half;
            for (int l = 0; l < 16; l++) {
              int lo = (qq[l] >> (2 * s)) & 3, hb = (hm[l] >> (4 * h + s)) & 1;
              yo[l] = a * (float)(lo - 4 + 4 * hb);
            }
          }
        }
      }
      break;
    }
    case T_Q4_K: {
      float d = h2f(b), dmin = h2f(b + 2);
      for (int j = 0; j < 8; j++) {
        int sc, m;
        k4(b + 4, j, &sc, &m);
        float a = d * (float)sc, mm = dmin * (float)m;
        v128_t q0, q1;
        k4_nibbles(b + 16, j, &q0, &q1);
        store16_am(q0, a, mm, y + 32 * j);
        store16_am(q1, a, mm, y + 32 * j + 16);
      }
      break;
    }
    case T_Q5_K: {
      float d = h2f(b), dmin = h2f(b + 2);
      v128_t h0 = wasm_v128_load(b + 16), h1 = wasm_v128_load(b + 32);
      for (int j = 0; j < 8; j++) {
        int sc, m;
        k4(b + 4, j, &sc, &m);
        float a = d * (float)sc, mm = dmin * (float)m;
        v128_t q0, q1;
        k4_nibbles(b + 48, j, &q0, &q1);
        v128_t one = wasm_i8x16_splat(1);
        q0 = wasm_v128_or(q0, wasm_i8x16_shl(wasm_v128_and(wasm_u8x16_shr(h0, j), one), 4));
        q1 = wasm_v128_or(q1, wasm_i8x16_shl(wasm_v128_and(wasm_u8x16_shr(h1, j), one), 4));
        store16_am(q0, a, mm, y + 32 * j);
        store16_am(q1, a, mm, y + 32 * j + 16);
      }
      break;
    }
    case T_Q6_K: {
      // Weight 128h + 32s + l: low nibble (s < 2) or high nibble of ql[64h + 32(s & 1) + l], high bits 2s of
      // qh[32h + l]; sub-block (128h + 32s + l) / 16.
      float d = h2f(b + 208);
      for (int h = 0; h < 2; h++) {
        for (int s = 0; s < 4; s++) {
          const uint8_t* ql = b + 64 * h + 32 * (s & 1);
          const uint8_t* qh = b + 128 + 32 * h;
          int shift = s < 2 ? 0 : 4;
          for (int half = 0; half < 2; half++) {
            float a = d * (float)(int8_t)b[192 + 8 * h + 2 * s + half];
            float* yo = y + 128 * h + 32 * s + 16 * half;
            v128_t lo = wasm_v128_and(wasm_u8x16_shr(wasm_v128_load(ql + 16 * half), shift), wasm_i8x16_splat(15));
            v128_t hi = wasm_v128_and(wasm_u8x16_shr(wasm_v128_load(qh + 16 * half), 2 * s), wasm_i8x16_splat(3));
            store16_a(wasm_i8x16_sub(wasm_v128_or(lo, wasm_i8x16_shl(hi, 4)), wasm_i8x16_splat(32)), a, yo);
          }
        }
      }
      break;
    }
    case T_IQ4_NL: {
      float d = h2f(b);
      v128_t t = wasm_v128_load(IQ4NL_I8), q = wasm_v128_load(b + 2);
      store16_a(wasm_i8x16_swizzle(t, NIB_LO(q)), d, y);
      store16_a(wasm_i8x16_swizzle(t, NIB_HI(q)), d, y + 16);
      break;
    }
    case T_IQ4_XS: {
      float d = h2f(b);
      int sh = b[2] | (b[3] << 8);
      v128_t t = wasm_v128_load(IQ4NL_I8);
      for (int j = 0; j < 8; j++) {
        int ls = ((b[4 + (j >> 1)] >> (4 * (j & 1))) & 15) | (((sh >> (2 * j)) & 3) << 4);
        float dl = d * (float)(ls - 32);
        v128_t q = wasm_v128_load(b + 8 + 16 * j);
        store16_a(wasm_i8x16_swizzle(t, NIB_LO(q)), dl, y + 32 * j);
        store16_a(wasm_i8x16_swizzle(t, NIB_HI(q)), dl, y + 32 * j + 16);
      }
      break;
    }
    default:
      for (int i = 0; i < block_size(t); i++) y[i] = 0.0f;
  }
}

void qk_block_range(const int32_t* d, int row, int k0, int k1, float* out) {
  int t = d[D_BLOCK], bs = block_size(t), bb = block_bytes(t);
  const uint8_t* r = (const uint8_t*)(uintptr_t)d[D_WORDS] + (uint32_t)row * (uint32_t)d[D_WPR] * 4u;
  float tmp[256];
  for (int b = k0 / bs; b * bs < k1; b++) {
    int s = b * bs, e = s + bs;
    if (s >= k0 && e <= k1) {
      decode_block(t, r + (uint32_t)b * (uint32_t)bb, out + (s - k0));
    } else {
      decode_block(t, r + (uint32_t)b * (uint32_t)bb, tmp);
      int lo = s > k0 ? s : k0, hi = imin(e, k1);
      for (int k = lo; k < hi; k++) out[k - k0] = tmp[k - s];
    }
  }
}

// Σ_k W[row, k]·x[k] over the row's blocks (K = d[D_K]), each block decoded into a small buffer that
// stays in L1 and dotted at once (the 1–2-row matvec of qk_qmatvec_rows).
float qk_block_dot(const int32_t* d, int row, const float* x) {
  int t = d[D_BLOCK], bs = block_size(t), bb = block_bytes(t), nb = d[D_K] / bs;
  const uint8_t* r = (const uint8_t*)(uintptr_t)d[D_WORDS] + (uint32_t)row * (uint32_t)d[D_WPR] * 4u;
  float w[256];
  v128_t a0 = wasm_f32x4_splat(0.0f), a1 = a0;
  for (int b = 0; b < nb; b++) {
    decode_block(t, r + (uint32_t)b * (uint32_t)bb, w);
    const float* xb = x + b * bs;
    for (int k = 0; k < bs; k += 8) {
      a0 = wasm_f32x4_add(a0, wasm_f32x4_mul(wasm_v128_load(w + k), wasm_v128_load(xb + k)));
      a1 = wasm_f32x4_add(a1, wasm_f32x4_mul(wasm_v128_load(w + k + 4), wasm_v128_load(xb + k + 4)));
    }
  }
  v128_t a = wasm_f32x4_add(a0, a1);
  return wasm_f32x4_extract_lane(a, 0) + wasm_f32x4_extract_lane(a, 1) + wasm_f32x4_extract_lane(a, 2) +
         wasm_f32x4_extract_lane(a, 3);
}
