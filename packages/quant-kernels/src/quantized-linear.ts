// The one quantized-tensor record: construction with full validation, and its storage cost.
import { type PackedMatrix, matrixWordsPerRow, packMatrix } from "@int21/bitpack";
import { isF16Exact } from "./f16";
import type { FormatRecord } from "./formats/format";
import { checkBlockStorage, isBlockFormat } from "./formats/ggml-blocks";
import { getFormat } from "./formats/registry";
import type { QuantFormat, QuantizedLinear } from "./types";

/** What {@link createQuantizedLinear} takes. */
export interface QuantizedLinearInit {
  /** A format record, or its name / id. */
  format: QuantFormat | string | number;
  /** N. */
  outFeatures: number;
  /** K. */
  inFeatures: number;
  /** N rows × K columns of `format.bits`-wide codes, packed along K. */
  qweight: PackedMatrix;
  /** `[N × nGroups]`. */
  scales: Float32Array;
  /** `[N × nGroups]`; optional for symmetric formats (filled with 2^(bits−1)). */
  zeros?: Float32Array;
  /** Act-order group of each input column, `[K]`. */
  gIdx?: Int32Array;
}

/**
 * Groups per output row: `ceil(K / groupSize)`, or 1 for per-channel formats, or 0 for the ggml block
 * formats (their scales live inside the packed blocks: no planar `scales` / `zeros`).
 *
 * Tail group: when `groupSize` does not divide K, the last group holds the `K mod groupSize` remaining
 * columns and has its own scale and zero like any other group (it costs a full group of parameters).
 */
export function groupCount(format: QuantFormat, K: number): number {
  if (format.decode === "block") return 0;
  return format.groupSize === -1 ? 1 : Math.ceil(K / format.groupSize);
}

function fail(msg: string): never {
  throw new Error(`quant-kernels: createQuantizedLinear: ${msg}`);
}

/**
 * Builds a frozen {@link QuantizedLinear} after checking everything a kernel relies on:
 * positive integer N and K; `qweight` is N×K at `format.bits` with the right word count; `scales` and
 * `zeros` hold `N·nGroups` entries; scales are finite and > 0 (codebook formats: finite and non-zero,
 * either sign, as ggml's IQ4_NL stores), zeros finite integers-or-reals in [0, 2^bits − 1]; both
 * exactly representable in f16 for f16 formats; symmetric zeros equal 2^(bits−1) (codebook formats: 0);
 * `gIdx` (if any) has K integers in [0, nGroups). Throws an Error naming the tensor and index.
 *
 * Block formats (decode `"block"`, `q4_0` … `iq4_xs`): K must be a multiple of the block size; `qweight` is
 * an 8-bit matrix of N rows × `K / blockSize · blockBytes` bytes (each row padded to a whole 32-bit word),
 * the row's ggml blocks in order; `scales` / `zeros` are absent or empty; no `gIdx`; every block's f16
 * fields finite. See `quantizedFromGgmlBlocks`.
 */
export function createQuantizedLinear(init: QuantizedLinearInit): QuantizedLinear {
  const format: FormatRecord = getFormat(init.format);
  const N = init.outFeatures;
  const K = init.inFeatures;
  if (!Number.isSafeInteger(N) || N < 1) fail(`outFeatures must be a positive integer, got ${String(N)}`);
  if (!Number.isSafeInteger(K) || K < 1) fail(`inFeatures must be a positive integer, got ${String(K)}`);
  const qw = init.qweight;
  if (qw === undefined || !(qw.words instanceof Uint32Array)) fail("qweight must be a bitpack PackedMatrix");
  if (isBlockFormat(format)) {
    checkBlockStorage(format, N, K, qw, init.scales, init.zeros, init.gIdx, fail);
    const empty = new Float32Array(0);
    return Object.freeze({ format, outFeatures: N, inFeatures: K, qweight: qw, scales: empty, zeros: empty });
  }
  if (qw.bits !== format.bits)
    fail(`qweight has ${qw.bits}-bit codes but format ${format.name} needs ${format.bits}`);
  if (qw.rows !== N || qw.cols !== K)
    fail(`qweight is ${qw.rows}×${qw.cols}, expected [outFeatures × inFeatures] = ${N}×${K}`);
  const wpr = matrixWordsPerRow(K, format.bits);
  if (qw.wordsPerRow !== wpr || qw.words.length !== N * wpr) {
    fail(
      `qweight needs ${N * wpr} words (${wpr} per row), has ${qw.words.length} (${qw.wordsPerRow} per row)`,
    );
  }
  const nG = groupCount(format, K);
  const nP = N * nG;
  const f16 = format.scaleDtype === "f16";
  const { scales } = init;
  if (!(scales instanceof Float32Array)) fail("scales must be a Float32Array");
  if (scales.length !== nP)
    fail(`scales has ${scales.length} entries, expected N×nGroups = ${N}×${nG} = ${nP}`);
  const lut = format.decode === "lut";
  for (let i = 0; i < nP; i++) {
    const s = scales[i];
    if (lut ? !Number.isFinite(s) || s === 0 : !Number.isFinite(s) || !(s > 0)) {
      fail(
        `scales[${i}] (row ${Math.floor(i / nG)}, group ${i % nG}) = ${s} is not finite and ${lut ? "non-zero" : "positive"}`,
      );
    }
    if (f16 && !isF16Exact(s))
      fail(`scales[${i}] = ${s} is not an f16 value (format ${format.name} stores f16)`);
  }
  // Codebook formats have no zero point: their zeros are all 0.
  const half = lut ? 0 : 1 << (format.bits - 1);
  let zeros = init.zeros;
  if (zeros === undefined) {
    if (!format.symmetric) fail(`zeros are required for the asymmetric format ${format.name}`);
    zeros = new Float32Array(nP).fill(half);
  }
  if (!(zeros instanceof Float32Array)) fail("zeros must be a Float32Array");
  if (zeros.length !== nP) fail(`zeros has ${zeros.length} entries, expected N×nGroups = ${N}×${nG} = ${nP}`);
  for (let i = 0; i < nP; i++) {
    const z = zeros[i];
    if (!Number.isFinite(z) || z < 0 || z > format.qmax) {
      fail(`zeros[${i}] (row ${Math.floor(i / nG)}, group ${i % nG}) = ${z} is outside [0, ${format.qmax}]`);
    }
    if (format.symmetric && z !== half) {
      fail(
        `zeros[${i}] = ${z}, but the ${lut ? "codebook" : "symmetric"} format ${format.name} has zero ${half}`,
      );
    }
    if (f16 && !isF16Exact(z))
      fail(`zeros[${i}] = ${z} is not an f16 value (format ${format.name} stores f16)`);
  }
  const { gIdx } = init;
  if (gIdx !== undefined) {
    if (!(gIdx instanceof Int32Array)) fail("gIdx must be an Int32Array");
    if (gIdx.length !== K) fail(`gIdx has ${gIdx.length} entries, expected inFeatures = ${K}`);
    for (let k = 0; k < K; k++) {
      if (gIdx[k] < 0 || gIdx[k] >= nG) fail(`gIdx[${k}] = ${gIdx[k]} is outside [0, ${nG})`);
    }
  }
  const q: QuantizedLinear = {
    format,
    outFeatures: N,
    inFeatures: K,
    qweight: qw,
    scales,
    zeros,
    ...(gIdx !== undefined ? { gIdx } : {}),
  };
  return Object.freeze(q);
}

/**
 * Packs row-major codes `[N×K]` (integers in [0, 2^bits)) with their parameters into a validated
 * {@link QuantizedLinear}. The allocating convenience quantizers use.
 */
export function packQuantizedLinear(
  format: QuantFormat | string | number,
  N: number,
  K: number,
  codes: ArrayLike<number>,
  scales: Float32Array,
  zeros: Float32Array | undefined,
  gIdx?: Int32Array,
): QuantizedLinear {
  const f = getFormat(format);
  return createQuantizedLinear({
    format: f,
    outFeatures: N,
    inFeatures: K,
    qweight: packMatrix(codes, N, K, f.bits),
    scales,
    zeros,
    gIdx,
  });
}

/**
 * Bytes that store `q`: packed words (4 bytes each) + `N·nGroups` scales + (asymmetric only)
 * `N·nGroups` zeros at 2 (f16) or 4 (f32) bytes each + `gIdx` at 4 bytes per input column when present.
 * Block formats: the words alone (the ggml blocks, plus up to 3 bytes of padding per row).
 */
export function bytes(q: QuantizedLinear): number {
  const f = getFormat(q.format);
  const nP = q.outFeatures * groupCount(f, q.inFeatures);
  return (
    q.qweight.words.length * 4 + nP * f.paramBytes * (f.symmetric ? 1 : 2) + (q.gIdx ? q.gIdx.length * 4 : 0)
  );
}

/** `8 · bytes(q) / (N·K)`: everything counted, including row padding of the packed words and `gIdx`. */
export function bitsPerWeight(q: QuantizedLinear): number {
  return (8 * bytes(q)) / (q.outFeatures * q.inFeatures);
}
