// Round-to-nearest quantization: min/max per group, with an optional MSE clipping search.
import { getFormat } from "./formats/registry";
import type { FormatRecord, GroupParams } from "./formats/format";
import { groupCount, packQuantizedLinear } from "./quantized-linear";
import { type Quantizer, checkWeight } from "./quantizer";
import { type BlockFormatRecord, blockRowBytes, isBlockFormat } from "./formats/ggml-blocks";
import { quantizedFromGgmlBlocks } from "./ggml-blocks-linear";
import type { QuantFormat, QuantizedLinear } from "./types";

/** Options of {@link rtnQuantize}. */
export interface RtnOptions {
  /**
   * Search shrink factors `1, 1 − maxShrink/grid, …, 1 − maxShrink` of each group's range and keep the
   * one with the least `Σ|w − ŵ|^norm` (GPTQ's `find_params(mse=True)`). Off by default.
   */
  mseClip?: boolean;
  /** Number of shrink steps (default 100). */
  grid?: number;
  /** Largest shrink (default 0.8: the range may shrink to 20%). */
  maxShrink?: number;
  /** Error norm of the search (default 2, the MSE). */
  norm?: number;
}

function groupError(
  f: FormatRecord,
  w: Float32Array,
  off: number,
  len: number,
  stride: number,
  p: GroupParams,
  norm: number,
): number {
  let e = 0;
  for (let i = 0; i < len; i++) {
    const x = w[off + i * stride];
    const d = Math.abs(x - f.value(f.code(x, p.scale, p.zero), p.scale, p.zero));
    e += norm === 2 ? d * d : d ** norm;
  }
  return e;
}

/**
 * Parameters for one group of `len` values `w[off + i*stride]`: min/max round-to-nearest, or with
 * `mseClip` the best shrink of the range. Shared by RTN and GPTQ (which calls it per group).
 */
export function findGroupParams(
  f: FormatRecord,
  w: Float32Array,
  off: number,
  len: number,
  stride: number,
  opts: RtnOptions = {},
): GroupParams {
  let lo = Number.POSITIVE_INFINITY;
  let hi = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < len; i++) {
    const x = w[off + i * stride];
    if (x < lo) lo = x;
    if (x > hi) hi = x;
  }
  let best = f.params(lo, hi);
  if (opts.mseClip !== true) return best;
  const grid = opts.grid ?? 100;
  const maxShrink = opts.maxShrink ?? 0.8;
  const norm = opts.norm ?? 2;
  if (!(grid >= 1) || !(maxShrink > 0 && maxShrink < 1) || !(norm > 0)) {
    throw new Error(
      `quant-kernels: rtn mseClip needs grid ≥ 1, maxShrink in (0, 1), norm > 0; got ${grid}, ${maxShrink}, ${norm}`,
    );
  }
  let bestErr = groupError(f, w, off, len, stride, best, norm);
  for (let s = 1; s <= grid; s++) {
    const p = f.params(lo, hi, 1 - (maxShrink * s) / grid);
    const e = groupError(f, w, off, len, stride, p, norm);
    if (e < bestErr) {
      bestErr = e;
      best = p;
    }
  }
  return best;
}

/**
 * Input columns of each group: `[g·G, min(K, (g+1)·G))` (per-channel: all K), or with `gIdx` the
 * columns k where `gIdx[k] === g` (act-order). A group may be empty under `gIdx`.
 */
export function groupMembers(format: QuantFormat, K: number, gIdx?: Int32Array): Int32Array[] {
  const nG = groupCount(format, K);
  const G = format.groupSize === -1 ? K : format.groupSize;
  const lists: number[][] = Array.from({ length: nG }, () => []);
  for (let k = 0; k < K; k++) {
    const g = gIdx ? gIdx[k] : Math.floor(k / G);
    if (!(g >= 0 && g < nG)) throw new Error(`quant-kernels: gIdx[${k}] = ${g} is outside [0, ${nG})`);
    lists[g].push(k);
  }
  return lists.map((l) => Int32Array.from(l));
}

/**
 * RTN into a ggml block format: each row through the record's `quantizeRow` (ggml's own quantizer, with
 * its scale search, bit-identical to llama.cpp's). `gIdx` and `mseClip` are refused (blocks are contiguous
 * and ggml's quantizer already searches its scales).
 */
function rtnQuantizeBlocks(
  weight: Float32Array,
  N: number,
  K: number,
  f: BlockFormatRecord,
  opts: RtnOptions & { gIdx?: Int32Array },
): QuantizedLinear {
  const B = f.block.blockSize;
  if (K % B !== 0) {
    throw new Error(
      `quant-kernels: rtnQuantize: K = ${K} is not a multiple of ${f.name}'s block of ${B} weights`,
    );
  }
  if (opts.gIdx !== undefined)
    throw new Error(`quant-kernels: rtnQuantize: the block format ${f.name} has no act-order gIdx`);
  if (opts.mseClip === true) {
    throw new Error(
      `quant-kernels: rtnQuantize: mseClip does not apply to the block format ${f.name} (ggml's quantizer searches its own scales)`,
    );
  }
  const rowBytes = blockRowBytes(f, K);
  const bytes = new Uint8Array(N * rowBytes);
  const none = new Float32Array(0);
  for (let n = 0; n < N; n++) f.quantizeRow(weight, n * K, K, bytes, n * rowBytes, none, none, 0);
  return quantizedFromGgmlBlocks(f, bytes, N, K);
}

/**
 * Round-to-nearest: for each row n and group g (columns `[g·G, min(K, (g+1)·G))`, per-channel: the
 * whole row; with `opts.gIdx` the columns of group g), `scale, zero = params(min, max)` and
 * `q = clamp(round(w/scale) + zero, 0, 2^bits − 1)`. Without `mseClip` every reconstructed weight is
 * within `format.errorBound(groupMin, groupMax)`. Block formats (`q4_k`, …) run ggml's own quantizer
 * row by row (bit-identical to llama.cpp's `llama-quantize` without an importance matrix).
 */
export function rtnQuantize(
  weight: Float32Array,
  N: number,
  K: number,
  format: QuantFormat | string | number,
  opts: RtnOptions & { gIdx?: Int32Array } = {},
): QuantizedLinear {
  checkWeight("rtnQuantize", weight, N, K);
  const f = getFormat(format);
  if (isBlockFormat(f)) return rtnQuantizeBlocks(weight, N, K, f, opts);
  const nG = groupCount(f, K);
  const members = groupMembers(f, K, opts.gIdx);
  const codes = new Uint8Array(N * K);
  const scales = new Float32Array(N * nG);
  const zeros = new Float32Array(N * nG);
  const buf = new Float32Array(K);
  for (let n = 0; n < N; n++) {
    for (let g = 0; g < nG; g++) {
      const cols = members[g];
      for (let i = 0; i < cols.length; i++) buf[i] = weight[n * K + cols[i]];
      const p = findGroupParams(f, buf, 0, cols.length, 1, opts);
      for (let i = 0; i < cols.length; i++) codes[n * K + cols[i]] = f.code(buf[i], p.scale, p.zero);
      scales[n * nG + g] = p.scale;
      zeros[n * nG + g] = p.zero;
    }
  }
  return packQuantizedLinear(f, N, K, codes, scales, zeros, opts.gIdx);
}

/**
 * Round-to-nearest as a {@link Quantizer}: each layer on its own, no calibration (`needsHessian` false), so it
 * also runs while loading. `rtn({ mseClip: true })` searches the clipping range per group.
 */
export function rtn(opts: RtnOptions = {}): Quantizer {
  return {
    name: opts.mseClip === true ? "rtn-mse" : "rtn",
    needsHessian: false,
    quantize: (weight, N, K, format) => rtnQuantize(weight, N, K, format, opts),
  };
}

/** {@link rtn} under its older name. */
export const createRtnQuantizer: (opts?: RtnOptions) => Quantizer = rtn;
