// Attention for training (OP_TRAIN_ATTN_FWD / OP_TRAIN_ATTN_BWD): causal (or full) grouped-query
// attention over whole sequences, forward and backward, touching only the unmasked scores. For batch b,
// query head h (kv head g = h / (H / Hkv)) and query row t (keys j < n_t: n_t = min(S, t + S − T + 1)
// when causal, S otherwise):
//   s_j = scale · q_t·k_j,  m_t = max_j s_j,  P_j = exp(s_j − m_t) / Σ exp,  out_t = Σ_j P_j v_j
// forward saves (m_t, 1/Σexp) per row; backward rebuilds P from them and accumulates
//   dP_j = dout_t·v_j,  dS_j = scale · P_j (dP_j − Σ_i P_i dP_i)
//   dq_t += Σ_j dS_j k_j,  dk_j += dS_j q_t,  dv_j += P_j dout_t
// Work items: (b, kv head) pairs, each running all of its query heads (so dk, dv rows are written by
// one thread only). Queries go in blocks of TA_BM rows: each block's scores against the keys its last
// row sees are one GEMM (gemm.c's packed kernel), so fully masked key ranges are never touched.
// Scratch per thread: the GEMM's blocks, then two TA_BM × S score buffers.
#include "quant.h"
#include "train.h"

// p[0..n) = exp(p − m) (· inv when inv > 0); returns Σ before scaling.
static float exp_rows(float* p, int n, float m, float inv) {
  v128_t mv = wasm_f32x4_splat(m), acc = wasm_f32x4_splat(0.0f);
  int j = 0;
  for (; j + 4 <= n; j += 4) {
    v128_t e = exp4(wasm_f32x4_sub(wasm_v128_load(p + j), mv));
    acc = wasm_f32x4_add(acc, e);
    wasm_v128_store(p + j, e);
  }
  float sum = hsum(acc);
  for (; j < n; j++) {
    float e = wasm_f32x4_extract_lane(exp4(wasm_f32x4_splat(p[j] - m)), 0);
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

#define GEMM_FLOATS (MC * KC + KC * NC + MR * NR + 64)

// C[0..m)[0..n) = alpha · op(A)·op(B) + beta · C with gemm.c's packed kernel.
static void gemm(int K, const float* A, int lda, int ta, const float* B, int ldb, int tb, float* C, int ldc, float alpha,
                 float beta, int m, int n, float* scratch) {
  BSource bs = {B_FLOAT, B, ldb, tb, 0};
  qk_gemm_region(K, A, lda, ta, &bs, C, ldc, alpha, beta, 0, m, 0, n, scratch);
}

// P[r][0..n) for the block's rows t0 + r: scale·q·kᵀ, then softmax over the row's keys (masked keys 0).
// Forward (st_out) computes and stores each row's (max, 1/Σexp); backward (st_in) reuses them.
static void block_probs(const Attn* a, const float* qb, const float* kb, int t0, int bm, int n, float* P, float* st_out,
                        const float* st_in, float* gs) {
  gemm(a->hs, qb, a->Dq, 0, kb, a->Dk, 1, P, a->S, a->scale, 0.0f, bm, n, gs);
  for (int r = 0; r < bm; r++) {
    float* p = P + (uint32_t)r * (uint32_t)a->S;
    int nt = keys_of(a, t0 + r);
    if (st_in) {
      exp_rows(p, nt, st_in[2 * (t0 + r)], st_in[2 * (t0 + r) + 1]);
    } else {
      float m = -__builtin_inff();
      for (int j = 0; j < nt; j++)
        if (p[j] > m) m = p[j];
      float inv = 1.0f / exp_rows(p, nt, m, 0.0f);
      for (int j = 0; j < nt; j++) p[j] *= inv;
      st_out[2 * (t0 + r)] = m;
      st_out[2 * (t0 + r) + 1] = inv;
    }
    for (int j = nt; j < n; j++) p[j] = 0.0f;
  }
}

#define TA_BM 64

void qk_train_attn_fwd_run(int32_t* job, float* scratch) {
  Attn a = attn_of(job);
  float* out = PTR(float*, job[TA_OUT]);
  float* stats = PTR(float*, job[TA_STATS]);
  float* P = scratch + GEMM_FLOATS;
  int lo, hi;
  while (qk_train_next(job, job[TA_B] * a.Hkv, 1, &lo, &hi)) {
    int b = lo / a.Hkv, g = lo % a.Hkv;
    const float* kb = a.k + (uint32_t)(b * a.S) * (uint32_t)a.Dk + g * a.hs;
    const float* vb = a.v + (uint32_t)(b * a.S) * (uint32_t)a.Dk + g * a.hs;
    for (int h = g * a.group; h < (g + 1) * a.group; h++) {
      float* st = stats + (uint32_t)((b * a.H + h) * a.T) * 2u;
      for (int t0 = 0; t0 < a.T; t0 += TA_BM) {
        int bm = a.T - t0 < TA_BM ? a.T - t0 : TA_BM;
        int n = keys_of(&a, t0 + bm - 1);
        uint32_t qo = (uint32_t)(b * a.T + t0) * (uint32_t)a.Dq + h * a.hs;
        block_probs(&a, a.q + qo, kb, t0, bm, n, P, st, 0, scratch);
        gemm(n, P, a.S, 0, vb, a.Dk, 0, out + qo, a.Dq, 1.0f, 0.0f, bm, a.hs, scratch);
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
  float* P = scratch + GEMM_FLOATS;
  float* dS = P + (uint32_t)TA_BM * (uint32_t)a.S;
  int lo, hi;
  while (qk_train_next(job, job[TA_B] * a.Hkv, 1, &lo, &hi)) {
    int b = lo / a.Hkv, g = lo % a.Hkv;
    uint32_t kvo = (uint32_t)(b * a.S) * (uint32_t)a.Dk + g * a.hs;
    const float* kb = a.k + kvo;
    const float* vb = a.v + kvo;
    for (int h = g * a.group; h < (g + 1) * a.group; h++) {
      const float* st = stats + (uint32_t)((b * a.H + h) * a.T) * 2u;
      for (int t0 = 0; t0 < a.T; t0 += TA_BM) {
        int bm = a.T - t0 < TA_BM ? a.T - t0 : TA_BM;
        int n = keys_of(&a, t0 + bm - 1);
        uint32_t qo = (uint32_t)(b * a.T + t0) * (uint32_t)a.Dq + h * a.hs;
        const float* qb = a.q + qo;
        const float* gb = dout + qo;
        block_probs(&a, qb, kb, t0, bm, n, P, 0, st, scratch);
        // dv[0..n) += Pᵀ · dout
        if (dv) gemm(bm, P, a.S, 1, gb, a.Dq, 0, dv + kvo, a.Dk, 1.0f, 1.0f, n, a.hs, scratch);
        if (!dq && !dk) continue;
        // dP = dout · vᵀ, then dS = scale · P ⊙ (dP − Σ_j P dP)
        gemm(a.hs, gb, a.Dq, 0, vb, a.Dk, 1, dS, a.S, 1.0f, 0.0f, bm, n, scratch);
        for (int r = 0; r < bm; r++) {
          float* p = P + (uint32_t)r * (uint32_t)a.S;
          float* d = dS + (uint32_t)r * (uint32_t)a.S;
          v128_t acc = wasm_f32x4_splat(0.0f);
          int j = 0;
          for (; j + 4 <= n; j += 4) acc = wasm_f32x4_add(acc, wasm_f32x4_mul(wasm_v128_load(p + j), wasm_v128_load(d + j)));
          float D = hsum(acc);
          for (; j < n; j++) D += p[j] * d[j];
          v128_t Dv = wasm_f32x4_splat(D), sc = wasm_f32x4_splat(a.scale);
          j = 0;
          for (; j + 4 <= n; j += 4)
            wasm_v128_store(d + j, wasm_f32x4_mul(wasm_f32x4_mul(sc, wasm_v128_load(p + j)),
                                                  wasm_f32x4_sub(wasm_v128_load(d + j), Dv)));
          for (; j < n; j++) d[j] = a.scale * p[j] * (d[j] - D);
        }
        // dq += dS · k;  dk[0..n) += dSᵀ · q
        if (dq) gemm(n, dS, a.S, 0, kb, a.Dk, 0, dq + qo, a.Dq, 1.0f, 1.0f, bm, a.hs, scratch);
        if (dk) gemm(bm, dS, a.S, 1, qb, a.Dq, 0, dk + kvo, a.Dk, 1.0f, 1.0f, n, a.hs, scratch);
      }
    }
  }
}
