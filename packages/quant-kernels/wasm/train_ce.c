// Cross-entropy rows for training (OP_TRAIN_CE): for each row r of logits x[r·V .. r·V + V) with target t,
//   lse[r]  = log Σ_j exp(x_j)          (max-shifted, sum in float64)
//   loss[r] = lse[r] − x_t              (0 when t is the ignore index)
// and with TC_GRAD the row becomes softmax − onehot(t): x_j ← exp(x_j − lse) (0 when x_j − lse is below
// TRAIN_CE_CUTOFF), x_t −= 1; an ignored row becomes all 0. Work items are rows.
#include "train.h"

int qk_train_next(int32_t* job, int total, int chunk, int* lo, int* hi) {
  int c = __atomic_fetch_add(&job[J_NEXT], 1, __ATOMIC_RELAXED);
  int64_t a = (int64_t)c * chunk;
  if (a >= total) return 0;
  *lo = (int)a;
  *hi = imin((int)a + chunk, total);
  return 1;
}

void qk_train_run(int32_t* job, int tid, float* scratch) {
  (void)tid;
  switch (job[J_OP]) {
    case OP_TRAIN_CE:
      qk_train_ce_run(job);
      break;
    case OP_TRAIN_ATTN_FWD:
      qk_train_attn_fwd_run(job, scratch);
      break;
    case OP_TRAIN_ATTN_BWD:
      qk_train_attn_bwd_run(job, scratch);
      break;
    case OP_TRAIN_SWIGLU_FWD:
    case OP_TRAIN_SWIGLU_BWD:
      qk_train_swiglu_run(job, job[J_OP] == OP_TRAIN_SWIGLU_BWD);
      break;
    case OP_TRAIN_RMSNORM_FWD:
    case OP_TRAIN_RMSNORM_BWD:
    case OP_TRAIN_RMSNORM_GW:
    case OP_TRAIN_ROPE:
      qk_train_norm_run(job);
      break;
    default:
      __builtin_trap();
  }
}

// Natural log of s ≥ 1 (float64): s = 2^e · m with m in [1, 2), log m = 2·atanh((m−1)/(m+1)).
static double tlog(double s) {
  union {
    double d;
    uint64_t u;
  } b;
  b.d = s;
  int e = (int)((b.u >> 52) & 0x7ff) - 1023;
  b.u = (b.u & 0x000fffffffffffffULL) | 0x3ff0000000000000ULL;
  double m = b.d;
  if (m > 1.41421356237309505) {
    m *= 0.5;
    e++;
  }
  double u = (m - 1.0) / (m + 1.0), u2 = u * u, term = u, sum = 0.0;
  for (int k = 1; k < 40; k += 2) {
    sum += term / k;
    term *= u2;
  }
  return 2.0 * sum + e * 0.69314718055994530942;
}

static void ce_row(float* x, int V, int t, int ignore, int grad, float* loss, float* lse_out) {
  if (t == ignore) {
    *loss = 0.0f;
    *lse_out = 0.0f;
    if (grad)
      for (int j = 0; j < V; j++) x[j] = 0.0f;
    return;
  }
  int j = 0;
  v128_t m4 = wasm_f32x4_splat(-__builtin_inff());
  for (; j + 4 <= V; j += 4) m4 = wasm_f32x4_pmax(m4, wasm_v128_load(x + j));
  float m = wasm_f32x4_extract_lane(m4, 0);
  for (int l = 1; l < 4; l++) {
    float v = l == 1 ? wasm_f32x4_extract_lane(m4, 1) : l == 2 ? wasm_f32x4_extract_lane(m4, 2) : wasm_f32x4_extract_lane(m4, 3);
    if (v > m) m = v;
  }
  for (; j < V; j++)
    if (x[j] > m) m = x[j];
  v128_t mv = wasm_f32x4_splat(m);
  v128_t s0 = wasm_f64x2_splat(0.0), s1 = s0;
  j = 0;
  for (; j + 4 <= V; j += 4) {
    v128_t e = exp4(wasm_f32x4_sub(wasm_v128_load(x + j), mv));
    s0 = wasm_f64x2_add(s0, wasm_f64x2_promote_low_f32x4(e));
    s1 = wasm_f64x2_add(s1, wasm_f64x2_promote_low_f32x4(wasm_i32x4_shuffle(e, e, 2, 3, 0, 1)));
  }
  v128_t s2 = wasm_f64x2_add(s0, s1);
  double sum = wasm_f64x2_extract_lane(s2, 0) + wasm_f64x2_extract_lane(s2, 1);
  for (; j < V; j++) sum += wasm_f32x4_extract_lane(exp4(wasm_f32x4_splat(x[j] - m)), 0);
  double lse = (double)m + tlog(sum);
  *lse_out = (float)lse;
  *loss = (float)(lse - (double)x[t]);
  if (!grad) return;
  float l = (float)lse;
  v128_t lv = wasm_f32x4_splat(l), cut = wasm_f32x4_splat(TRAIN_CE_CUTOFF);
  j = 0;
  for (; j + 4 <= V; j += 4) {
    v128_t z = wasm_f32x4_sub(wasm_v128_load(x + j), lv);
    wasm_v128_store(x + j, wasm_v128_and(exp4(z), wasm_f32x4_ge(z, cut)));
  }
  for (; j < V; j++) {
    float z = x[j] - l;
    x[j] = z < TRAIN_CE_CUTOFF ? 0.0f : wasm_f32x4_extract_lane(exp4(wasm_f32x4_splat(z)), 0);
  }
  x[t] -= 1.0f;
}

void qk_train_ce_run(int32_t* job) {
  float* x = PTR(float*, job[TC_X]);
  int V = job[TC_V];
  const int32_t* targets = PTR(const int32_t*, job[TC_TARGETS]);
  float* loss = PTR(float*, job[TC_LOSS]);
  float* lse = PTR(float*, job[TC_LSE]);
  int lo, hi;
  while (qk_train_next(job, job[TC_ROWS], 1, &lo, &hi)) {
    for (int r = lo; r < hi; r++)
      ce_row(x + (uint32_t)r * (uint32_t)V, V, targets[r], job[TC_IGNORE], job[TC_GRAD], loss + r, lse + r);
  }
}
