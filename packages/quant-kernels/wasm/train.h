// Training kernels (train_*.c): job ids and slots, after the ops of kernels.h and decode.h. The
// TypeScript mirror lives in src/wasm/wasm-train.ts; keep the two in step. run.c hands every op id
// in [OP_TRAIN_FIRST, OP_TRAIN_LAST] to qk_train_run.
#ifndef QK_TRAIN_H
#define QK_TRAIN_H
#include "kernels.h"

#define OP_TRAIN_FIRST 60
#define OP_TRAIN_CE 60  // per-row log-sum-exp, loss and (optionally) softmax − onehot in place (train_ce.c)
#define OP_TRAIN_ATTN_FWD 61  // causal GQA attention forward, row statistics saved (train_attn.c)
#define OP_TRAIN_ATTN_BWD 62  // its backward: dq, dk, dv accumulated (train_attn.c)
#define OP_TRAIN_SWIGLU_FWD 63  // out = silu(a) · b (train_swiglu.c)
#define OP_TRAIN_SWIGLU_BWD 64  // da += g · b · σ(a)(1 + a(1 − σ(a))), db += g · silu(a) (train_swiglu.c)
#define OP_TRAIN_RMSNORM_FWD 65  // y = x · s · w per row, s = 1/rms (train_norm.c)
#define OP_TRAIN_RMSNORM_BWD 66  // gx += s·g·w − x·s³/d·Σ g·w·x (train_norm.c)
#define OP_TRAIN_RMSNORM_GW 67   // gw += Σ_rows g·x·s (train_norm.c)
#define OP_TRAIN_ROPE 68         // rotary embedding, forward or (sign −1, accumulating) backward (train_norm.c)
#define OP_TRAIN_LAST 79

// OP_TRAIN_CE slots (byte addresses unless said).
#define TC_X 4        // logits [rows × V], overwritten with the gradient when TC_GRAD
#define TC_ROWS 5
#define TC_V 6
#define TC_TARGETS 7  // int32 [rows]; TC_IGNORE marks a row without a target
#define TC_IGNORE 8   // the ignore index (a value, not an address)
#define TC_LOSS 9     // float [rows]: lse − logit[target] (0 for an ignored row)
#define TC_LSE 10     // float [rows]: the row's log-sum-exp
#define TC_GRAD 11    // 1: write softmax − onehot into the row (0 below TRAIN_CE_CUTOFF; an ignored row all 0)

// OP_TRAIN_ATTN_* slots (byte addresses unless said). q, out, dout, dq: [B, T, H·hs]; k, v, dk, dv:
// [B, S, Hkv·hs]; stats: [B, H, T, 2] (row max of the scaled scores, 1/Σexp). Query t sees keys
// j ≤ t + S − T when causal, every key otherwise.
#define TA_Q 4
#define TA_K 5
#define TA_V 6
#define TA_OUT 7     // forward: written
#define TA_STATS 8   // forward: written; backward: read
#define TA_B 9
#define TA_T 10
#define TA_S 11
#define TA_H 12
#define TA_HKV 13
#define TA_HS 14
#define TA_SCALE 15  // f32 bits
#define TA_CAUSAL 16
#define TA_DOUT 17   // backward: the output's gradient
#define TA_DQ 18     // backward: += (0: not wanted)
#define TA_DK 19
#define TA_DV 20

// OP_TRAIN_SWIGLU_* slots (byte addresses unless said): n floats each.
#define TS_A 4
#define TS_B 5
#define TS_OUT 6   // forward: written
#define TS_G 7     // backward: the output's gradient
#define TS_DA 8    // backward: += (0: not wanted)
#define TS_DB 9
#define TS_N 10

// OP_TRAIN_RMSNORM_* and OP_TRAIN_ROPE slots (byte addresses unless said); rows of d floats.
#define TR_X 4      // input rows (rope: the source)
#define TR_W 5      // weight [d]
#define TR_Y 6      // forward output (rope: the destination)
#define TR_INV 7    // float [rows]: 1/rms per row (forward: written when non-zero; backward: read)
#define TR_ROWS 8
#define TR_D 9      // row length (rope: nHeads·hs)
#define TR_EPS 10   // f32 bits
#define TR_G 11     // the output's gradient
#define TR_GX 12    // += input gradient
#define TR_GW 13    // += weight gradient
#define TR_COS 14   // rope: float [T × hs/2]
#define TR_SIN 15   // rope: float [T × hs/2]
#define TR_HS 16    // rope: head size (even)
#define TR_T 17     // rope: positions per sequence (row r is at t = r mod T)
#define TR_HALF 18  // rope: 1 = pairs (m, m + hs/2), 0 = (2m, 2m+1)
#define TR_ACC 19   // rope: 1 = dst +=, 0 = dst =
#define TR_SIGN 20  // rope: f32 bits, +1 forward, −1 the inverse rotation
#define TRAIN_ROW_CHUNK 16  // rows per work item

// exp(z) for z = x − lse below this counts as 0 in the gradient (2^-64: far below float32 resolution
// of the row, and subnormal floats would slow the next GEMM down many times over).
#define TRAIN_CE_CUTOFF (-44.36f)

// Dispatches OP_TRAIN_* jobs (called by qk_run).
void qk_train_run(int32_t* job, int tid, float* scratch);

// Helpers shared by the train_*.c files.
int qk_train_next(int32_t* job, int total, int chunk, int* lo, int* hi);
void qk_train_ce_run(int32_t* job);
void qk_train_attn_fwd_run(int32_t* job, float* scratch);
void qk_train_attn_bwd_run(int32_t* job, float* scratch);
void qk_train_swiglu_run(int32_t* job, int backward);
void qk_train_norm_run(int32_t* job);

#endif
