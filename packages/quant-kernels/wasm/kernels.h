// Shared definitions of the quant-kernels WebAssembly kernels (C, wasm32 + simd128, no libc).
//
// Everything the JavaScript side writes into wasm memory is described here: the job record that
// `qk_run` reads, and the resident quantized-weight descriptor. The TypeScript mirror of these
// indices lives in src/wasm/layout.ts; keep the two in step.
#ifndef QK_KERNELS_H
#define QK_KERNELS_H

#include <stdint.h>
#include <wasm_simd128.h>

#define QK_EXPORT(name) __attribute__((export_name(#name)))
#define QK_INLINE static inline __attribute__((always_inline))

// min / max of two ints, for every kernel file.
static inline int imin(int a, int b) { return a < b ? a : b; }
static inline int imax(int a, int b) { return a > b ? a : b; }

// ---- Job record: int32 slots at the job pointer ------------------------------------------------
// Common header.
#define J_OP 0          // operation id (OP_*)
#define J_SCRATCH 1     // byte address of thread 0's scratch; thread t uses SCRATCH + t*STRIDE
#define J_STRIDE 2      // bytes of scratch per thread
#define J_NEXT 3        // next work chunk (zeroed by the caller; threads take chunks with an atomic add)
// Operation ids.
#define OP_SGEMM 1      // C = alpha*op(A)*op(B) + beta*C (M > 1 or any shape)
#define OP_SGEMV 2      // M == 1 float matvec
#define OP_QMATVEC 3    // fused y[r] = x[r]·Wᵀ, one x row at a time
#define OP_QMATMUL 4    // tiled: gemm with B panels dequantized from W (transposed)
#define OP_QMATMUL_T 5  // tiled: dx = g·W, gemm with B panels dequantized from W
#define OP_QMATVEC_T 6  // fused dx = g·W for few rows
#define OP_DEQUANT 7    // out[N×K] = W

// OP_SGEMM / OP_SGEMV slots.
#define G_M 4
#define G_N 5
#define G_K 6
#define G_A 7      // byte address of A[aOffset]
#define G_LDA 8
#define G_TA 9
#define G_B 10     // byte address of B[bOffset]
#define G_LDB 11
#define G_TB 12
#define G_C 13     // byte address of C[cOffset]
#define G_LDC 14
#define G_ALPHA 15 // f32 bits
#define G_BETA 16  // f32 bits

// OP_QMATVEC / OP_QMATMUL / OP_QMATMUL_T / OP_QMATVEC_T / OP_DEQUANT slots.
#define Q_DESC 4   // byte address of the resident descriptor
#define Q_X 5      // input rows (x: rows×Kp padded with zeros, or g: rows×N)
#define Q_ROWS 6
#define Q_Y 7      // output rows (y: rows×N, dx: rows×K, or dequantized N×K)

// ---- Resident quantized weight descriptor: int32 slots ----------------------------------------
// Codes are re-packed into "containers" of CB = 2, 4 or 8 bits (3-bit codes live in 4-bit
// containers) in a lane-interleaved layout: each row is Kp = ceil(K / (4*PER))*4*PER values
// (PER = 32/CB codes per word), stored as blocks of 4 words (one v128). In block b, word j holds
// at bits [t*CB, t*CB+CB) the centred code u = q − 2^(bits−1) (two's complement in CB bits) of
// column k = b*4*PER + 4*t + j. So one shl and one arithmetic shr of a v128 block yield the codes
// of 4 consecutive columns 4t..4t+3, lined up with x. Resident zeros are centred the same way.
#define D_BITS 0
#define D_CB 1
#define D_N 2
#define D_K 3
#define D_KP 4
#define D_WPR 5    // words per resident row = Kp*CB/32
#define D_NG 6     // groups per row
#define D_GS 7     // group length in columns (groupSize, or Kp for per-channel); 0 with gIdx
#define D_WORDS 8  // byte addresses
#define D_SCALES 9
#define D_ZEROS 10
#define D_GIDX 11  // 0 when absent
#define D_OFFSET 12  // 1: the fused matvec may use the offset decode (asymmetric, bits == CB; see quant.c)
#define D_LUT 13     // byte address of a codebook format's 2^bits floats (indexed by code), 0 for affine
#define D_BLOCK 14   // ggml type id of a block format (D_WORDS: the rows' ggml blocks, D_WPR words a row), 0 otherwise
#define D_SIZE 15

// Blocking of the float GEMM (floats): A block MC×KC, B block KC×NC, micro-kernel MR×NR.
#define MR 4
#define NR 8
#define MC 128
#define KC 256
#define NC 2048

// ---- Small helpers shared by the kernels ---------------------------------------------------------
// A byte address held in an int32 job slot, as a pointer of type T.
#define PTR(T, v) ((T)(uintptr_t)(uint32_t)(v))
// c += a·b on four lanes, a separate multiply and add (rounded as the scalar references round).
#define FMA(c, a, b) c = wasm_f32x4_add(c, wasm_f32x4_mul(a, b))

// The float whose bits are `bits` (f32 job slots).
QK_INLINE float f32_of(int32_t bits) {
  union {
    int32_t i;
    float f;
  } u;
  u.i = bits;
  return u.f;
}

// Sum of the four lanes, in lane order.
QK_INLINE float hsum(v128_t v) {
  return wasm_f32x4_extract_lane(v, 0) + wasm_f32x4_extract_lane(v, 1) + wasm_f32x4_extract_lane(v, 2) +
         wasm_f32x4_extract_lane(v, 3);
}

// e^x for x ≤ 0 (softmax after subtracting the max), four lanes: 2^n · p(r) with n = round(x·log2 e),
// r = x − n·ln 2 (two-part ln 2) and Cephes' degree-6 polynomial for e^r on [−ln2/2, ln2/2]; x below
// −87.3 is clamped (the result is then ≈ 1e−38, never subnormal, where a caller's sum no longer sees it).
QK_INLINE v128_t exp4(v128_t x) {
  x = wasm_f32x4_max(x, wasm_f32x4_splat(-87.33654f));
  v128_t n = wasm_f32x4_nearest(wasm_f32x4_mul(x, wasm_f32x4_splat(1.44269504088896341f)));
  v128_t r = wasm_f32x4_sub(x, wasm_f32x4_mul(n, wasm_f32x4_splat(0.693359375f)));
  r = wasm_f32x4_sub(r, wasm_f32x4_mul(n, wasm_f32x4_splat(-2.12194440e-4f)));
  v128_t p = wasm_f32x4_splat(1.9875691500e-4f);
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), wasm_f32x4_splat(1.3981999507e-3f));
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), wasm_f32x4_splat(8.3334519073e-3f));
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), wasm_f32x4_splat(4.1665795894e-2f));
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), wasm_f32x4_splat(1.6666665459e-1f));
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), wasm_f32x4_splat(5.0000001201e-1f));
  p = wasm_f32x4_add(wasm_f32x4_add(wasm_f32x4_mul(wasm_f32x4_mul(p, r), r), r), wasm_f32x4_splat(1.0f));
  v128_t e = wasm_i32x4_shl(wasm_i32x4_add(wasm_i32x4_trunc_sat_f32x4(n), wasm_i32x4_splat(127)), 23);
  return wasm_f32x4_mul(p, e);
}

#endif
