// Slot indices of the records the kernels read from wasm memory. Mirror of wasm/kernels.h: keep
// the two in step (the backend tests exercise every op against the reference).

/** Job record header (int32 slots at the job pointer). */
export const J_OP = 0;
export const J_SCRATCH = 1;
export const J_STRIDE = 2;
/** Next work chunk; zeroed per job, taken by threads with an atomic add. */
export const J_NEXT = 3;

/** Operation ids. */
export const OP_SGEMM = 1;
export const OP_SGEMV = 2;
export const OP_QMATVEC = 3;
export const OP_QMATMUL = 4;
export const OP_QMATMUL_T = 5;
export const OP_QMATVEC_T = 6;
export const OP_DEQUANT = 7;

/** OP_SGEMM / OP_SGEMV slots. */
export const G_M = 4;
export const G_N = 5;
export const G_K = 6;
export const G_A = 7;
export const G_LDA = 8;
export const G_TA = 9;
export const G_B = 10;
export const G_LDB = 11;
export const G_TB = 12;
export const G_C = 13;
export const G_LDC = 14;
export const G_ALPHA = 15;
export const G_BETA = 16;

/** Quantized-op slots. */
export const Q_DESC = 4;
export const Q_X = 5;
export const Q_ROWS = 6;
export const Q_Y = 7;

/** Resident descriptor slots. */
export const D_BITS = 0;
export const D_CB = 1;
export const D_N = 2;
export const D_K = 3;
export const D_KP = 4;
export const D_WPR = 5;
export const D_NG = 6;
export const D_GS = 7;
export const D_WORDS = 8;
export const D_SCALES = 9;
export const D_ZEROS = 10;
export const D_GIDX = 11;
/** 1 when the fused matvec may use the offset decode (asymmetric format, bits = container bits). */
export const D_OFFSET = 12;
/** Byte address of a codebook format's `2^bits` floats (indexed by code); 0 for affine formats. */
export const D_LUT = 13;
/** ggml type id of a block format (the resident words are the rows' ggml blocks), 0 otherwise. */
export const D_BLOCK = 14;
export const D_SIZE = 15;

/** GEMM blocking (floats), as in kernels.h. */
export const MR = 4;
export const NR = 8;
export const MC = 128;
export const KC = 256;
export const NC = 2048;

/** Floats of per-thread scratch the GEMM needs before its dequantization row buffer. */
export const GEMM_SCRATCH_FLOATS = MC * KC + KC * NC + MR * NR;
