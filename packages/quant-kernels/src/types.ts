// The contract every quant-kernels backend and every caller (autograd, model-llama, lora) shares.
// Kernel names and their argument types live here, in one file (house style: tfjs kernel registry).
import type { Bits, PackedMatrix } from "@int21/bitpack";

/** Storage dtype of per-group scales and zeros; counts toward bits per weight. */
export type ScaleDtype = "f32" | "f16";

/**
 * How a format turns a code into a weight: `"affine"` `scale · (q − zero)` (the INT formats),
 * `"lut"` `scale · codebook[q]` (codebook formats: NF4, IQ4_NL), `"block"` (ggml's own blocks: `q4_0` …
 * `q6_k`, `iq4_xs`; the packed bytes are ggml's, see `quantizedFromGgmlBlocks`), or a user kind whose only
 * implementation is its record's `dequantizeRow` / `value` (the reference kernels run it; backends
 * report `supports() === false`). Backends check it in `supports()`.
 */
export type DecodeKind = "affine" | "lut" | "block" | (string & {});

/**
 * A quantization format record (ggml type traits). One record per format, ids stable and never reused.
 * Details (family files under `formats/`) are owned by `formats/`; this is the shape every kernel reads.
 */
export interface QuantFormat {
  /** Stable numeric id, never reused. */
  readonly id: number;
  /** Stable name, e.g. `int2-g64-asym-f16`. */
  readonly name: string;
  readonly bits: Bits;
  /** Input columns per group: 32, 64, 128, or -1 for one group per output row (per-channel). */
  readonly groupSize: number;
  /** Symmetric formats store no zero (zero = 2^(bits-1) implicitly). */
  readonly symmetric: boolean;
  readonly scaleDtype: ScaleDtype;
  /** How a code becomes a weight; absent means `"affine"` (every registered record sets it). */
  readonly decode?: DecodeKind;
  /** The `2^bits` codebook values of a `"lut"` format. */
  readonly codebook?: Float32Array;
}

/**
 * A quantized linear layer, y = x·Wᵀ with W of shape `[outFeatures, inFeatures]` (`[N, K]`).
 *
 * ```
 * w[n, k] = scales[n*nGroups + g(k)] * (q[n, k] - zeros[n*nGroups + g(k)])   (decode "affine")
 * w[n, k] = scales[n*nGroups + g(k)] * codebook[q[n, k]]                      (decode "lut", zeros 0)
 * g(k)    = gIdx ? gIdx[k] : floor(k / groupSize)        (groupSize -1 → g(k) = 0)
 * nGroups = groupSize === -1 ? 1 : ceil(K / groupSize)   (the last group may be shorter than groupSize)
 * ```
 * `qweight` is a bitpack matrix of N rows × K columns (packed along K, rows word-aligned).
 * Records are immutable after construction: backends may cache derived layouts keyed by identity.
 */
export interface QuantizedLinear {
  readonly format: QuantFormat;
  /** N. */
  readonly outFeatures: number;
  /** K. */
  readonly inFeatures: number;
  readonly qweight: PackedMatrix;
  /** `[N × nGroups]`, already rounded to f16 precision when `format.scaleDtype === "f16"`. */
  readonly scales: Float32Array;
  /** `[N × nGroups]` zero points in code units; for symmetric formats every entry is 2^(bits-1). */
  readonly zeros: Float32Array;
  /** Act-order: group index of each input column, `[K]`, values in `[0, nGroups)`. */
  readonly gIdx?: Int32Array;
}

/**
 * Row-major float GEMM: `C[M×N] = alpha · op(A)[M×K] · op(B)[K×N] + beta · C`.
 * `op(A)` is A (stored `M×K`, leading dimension `lda`) or, with `transA`, Aᵀ (A stored `K×M`).
 * Likewise `op(B)` is B (stored `K×N`) or, with `transB`, Bᵀ (B stored `N×K` — the weight layout).
 * Offsets index into the arrays; defaults: offsets 0, `lda/ldb/ldc` the dense row lengths,
 * alpha 1, beta 0 (C is overwritten; with beta 0, C's old contents are ignored even if NaN).
 */
export interface GemmArgs {
  M: number;
  N: number;
  K: number;
  A: Float32Array;
  B: Float32Array;
  C: Float32Array;
  transA?: boolean;
  transB?: boolean;
  aOffset?: number;
  bOffset?: number;
  cOffset?: number;
  lda?: number;
  ldb?: number;
  ldc?: number;
  alpha?: number;
  beta?: number;
  /**
   * Hint: B is a constant (a frozen weight) that will not be mutated while this backend lives, so a
   * backend may keep a resident copy keyed by the array's identity. Never set it for data that changes.
   */
  bConst?: boolean;
}

/** Kernel names, one per entry of {@link Backend}. */
export type KernelName = "sgemm" | "dequantize" | "qmatmul" | "qmatmulT";

/**
 * One Adam / AdamW update of one parameter tensor, in place (autograd's `Adam.step` / `AdamW.step` maths):
 * ```
 * t = step;  c1 = 1 / (1 − β1ᵗ);  c2 = 1 / (1 − β2ᵗ)
 * decoupled (AdamW): l2 = 0,  decay = 1 − lr·wd        L2 (Adam): l2 = wd,  decay = 1
 * for j < grads.length:
 *   g = grads[j] + l2·p[j];  m[j] = β1·m[j] + (1−β1)·g;  v[j] = β2·v[j] + (1−β2)·g²
 *   p[j] = p[j]·decay − lr·(m[j]·c1) / (sqrt(v[j]·c2) + eps)          (p[j] = params[offset + j])
 * ```
 * `m` and `v` (`grads.length` floats) hold the state and are updated in place. A backend may keep a
 * device copy of `m` and `v` keyed by the identity of `m`, reused when the next call has `step` one
 * more than the last one it saw for that `m` (otherwise it uploads the caller's `m` and `v` again);
 * the caller's arrays still hold the state after every call.
 */
export interface AdamWArgs {
  /** The parameter values; the tensor is `params[offset … offset + grads.length)`. */
  params: Float32Array;
  /** First element of the tensor in `params` (default 0). */
  offset?: number;
  grads: Float32Array;
  m: Float32Array;
  v: Float32Array;
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** The 1-based step number t (bias correction). */
  step: number;
  /** true (default): AdamW's decoupled decay; false: Adam's L2 decay folded into the gradient. */
  decoupled?: boolean;
}

/**
 * A backend is a value built by a `create*Backend()` function with an explicit list of kernels.
 * Every kernel writes into the output buffer the caller passes and allocates nothing on the caller's
 * side. Calls are synchronous (workers, if any, are joined before the call returns).
 */
export interface Backend {
  readonly name: string;
  /** Whether this backend runs `kernel` (for `format`, when given) natively; otherwise callers fall back to the reference. */
  supports(kernel: KernelName, format?: QuantFormat): boolean;
  /** See {@link GemmArgs}. M = 1 is the matvec path. */
  sgemm(args: GemmArgs): void;
  /**
   * `out[N×K] = W` (row-major float weights).
   * ```
   * for n, k: out[n*K + k] = scales[n,g(k)] * (q[n,k] - zeros[n,g(k)])
   * ```
   */
  dequantize(q: QuantizedLinear, out: Float32Array): void;
  /**
   * Forward: `y[rows×N] = x[rows×K] · Wᵀ` without materialising W.
   * ```
   * for r, n: y[r*N + n] = Σ_k x[r*K + k] * w[n, k]
   * ```
   * `rows === 1` is the decoding matvec.
   */
  qmatmul(x: Float32Array, rows: number, q: QuantizedLinear, y: Float32Array): void;
  /**
   * Backward (input gradient): `dx[rows×K] = g[rows×N] · W` without materialising W.
   * ```
   * for r, k: dx[r*K + k] = Σ_n g[r*N + n] * w[n, k]
   * ```
   */
  qmatmulT(g: Float32Array, rows: number, q: QuantizedLinear, dx: Float32Array): void;
  /**
   * Optional: one Adam / AdamW update ({@link AdamWArgs}), e.g. on a device that keeps the optimizer
   * state resident. autograd's `Adam.step` uses it when the backend set offers it.
   */
  adamw?(args: AdamWArgs): void;
  /** Releases workers and memory. The backend must not be used afterwards. */
  dispose(): void;
}

/**
 * The one inference-time linear interface every model layer goes through: float, quantized or
 * LoRA-wrapped (house style: "every linear goes through one Linear interface").
 * Training (autograd) wraps a `Linear` in a differentiable op one layer up.
 */
export interface Linear {
  /** K. */
  readonly inFeatures: number;
  /** N. */
  readonly outFeatures: number;
  /**
   * `y[rows×N] = x[rows×K] · Wᵀ`. Writes into `y`, allocates nothing per call.
   * ```
   * for r, n: y[r*N + n] = Σ_k x[r*K + k] * W[n, k]
   * ```
   */
  forward(x: Float32Array, rows: number, y: Float32Array): void;
  /** Bytes held by this layer's parameters (packed words, scales, zeros, float weights, adapters). */
  bytes(): number;
}
