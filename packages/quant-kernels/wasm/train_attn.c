// Attention for training (OP_TRAIN_ATTN_FWD / OP_TRAIN_ATTN_BWD): causal (or full) grouped-query
// attention over whole sequences, forward and backward, touching only the unmasked scores. For batch b,
// query head h (kv head g = h / (H / Hkv)) and query row t (keys j < n_t: n_t = min(S, t + S − T + 1)
// when causal, S otherwise):
//   s_j = scale · q_t·k_j,  m_t = max_j s_j,  P_j = exp(s_j − m_t) / Σ exp,  out_t = Σ_j P_j v_j
// forward saves (m_t, 1/Σexp) per row; backward rebuilds P from them and accumulates
//   dP_j = dout_t·v_j,  dS_j = scale · P_j (dP_j − Σ_i P_i dP_i)
//   dq_t += Σ_j dS_j k_j,  dk_j += dS_j q_t,  dv_j += P_j dout_t
// Work items: (b, kv head) pairs, each running all of its query heads (so dk, dv rows are written by
// one thread only). Scratch: 2·S floats per thread.
#include "train.h"

#define PTR(T, v) ((T)(uintptr_t)(uint32_t)(v))
#define FMA(c, a, b) c = wasm_f32x4_add(c, wasm_f32x4_mul(a, b))

static inline float f32_of(int32_t bits) {
  union {
    int32_t i;
    float f;
  } u;
  u.i = bits;
  return u.f;
}

static inline float hsum(v128_t v) {
  return wasm_f32x4_extract_lane(v, 0) + wasm_f32x4_extract_lane(v, 1) + wasm_f32x4_extract_lane(v, 2) +
         wasm_f32x4_extract_lane(v, 3);
}

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

// y[0..n) += a · x[0..n)
static inline void axpy(float* y, float a, const float* x, int n) {
  v128_t av = wasm_f32x4_splat(a);
  int i = 0;
  for (; i + 4 <= n; i += 4) wasm_v128_store(y + i, wasm_f32x4_add(wasm_v128_load(y + i), wasm_f32x4_mul(av, wasm_v128_load(x + i))));
  for (; i < n; i++) y[i] += a * x[i];
}

// out[0..hs) (+)= Σ_{j<n} w[j] · rows[j·ld .. j·ld + hs), 16 columns at a time in registers.
static void weighted_rows(const float* w, const float* rows, int ld, int n, int hs, float* out, int add) {
  int i = 0;
  for (; i + 16 <= hs; i += 16) {
    v128_t a0 = wasm_f32x4_splat(0.0f), a1 = a0, a2 = a0, a3 = a0;
    const float* r = rows + i;
    for (int j = 0; j < n; j++, r += ld) {
      v128_t a = wasm_v128_load32_splat(w + j);
      FMA(a0, a, wasm_v128_load(r));
      FMA(a1, a, wasm_v128_load(r + 4));
      FMA(a2, a, wasm_v128_load(r + 8));
      FMA(a3, a, wasm_v128_load(r + 12));
    }
    if (add) {
      a0 = wasm_f32x4_add(a0, wasm_v128_load(out + i));
      a1 = wasm_f32x4_add(a1, wasm_v128_load(out + i + 4));
      a2 = wasm_f32x4_add(a2, wasm_v128_load(out + i + 8));
      a3 = wasm_f32x4_add(a3, wasm_v128_load(out + i + 12));
    }
    wasm_v128_store(out + i, a0);
    wasm_v128_store(out + i + 4, a1);
    wasm_v128_store(out + i + 8, a2);
    wasm_v128_store(out + i + 12, a3);
  }
  for (; i + 4 <= hs; i += 4) {
    v128_t a0 = wasm_f32x4_splat(0.0f);
    const float* r = rows + i;
    for (int j = 0; j < n; j++, r += ld) FMA(a0, wasm_v128_load32_splat(w + j), wasm_v128_load(r));
    if (add) a0 = wasm_f32x4_add(a0, wasm_v128_load(out + i));
    wasm_v128_store(out + i, a0);
  }
  for (; i < hs; i++) {
    float s = 0.0f;
    const float* r = rows + i;
    for (int j = 0; j < n; j++, r += ld) s += w[j] * *r;
    out[i] = add ? out[i] + s : s;
  }
}

// p[0..n) = exp(p − m) (· inv when inv > 0); returns Σ before scaling.
static float exp_rows(float* p, int n, float m, float inv) {
  v128_t mv = wasm_f32x4_splat(m), acc = wasm_f32x4_splat(0.0f);
  int j = 0;
  for (; j + 4 <= n; j += 4) {
    v128_t e = texp4(wasm_f32x4_sub(wasm_v128_load(p + j), mv));
    acc = wasm_f32x4_add(acc, e);
    wasm_v128_store(p + j, e);
  }
  float sum = hsum(acc);
  for (; j < n; j++) {
    float e = wasm_f32x4_extract_lane(texp4(wasm_f32x4_splat(p[j] - m)), 0);
    p[j] = e;
    sum += e;
  }
  if (inv > 0.0f) {
    v128_t iv = wasm_f32x4_splat(inv);
    j = 0;
    for (; j + 4 <= n; j += 4) wasm_v128_store(p + j, wasm_f32x4_mul(wasm_v128_load(p + j), iv));
    for (; j < n; j++) p[j] *= inv;
  }
  return sum;
}

typedef struct {
  const float *q, *k, *v;
  int T, S, H, Hkv, hs, causal, Dq, Dk, group;
  float scale;
} Attn;

static Attn attn_of(int32_t* job) {
  Attn a;
  a.q = PTR(const float*, job[TA_Q]);
  a.k = PTR(const float*, job[TA_K]);
  a.v = PTR(const float*, job[TA_V]);
  a.T = job[TA_T];
  a.S = job[TA_S];
  a.H = job[TA_H];
  a.Hkv = job[TA_HKV];
  a.hs = job[TA_HS];
  a.causal = job[TA_CAUSAL];
  a.Dq = a.H * a.hs;
  a.Dk = a.Hkv * a.hs;
  a.group = a.H / a.Hkv;
  a.scale = f32_of(job[TA_SCALE]);
  return a;
}

static inline int keys_of(const Attn* a, int t) {
  if (!a->causal) return a->S;
  int n = t + a->S - a->T + 1;
  return n < a->S ? n : a->S;
}

// p[0..n) = scale · q_t·k_j for row t of (b, h); returns the max.
static float scores(const Attn* a, const float* qt, const float* kb, int n, float* p) {
  float m = -__builtin_inff();
  for (int j = 0; j < n; j++) {
    float s = a->scale * dot(qt, kb + (uint32_t)j * (uint32_t)a->Dk, a->hs);
    p[j] = s;
    if (s > m) m = s;
  }
  return m;
}

void qk_train_attn_fwd_run(int32_t* job, float* scratch) {
  Attn a = attn_of(job);
  float* out = PTR(float*, job[TA_OUT]);
  float* stats = PTR(float*, job[TA_STATS]);
  int lo, hi;
  while (qk_train_next(job, job[TA_B] * a.Hkv, 1, &lo, &hi)) {
    int b = lo / a.Hkv, g = lo % a.Hkv;
    const float* kb = a.k + (uint32_t)(b * a.S) * (uint32_t)a.Dk + g * a.hs;
    const float* vb = a.v + (uint32_t)(b * a.S) * (uint32_t)a.Dk + g * a.hs;
    for (int h = g * a.group; h < (g + 1) * a.group; h++) {
      float* st = stats + (uint32_t)((b * a.H + h) * a.T) * 2u;
      for (int t = 0; t < a.T; t++) {
        uint32_t qo = (uint32_t)(b * a.T + t) * (uint32_t)a.Dq + h * a.hs;
        int n = keys_of(&a, t);
        float m = scores(&a, a.q + qo, kb, n, scratch);
        float inv = 1.0f / exp_rows(scratch, n, m, 0.0f);
        // normalise the weights, then one pass over v
        v128_t iv = wasm_f32x4_splat(inv);
        int j = 0;
        for (; j + 4 <= n; j += 4) wasm_v128_store(scratch + j, wasm_f32x4_mul(wasm_v128_load(scratch + j), iv));
        for (; j < n; j++) scratch[j] *= inv;
        weighted_rows(scratch, vb, a.Dk, n, a.hs, out + qo, 0);
        st[2 * t] = m;
        st[2 * t + 1] = inv;
      }
    }
  }
}

void qk_train_attn_bwd_run(int32_t* job, float* scratch) {
  Attn a = attn_of(job);
  const float* stats = PTR(const float*, job[TA_STATS]);
  const float* dout = PTR(const float*, job[TA_DOUT]);
  float* dq = PTR(float*, job[TA_DQ]);
  float* dk = PTR(float*, job[TA_DK]);
  float* dv = PTR(float*, job[TA_DV]);
  float* P = scratch;
  float* dS = scratch + a.S;
  int lo, hi;
  while (qk_train_next(job, job[TA_B] * a.Hkv, 1, &lo, &hi)) {
    int b = lo / a.Hkv, g = lo % a.Hkv;
    uint32_t kvo = (uint32_t)(b * a.S) * (uint32_t)a.Dk + g * a.hs;
    const float* kb = a.k + kvo;
    const float* vb = a.v + kvo;
    for (int h = g * a.group; h < (g + 1) * a.group; h++) {
      const float* st = stats + (uint32_t)((b * a.H + h) * a.T) * 2u;
      for (int t = 0; t < a.T; t++) {
        uint32_t qo = (uint32_t)(b * a.T + t) * (uint32_t)a.Dq + h * a.hs;
        int n = keys_of(&a, t);
        const float* qt = a.q + qo;
        const float* gt = dout + qo;
        scores(&a, qt, kb, n, P);
        exp_rows(P, n, st[2 * t], st[2 * t + 1]);
        if (dv)
          for (int j = 0; j < n; j++) axpy(dv + kvo + (uint32_t)j * (uint32_t)a.Dk, P[j], gt, a.hs);
        if (!dq && !dk) continue;
        float D = 0.0f;
        for (int j = 0; j < n; j++) {
          float d = dot(gt, vb + (uint32_t)j * (uint32_t)a.Dk, a.hs);
          dS[j] = d;
          D += P[j] * d;
        }
        for (int j = 0; j < n; j++) dS[j] = a.scale * P[j] * (dS[j] - D);
        if (dq) weighted_rows(dS, kb, a.Dk, n, a.hs, dq + qo, 1);
        if (dk)
          for (int j = 0; j < n; j++) axpy(dk + kvo + (uint32_t)j * (uint32_t)a.Dk, dS[j], qt, a.hs);
      }
    }
  }
}
