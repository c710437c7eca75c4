// Decode/prefill kernels of model inference (decode_*.c): job ids and slots, after the ops of
// kernels.h. The TypeScript mirror lives in src/wasm/wasm-decode.ts; keep the two in step.
#ifndef QK_DECODE_H
#define QK_DECODE_H
#include "kernels.h"

#define OP_ATTN 40  // causal GQA attention of rows queries over a KV cache (decode_attn.c)
#define OP_QMV 41   // one-row quantized matvec with int16 activations (decode_qmv.c); Q_DESC, Q_X, Q_Y slots
#define QV_I8 6     // OP_QMV slot: 1 = int8 activations (decode_qmv8.c; relaxed-SIMD module, 4-bit containers)

// OP_ATTN slots (byte addresses unless said).
#define AT_Q 4        // queries [rows × nHeads·hs]
#define AT_OUT 5      // output [rows × nHeads·hs]
#define AT_KEYS 6     // the layer's first cache slot of keys; slot s at KEYS + s·nKv·hs floats
#define AT_VALUES 7   // the same for values
#define AT_ROWS 8
#define AT_POS 9      // position of row 0
#define AT_CLEN 10    // cache slots (a ring: position p in slot p mod CLEN)
#define AT_WINDOW 11  // sliding window, 0 = none
#define AT_NHEADS 12
#define AT_NKV 13
#define AT_HS 14
#define AT_SCALE 15   // f32 bits

// max_{k0 ≤ k < k1} |x[k]| (k1 − k0 a multiple of 4; 0 for an empty range): the scale of a decode matvec's group
// of activations (decode_qmv.c, decode_qmv8.c).
static inline float absmax_f32(const float* x, int k0, int k1) {
  v128_t m = wasm_f32x4_splat(0.0f);
  for (int k = k0; k < k1; k += 4) m = wasm_f32x4_max(m, wasm_f32x4_abs(wasm_v128_load(x + k)));
  m = wasm_f32x4_max(m, wasm_i32x4_shuffle(m, m, 2, 3, 0, 1));
  m = wasm_f32x4_max(m, wasm_i32x4_shuffle(m, m, 1, 0, 3, 2));
  return wasm_f32x4_extract_lane(m, 0);
}

void qk_attn_run(int32_t* job, int tid, float* scratch);
void qk_qmv_run(int32_t* job, int tid, float* scratch);
#ifdef __wasm_relaxed_simd__
void qk_qmv8_run(int32_t* job, int tid, float* scratch);
#endif
// Rows per work chunk of the decode matvecs (decode_qmv.c, decode_qmv8.c): a pass takes rows n, n + q, n + 2q,
// n + 3q (q = a quarter of the chunk; halves for the two-row kernel), streams of codes far enough apart to be fetched side by side. 128 rows (streams 32 rows,
// 12 KB of INT4 codes at 768 columns, apart: other pages) against 32 measured, 1 thread, interleaved in one
// process over 37–58 MB of distinct layers (out of cache, as in a decode token): INT4 g128 2048×768 +9 %,
// 768×768 +6 %, 32000×768 +7 %, INT2 g64 2048×768 +7 %, int8 activations 2048×768 +26 %; in cache the same.
// Only layers above QMV_PARALLEL split across threads, so the larger chunk costs no balance on decode shapes.
#define QMV_CHUNK 128
// The four rows a four-row matvec pass takes from the quarters of a chunk: rows n, n + qr, n + 2·qr, n + 3·qr,
// with their codes, group scales and zeros, and result slots (decode_qmv.c and decode_qmv8.c).
typedef struct {
  const v128_t* w[4];
  const float* sc[4];
  const float* ze[4];
  float* y[4];
} QmvRows4;
static inline QmvRows4 qmv_rows4_at(const uint32_t* words, const float* scales, const float* zeros, float* y, int n,
                                    int qr, int wpr, int ng) {
  QmvRows4 r4;
  for (int j = 0; j < 4; j++) {
    int r = n + j * qr;
    r4.w[j] = (const v128_t*)(words + (uint32_t)r * (uint32_t)wpr);
    r4.sc[j] = scales + (uint32_t)r * (uint32_t)ng;
    r4.ze[j] = zeros + (uint32_t)r * (uint32_t)ng;
    r4.y[j] = y + r;
  }
  return r4;
}
#endif
