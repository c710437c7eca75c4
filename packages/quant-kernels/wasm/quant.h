// Internal interfaces between the kernel files.
#ifndef QK_QUANT_H
#define QK_QUANT_H
#include "kernels.h"

#define B_FLOAT 0
#define B_QUANT_T 1  // opB[k][n] = W[n][k] (qmatmul)
#define B_QUANT_N 2  // opB[k][n] = W[k][n] (qmatmulT)

// Where the GEMM's B panels come from.
typedef struct {
  int kind;
  const float* B;
  int ldb;
  int tb;
  const int32_t* desc;
} BSource;

// out[0 .. k1-k0) = W[row, k0 .. k1) (k1 <= Kp).
void qk_dequant_range(const int32_t* d, int row, int k0, int k1, float* out);
// The same for a ggml block format (d[D_BLOCK] != 0; ggml_blocks.c), k1 <= K.
void qk_block_range(const int32_t* d, int row, int k0, int k1, float* out);
// Σ_k W[row, k]·x[k] of a ggml block format row (x: K floats).
float qk_block_dot(const int32_t* d, int row, const float* x);

void qk_gemm_region(int K, const float* A, int lda, int ta, const BSource* bs, float* C, int ldc, float alpha,
                    float beta, int m0, int m1, int n0, int n1, float* scratch);
void qk_gemv_region(int K, const float* x, const float* B, int ldb, int tb, float* y, float alpha, float beta, int n0,
                    int n1);

// Per-group sums of one x row (fast formats only): xs[g] = Σ_{k∈g} x[k].
void qk_xsums(const int32_t* d, const float* x, float* xs);
// xp[k] = x[k]·2^(−CB·t) for the field t that column k occupies in its block (1 for the top field);
// used by the offset decode (D_OFFSET).
void qk_xprescale(const int32_t* d, const float* x, float* xp);
// Fused y[n0..n1) = x·Wᵀ for one x row (x: Kp floats, zero-padded; xp from qk_xprescale when
// D_OFFSET, xs from qk_xsums). tmp: K floats (used by the act-order path).
void qk_qmatvec_rows(const int32_t* d, const float* x, const float* xp, const float* xs, float* y, int n0, int n1,
                     float* tmp);
// Fused dx[k0..k1) = g·W for one g row (g: N floats); tmp: k1-k0 floats.
void qk_qmatvec_t_cols(const int32_t* d, const float* g, float* dx, int k0, int k1, float* tmp);
// Whether the fused vector paths apply (no act-order, group length a multiple of 4).
int qk_fast(const int32_t* d);
// Whether the planar codebook matvec applies (a lut in 4-bit containers, groups of whole blocks); it
// reads x permuted by qk_lut_xperm (Kp floats) in place of xp.
int qk_lut_planar(const int32_t* d);
void qk_lut_xperm(const int32_t* d, const float* x, float* xp);
#endif
