// Causal grouped-query attention over a KV cache in wasm memory (OP_ATTN), for decode (one query)
// and prefill (a block of queries). Per query row r (position pos + r) and head h (kv head
// g = h / (nHeads / nKv)):
//   att[t]  = q[r,h]·k[t,g] · scale          for first ≤ t ≤ pos + r  (first = 0, or pos + r − window + 1)
//   out[r,h] = Σ_t softmax(att)[t] · v[t,g]
// Keys and values of position t sit in slot t mod CLEN (a ring for sliding windows). Work items are
// (row, head) pairs; the scores of one item live in the thread's scratch.
#include "decode.h"

static inline float dot(const float* a, const float* b, int n) {
  v128_t s0 = wasm_f32x4_splat(0.0f), s1 = s0;
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    FMA(s0, wasm_v128_load(a + i), wasm_v128_load(b + i));
    FMA(s1, wasm_v128_load(a + i + 4), wasm_v128_load(b + i + 4));
  }
  for (; i + 4 <= n; i += 4) FMA(s0, wasm_v128_load(a + i), wasm_v128_load(b + i));
  float s = hsum(wasm_f32x4_add(s0, s1));
  for (; i < n; i++) s += a[i] * b[i];
  return s;
}

// out[0..hs) = Σ_t att[t] · v[slot(t)][0..hs) · inv, 32 columns at a time in registers.
static void weighted_sum(const float* att, const float* vbase, int kv, int slot0, int n1, int n, int hs, float inv,
                         float* out) {
  int i = 0;
  for (; i + 16 <= hs; i += 16) {
    v128_t a0 = wasm_f32x4_splat(0.0f), a1 = a0, a2 = a0, a3 = a0;
    for (int t = 0; t < n; t++) {
      const float* v = vbase + (uint32_t)((t < n1 ? slot0 + t : t - n1) * kv) + i;
      v128_t a = wasm_v128_load32_splat(att + t);
      FMA(a0, a, wasm_v128_load(v));
      FMA(a1, a, wasm_v128_load(v + 4));
      FMA(a2, a, wasm_v128_load(v + 8));
      FMA(a3, a, wasm_v128_load(v + 12));
    }
    v128_t s = wasm_f32x4_splat(inv);
    wasm_v128_store(out + i, wasm_f32x4_mul(a0, s));
    wasm_v128_store(out + i + 4, wasm_f32x4_mul(a1, s));
    wasm_v128_store(out + i + 8, wasm_f32x4_mul(a2, s));
    wasm_v128_store(out + i + 12, wasm_f32x4_mul(a3, s));
  }
  for (; i + 4 <= hs; i += 4) {
    v128_t a0 = wasm_f32x4_splat(0.0f);
    for (int t = 0; t < n; t++) {
      const float* v = vbase + (uint32_t)((t < n1 ? slot0 + t : t - n1) * kv) + i;
      FMA(a0, wasm_v128_load32_splat(att + t), wasm_v128_load(v));
    }
    wasm_v128_store(out + i, wasm_f32x4_mul(a0, wasm_f32x4_splat(inv)));
  }
  for (; i < hs; i++) {
    float a0 = 0.0f;
    for (int t = 0; t < n; t++) a0 += att[t] * vbase[(uint32_t)((t < n1 ? slot0 + t : t - n1) * kv) + i];
    out[i] = a0 * inv;
  }
}

static void attn_item(int32_t* job, int r, int h, float* att) {
  int pos = job[AT_POS], clen = job[AT_CLEN], window = job[AT_WINDOW], nh = job[AT_NHEADS], nkv = job[AT_NKV],
      hs = job[AT_HS];
  union {
    int32_t i;
    float f;
  } sc;
  sc.i = job[AT_SCALE];
  int kv = nkv * hs, qd = nh * hs, g = h / (nh / nkv);
  const float* q = (const float*)(uintptr_t)(uint32_t)job[AT_Q] + (uint32_t)(r * qd + h * hs);
  float* out = (float*)(uintptr_t)(uint32_t)job[AT_OUT] + (uint32_t)(r * qd + h * hs);
  const float* kbase = (const float*)(uintptr_t)(uint32_t)job[AT_KEYS] + g * hs;
  const float* vbase = (const float*)(uintptr_t)(uint32_t)job[AT_VALUES] + g * hs;
  int last = pos + r;
  int first = window > 0 ? imax(0, last - window + 1) : 0;
  int n = last - first + 1, slot0 = first % clen, n1 = imin(n, clen - slot0);
  float mx = -__builtin_inff();
  for (int t = 0; t < n; t++) {
    const float* k = kbase + (uint32_t)((t < n1 ? slot0 + t : t - n1) * kv);
    float s = dot(q, k, hs) * sc.f;
    att[t] = s;
    mx = s > mx ? s : mx;
  }
  v128_t m = wasm_f32x4_splat(mx), sum4 = wasm_f32x4_splat(0.0f);
  int t = 0;
  for (; t + 4 <= n; t += 4) {
    v128_t e = exp4(wasm_f32x4_sub(wasm_v128_load(att + t), m));
    wasm_v128_store(att + t, e);
    sum4 = wasm_f32x4_add(sum4, e);
  }
  float sum = hsum(sum4);
  for (; t < n; t++) {
    float e = wasm_f32x4_extract_lane(exp4(wasm_f32x4_splat(att[t] - mx)), 0);
    att[t] = e;
    sum += e;
  }
  weighted_sum(att, vbase, kv, slot0, n1, n, hs, 1.0f / sum, out);
}

void qk_attn_run(int32_t* job, int tid, float* scratch) {
  (void)tid;
  int items = job[AT_ROWS] * job[AT_NHEADS], nh = job[AT_NHEADS];
  for (;;) {
    int c = __atomic_fetch_add(&job[J_NEXT], 1, __ATOMIC_RELAXED);
    if (c >= items) break;
    attn_item(job, c / nh, c % nh, scratch);
  }
}
