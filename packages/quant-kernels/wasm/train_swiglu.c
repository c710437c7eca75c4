// SwiGLU gate for training (OP_TRAIN_SWIGLU_FWD / _BWD), elementwise over n floats:
//   forward   out = a · σ(a) · b
//   backward  da += g · b · σ(a) · (1 + a·(1 − σ(a))),  db += g · a · σ(a)   (either may be absent)
// σ(a) = 1 / (1 + e^−a) from e = e^−|a| ≤ 1 (σ = 1/(1+e) for a ≥ 0, e/(1+e) otherwise), so no lane
// overflows. Work items: chunks of 4096 elements.
#include "train.h"

#define CHUNK 4096

static inline v128_t sigmoid4(v128_t a) {
  v128_t e = exp4(wasm_f32x4_neg(wasm_f32x4_abs(a)));
  v128_t one = wasm_f32x4_splat(1.0f);
  v128_t inv = wasm_f32x4_div(one, wasm_f32x4_add(one, e));
  return wasm_v128_bitselect(inv, wasm_f32x4_mul(e, inv), wasm_f32x4_ge(a, wasm_f32x4_splat(0.0f)));
}

static inline float sigmoid1(float a) { return wasm_f32x4_extract_lane(sigmoid4(wasm_f32x4_splat(a)), 0); }

void qk_train_swiglu_run(int32_t* job, int backward) {
  const float* A = PTR(const float*, job[TS_A]);
  const float* B = PTR(const float*, job[TS_B]);
  int n = job[TS_N];
  int lo, hi;
  if (!backward) {
    float* out = PTR(float*, job[TS_OUT]);
    while (qk_train_next(job, n, CHUNK, &lo, &hi)) {
      int i = lo;
      for (; i + 4 <= hi; i += 4) {
        v128_t a = wasm_v128_load(A + i);
        wasm_v128_store(out + i, wasm_f32x4_mul(wasm_f32x4_mul(a, sigmoid4(a)), wasm_v128_load(B + i)));
      }
      for (; i < hi; i++) out[i] = A[i] * sigmoid1(A[i]) * B[i];
    }
    return;
  }
  const float* G = PTR(const float*, job[TS_G]);
  float* dA = PTR(float*, job[TS_DA]);
  float* dB = PTR(float*, job[TS_DB]);
  v128_t one = wasm_f32x4_splat(1.0f);
  while (qk_train_next(job, n, CHUNK, &lo, &hi)) {
    int i = lo;
    for (; i + 4 <= hi; i += 4) {
      v128_t a = wasm_v128_load(A + i), g = wasm_v128_load(G + i), s = sigmoid4(a);
      if (dA) {
        v128_t d = wasm_f32x4_mul(wasm_f32x4_mul(g, wasm_v128_load(B + i)),
                                  wasm_f32x4_mul(s, wasm_f32x4_add(one, wasm_f32x4_mul(a, wasm_f32x4_sub(one, s)))));
        wasm_v128_store(dA + i, wasm_f32x4_add(wasm_v128_load(dA + i), d));
      }
      if (dB) wasm_v128_store(dB + i, wasm_f32x4_add(wasm_v128_load(dB + i), wasm_f32x4_mul(g, wasm_f32x4_mul(a, s))));
    }
    for (; i < hi; i++) {
      float a = A[i], s = sigmoid1(a);
      if (dA) dA[i] += G[i] * B[i] * s * (1.0f + a * (1.0f - s));
      if (dB) dB[i] += G[i] * a * s;
    }
  }
}
