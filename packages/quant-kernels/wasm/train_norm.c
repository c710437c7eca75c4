// RMSNorm and RoPE for training (OP_TRAIN_RMSNORM_FWD / _BWD / _GW, OP_TRAIN_ROPE), rows of d floats:
//   forward   s_r = 1/sqrt(Σ_j x[r,j]²/d + eps),  y[r,j] = x[r,j]·s_r·w[j],  inv[r] = s_r
//   backward  gx[r,j] += s_r·g[r,j]·w[j] − x[r,j]·s_r³/d·Σ_j g[r,j]·w[j]·x[r,j]    (rows split)
//   weight    gw[j]   += Σ_r g[r,j]·x[r,j]·s_r                                     (columns split)
//   rope      dst[r, h·hs + pair m] = rotation of (x0, x1) by (cos, sign·sin)[t = r mod T, m], pair m at
//             (2m, 2m+1) or (m, m + hs/2) with TR_HALF; TR_ACC: dst += instead of dst =
// Sums over a row run in four float lanes and are added in float64. Work items: chunks of rows (of
// columns for the weight gradient).
#include "train.h"

// Σ_j a[j]·b[j]·c[j] (c may be 0: Σ a·b).
static double dot3(const float* a, const float* b, const float* c, int d) {
  v128_t acc = wasm_f32x4_splat(0.0f);
  int j = 0;
  if (c) {
    for (; j + 4 <= d; j += 4)
      FMA(acc, wasm_f32x4_mul(wasm_v128_load(a + j), wasm_v128_load(b + j)), wasm_v128_load(c + j));
  } else {
    for (; j + 4 <= d; j += 4) FMA(acc, wasm_v128_load(a + j), wasm_v128_load(b + j));
  }
  double s = (double)wasm_f32x4_extract_lane(acc, 0) + (double)wasm_f32x4_extract_lane(acc, 1) +
             (double)wasm_f32x4_extract_lane(acc, 2) + (double)wasm_f32x4_extract_lane(acc, 3);
  for (; j < d; j++) s += (double)a[j] * b[j] * (c ? c[j] : 1.0f);
  return s;
}

static void rms_fwd(int32_t* job) {
  const float* X = PTR(const float*, job[TR_X]);
  const float* W = PTR(const float*, job[TR_W]);
  float* Y = PTR(float*, job[TR_Y]);
  float* INV = PTR(float*, job[TR_INV]);
  int d = job[TR_D];
  float eps = f32_of(job[TR_EPS]);
  int lo, hi;
  while (qk_train_next(job, job[TR_ROWS], TRAIN_ROW_CHUNK, &lo, &hi)) {
    for (int r = lo; r < hi; r++) {
      const float* x = X + (uint32_t)r * (uint32_t)d;
      float* y = Y + (uint32_t)r * (uint32_t)d;
      float s = (float)(1.0 / __builtin_sqrt(dot3(x, x, 0, d) / d + eps));
      if (INV) INV[r] = s;
      v128_t sv = wasm_f32x4_splat(s);
      int j = 0;
      for (; j + 4 <= d; j += 4)
        wasm_v128_store(y + j, wasm_f32x4_mul(wasm_f32x4_mul(wasm_v128_load(x + j), sv), wasm_v128_load(W + j)));
      for (; j < d; j++) y[j] = x[j] * s * W[j];
    }
  }
}

static void rms_bwd(int32_t* job) {
  const float* X = PTR(const float*, job[TR_X]);
  const float* W = PTR(const float*, job[TR_W]);
  const float* G = PTR(const float*, job[TR_G]);
  const float* INV = PTR(const float*, job[TR_INV]);
  float* GX = PTR(float*, job[TR_GX]);
  int d = job[TR_D];
  int lo, hi;
  while (qk_train_next(job, job[TR_ROWS], TRAIN_ROW_CHUNK, &lo, &hi)) {
    for (int r = lo; r < hi; r++) {
      uint32_t o = (uint32_t)r * (uint32_t)d;
      const float *x = X + o, *g = G + o;
      float* gx = GX + o;
      float s = INV[r];
      float c = (float)((double)s * s * s * dot3(g, W, x, d) / d);
      v128_t sv = wasm_f32x4_splat(s), cv = wasm_f32x4_splat(c);
      int j = 0;
      for (; j + 4 <= d; j += 4) {
        v128_t t = wasm_f32x4_sub(wasm_f32x4_mul(sv, wasm_f32x4_mul(wasm_v128_load(g + j), wasm_v128_load(W + j))),
                                  wasm_f32x4_mul(cv, wasm_v128_load(x + j)));
        wasm_v128_store(gx + j, wasm_f32x4_add(wasm_v128_load(gx + j), t));
      }
      for (; j < d; j++) gx[j] += s * g[j] * W[j] - c * x[j];
    }
  }
}

static void rms_gw(int32_t* job) {
  const float* X = PTR(const float*, job[TR_X]);
  const float* G = PTR(const float*, job[TR_G]);
  const float* INV = PTR(const float*, job[TR_INV]);
  float* GW = PTR(float*, job[TR_GW]);
  int d = job[TR_D], rows = job[TR_ROWS];
  int lo, hi;
  while (qk_train_next(job, d, 64, &lo, &hi)) {
    for (int r = 0; r < rows; r++) {
      uint32_t o = (uint32_t)r * (uint32_t)d;
      v128_t sv = wasm_f32x4_splat(INV[r]);
      int j = lo;
      for (; j + 4 <= hi; j += 4)
        wasm_v128_store(GW + j, wasm_f32x4_add(wasm_v128_load(GW + j),
                                               wasm_f32x4_mul(wasm_f32x4_mul(wasm_v128_load(G + o + j),
                                                                             wasm_v128_load(X + o + j)),
                                                              sv)));
      for (; j < hi; j++) GW[j] += G[o + j] * X[o + j] * INV[r];
    }
  }
}

static void rope(int32_t* job) {
  const float* SRC = PTR(const float*, job[TR_X]);
  float* DST = PTR(float*, job[TR_Y]);
  const float* COS = PTR(const float*, job[TR_COS]);
  const float* SIN = PTR(const float*, job[TR_SIN]);
  int D = job[TR_D], hs = job[TR_HS], T = job[TR_T], half = job[TR_HALF], acc = job[TR_ACC];
  float sign = f32_of(job[TR_SIGN]);
  int np = hs / 2;
  int lo, hi;
  while (qk_train_next(job, job[TR_ROWS], TRAIN_ROW_CHUNK, &lo, &hi)) {
    for (int r = lo; r < hi; r++) {
      int t = r % T;
      const float* cs = COS + (uint32_t)t * (uint32_t)np;
      const float* sn = SIN + (uint32_t)t * (uint32_t)np;
      for (int h0 = 0; h0 < D; h0 += hs) {
        const float* x = SRC + (uint32_t)r * (uint32_t)D + h0;
        float* y = DST + (uint32_t)r * (uint32_t)D + h0;
        int m = 0;
        if (half) {
          v128_t sg = wasm_f32x4_splat(sign);
          for (; m + 4 <= np; m += 4) {
            v128_t c = wasm_v128_load(cs + m), s = wasm_f32x4_mul(sg, wasm_v128_load(sn + m));
            v128_t x0 = wasm_v128_load(x + m), x1 = wasm_v128_load(x + m + np);
            v128_t y0 = wasm_f32x4_sub(wasm_f32x4_mul(x0, c), wasm_f32x4_mul(x1, s));
            v128_t y1 = wasm_f32x4_add(wasm_f32x4_mul(x0, s), wasm_f32x4_mul(x1, c));
            if (acc) {
              y0 = wasm_f32x4_add(wasm_v128_load(y + m), y0);
              y1 = wasm_f32x4_add(wasm_v128_load(y + m + np), y1);
            }
            wasm_v128_store(y + m, y0);
            wasm_v128_store(y + m + np, y1);
          }
        } else {
          v128_t sg = wasm_f32x4_splat(sign);
          for (; m + 4 <= np; m += 4) {
            // pairs m..m+3 live in x[2m .. 2m+8): deinterleave, rotate, interleave
            v128_t a = wasm_v128_load(x + 2 * m), b = wasm_v128_load(x + 2 * m + 4);
            v128_t x0 = wasm_i32x4_shuffle(a, b, 0, 2, 4, 6), x1 = wasm_i32x4_shuffle(a, b, 1, 3, 5, 7);
            v128_t c = wasm_v128_load(cs + m), s = wasm_f32x4_mul(sg, wasm_v128_load(sn + m));
            v128_t y0 = wasm_f32x4_sub(wasm_f32x4_mul(x0, c), wasm_f32x4_mul(x1, s));
            v128_t y1 = wasm_f32x4_add(wasm_f32x4_mul(x0, s), wasm_f32x4_mul(x1, c));
            v128_t lo4 = wasm_i32x4_shuffle(y0, y1, 0, 4, 1, 5), hi4 = wasm_i32x4_shuffle(y0, y1, 2, 6, 3, 7);
            if (acc) {
              lo4 = wasm_f32x4_add(wasm_v128_load(y + 2 * m), lo4);
              hi4 = wasm_f32x4_add(wasm_v128_load(y + 2 * m + 4), hi4);
            }
            wasm_v128_store(y + 2 * m, lo4);
            wasm_v128_store(y + 2 * m + 4, hi4);
          }
        }
        for (; m < np; m++) {
          int i0 = half ? m : 2 * m, i1 = half ? m + np : 2 * m + 1;
          float c = cs[m], s = sign * sn[m], x0 = x[i0], x1 = x[i1];
          float y0 = x0 * c - x1 * s, y1 = x0 * s + x1 * c;
          if (acc) {
            y0 += y[i0];
            y1 += y[i1];
          }
          y[i0] = y0;
          y[i1] = y1;
        }
      }
    }
  }
  (void)imin;
}

void qk_train_norm_run(int32_t* job) {
  switch (job[J_OP]) {
    case OP_TRAIN_RMSNORM_FWD:
      rms_fwd(job);
      break;
    case OP_TRAIN_RMSNORM_BWD:
      rms_bwd(job);
      break;
    case OP_TRAIN_RMSNORM_GW:
      rms_gw(job);
      break;
    default:
      rope(job);
  }
}
