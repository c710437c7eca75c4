// Training kernels (train_*.c): job ids and slots, after the ops of kernels.h and decode.h. The
// TypeScript mirror lives in src/wasm/wasm-train.ts; keep the two in step. run.c hands every op id
// in [OP_TRAIN_FIRST, OP_TRAIN_LAST] to qk_train_run.
#ifndef QK_TRAIN_H
#define QK_TRAIN_H
#include "kernels.h"

#define OP_TRAIN_FIRST 60
#define OP_TRAIN_CE 60  // per-row log-sum-exp, loss and (optionally) softmax − onehot in place (train_ce.c)
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

// exp(z) for z = x − lse below this counts as 0 in the gradient (2^-64: far below float32 resolution
// of the row, and subnormal floats would slow the next GEMM down many times over).
#define TRAIN_CE_CUTOFF (-44.36f)

// Dispatches OP_TRAIN_* jobs (called by qk_run).
void qk_train_run(int32_t* job, int tid, float* scratch);

// Helpers shared by the train_*.c files.
int qk_train_next(int32_t* job, int total, int chunk, int* lo, int* hi);
void qk_train_ce_run(int32_t* job);
#endif
