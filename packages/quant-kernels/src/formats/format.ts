// The shared shape of every format record and the group math they all use (ggml type traits).
import type { Bits } from "@int21/bitpack";
import { roundUpToF16 } from "../f16";
import type { DecodeKind, QuantFormat, QuantizedLinear, ScaleDtype } from "../types";
import type { BlockTraits } from "./ggml-blocks";

/**
 * Group sizes the registry knows: 32, 64, 128 columns, or -1 for one group per output row; 256 only for
 * the ggml block formats (k-quant super-blocks, decode `"block"`).
 */
export type GroupSize = 32 | 64 | 128 | 256 | -1;

/** Bit widths the registry knows. */
export type FormatBits = 2 | 3 | 4 | 8;

/** What {@link makeFormat} takes. */
export interface FormatSpec {
  bits: FormatBits;
  groupSize: GroupSize;
  symmetric: boolean;
  scaleDtype: ScaleDtype;
}

/** Scale and zero point of one group; `w ≈ scale · (q − zero)` (affine) or `scale · codebook[q]` (lut, zero 0). */
export interface GroupParams {
  scale: number;
  zero: number;
}

/** Row length used for the nominal `bitsPerWeight` / `bytesPerGroup` of per-channel formats. */
export const NOMINAL_K = 4096;

/**
 * A full format record: the {@link QuantFormat} every kernel reads, plus its storage cost, byte
 * layout, error bound and scalar reference quantize / dequantize of one group.
 */
export interface FormatRecord extends QuantFormat {
  readonly bits: FormatBits;
  readonly groupSize: GroupSize;
  /**
   * How a code becomes a weight: `"affine"` `scale·(q − zero)`, `"lut"` `scale·codebook[q]`, `"block"`
   * ggml blocks (`formats/ggml-blocks.ts`: the packed bytes are ggml's blocks; no planar scales or zeros).
   */
  readonly decode: DecodeKind;
  /** The ggml block codec of a `"block"` format (absent otherwise). */
  readonly block?: BlockTraits;
  /** The `2^bits` values of a `"lut"` format (absent for affine formats). */
  readonly codebook?: Float32Array;
  /** Largest code, `2^bits − 1`. */
  readonly qmax: number;
  /** Bytes per stored scale or zero: 2 (f16) or 4 (f32). */
  readonly paramBytes: 2 | 4;
  /** Byte layout of one group, e.g. `q: u32[16] | scale: f16 | zero: f16 → 4.25 bpw`. */
  readonly layout: string;
  /** Bytes of one full group (per-channel: a row of {@link NOMINAL_K} columns). */
  readonly bytesPerGroup: number;
  /** Bits per weight including scales and zeros (per-channel: at K = {@link NOMINAL_K}). */
  readonly bitsPerWeight: number;
  /** Bytes of one group of `len` columns: packed codes (`len·bits/8`) plus its scale and zero. */
  groupBytes(len: number): number;
  /** Bits per weight of a row of `K` columns (the tail group counts as a whole group of parameters). */
  bitsPerWeightAt(K: number): number;
  /**
   * Round-to-nearest parameters for a group whose values span `[lo, hi]` (the range is widened to
   * include 0). `shrink` (0, 1] scales the range down (MSE clipping search). Scales are rounded UP to
   * f16 for f16 formats, so the stored range still covers the group.
   *
   * asymmetric: `scale = (hi − lo)/qmax`, `zero = round(−lo/scale)` (an integer in [0, qmax]).
   * symmetric:  `zero = 2^(bits−1)`, `scale = max(−lo/2^(bits−1), hi/(2^(bits−1)−1))`.
   * An all-zero group gets a positive scale and reconstructs exactly 0.
   */
  params(lo: number, hi: number, shrink?: number): GroupParams;
  /** Code of one value: `clamp(round(w/scale) + zero, 0, qmax)` (lut: the nearest codebook entry to `w/scale`). */
  code(w: number, scale: number, zero: number): number;
  /** Value of one code: `fround(scale · (q − zero))` (lut: `fround(scale · codebook[q])`). */
  value(q: number, scale: number, zero: number): number;
  /**
   * Largest |w − ŵ| round-to-nearest may leave in a group whose values span `[lo, hi]`: half a
   * quantization step (× (1 + 2^-10) for the f16 round-up of the scale) plus float32 slack and
   * the smallest stored scale.
   * Tests use it as the quantize → dequantize bound.
   */
  errorBound(lo: number, hi: number): number;
  /**
   * Reference quantization of one group: reads `len` values `w[off + i*stride]`, writes codes to
   * `codes[codeOff + i*stride]`, returns the parameters (min/max round-to-nearest, see {@link params}).
   */
  quantizeGroup(
    w: ArrayLike<number>,
    off: number,
    len: number,
    stride: number,
    codes: Uint8Array,
    codeOff: number,
    shrink?: number,
  ): GroupParams;
  /** Reference dequantization of one group: `out[outOff + i*stride] = value(codes[codeOff + i*stride])`. */
  dequantizeGroup(
    codes: ArrayLike<number>,
    codeOff: number,
    len: number,
    stride: number,
    p: GroupParams,
    out: Float32Array,
    outOff: number,
  ): void;
  /**
   * Row-level decode (ggml's `to_float`): writes the K weights of output row `n` of `q` to
   * `out[outOff, outOff + K)`, each exactly {@link value} of its code and group parameters
   * (act-order `gIdx` honoured). The reference kernels call this; no checks (the caller checked).
   */
  dequantizeRow(q: QuantizedLinear, n: number, out: Float32Array, outOff: number): void;
  /**
   * Row-level round-to-nearest encode (ggml's `from_float`): quantizes `K` values `w[wOff, wOff + K)` in
   * contiguous groups ({@link quantizeGroup} per group), writing codes to `codes[codeOff, codeOff + K)`
   * and each group's scale / zero to `scales[paramOff + g]` / `zeros[paramOff + g]`.
   * Block formats write the row's `K / blockSize · blockBytes` ggml bytes to `codes[codeOff, …)` instead
   * (more than K bytes for Q8_0) and leave `scales` / `zeros` alone.
   */
  quantizeRow(
    w: ArrayLike<number>,
    wOff: number,
    K: number,
    codes: Uint8Array,
    codeOff: number,
    scales: Float32Array,
    zeros: Float32Array,
    paramOff: number,
  ): void;
}

/** Group of input column k in a row: `gIdx[k]`, or `floor(k / groupSize)`, or 0 for per-channel. */
function groupIndex(gIdx: Int32Array | undefined, G: number, k: number): number {
  return gIdx !== undefined ? gIdx[k] : G === -1 ? 0 : Math.floor(k / G);
}

/**
 * Calls `each(k, code, p)` for every column k of row `n` of `q` (`p` the index of its group's
 * scale / zero). The packed-code walk every row decoder shares.
 */
export function forEachCode(
  q: QuantizedLinear,
  n: number,
  each: (k: number, code: number, p: number) => void,
): void {
  const { bits, words, wordsPerRow } = q.qweight;
  const mask = (1 << bits) - 1;
  const K = q.inFeatures;
  const nG = q.scales.length / q.outFeatures;
  const G = q.format.groupSize;
  const w0 = n * wordsPerRow;
  const p0 = n * nG;
  for (let k = 0; k < K; k++) {
    const bit = k * bits;
    const w = w0 + (bit >>> 5);
    const s = bit & 31;
    let v = words[w] >>> s;
    if (s + bits > 32) v |= words[w + 1] << (32 - s);
    each(k, v & mask, p0 + groupIndex(q.gIdx, G, k));
  }
}

/**
 * The row encoder shared by every format: contiguous groups of `groupSize` (per-channel: the whole
 * row), each through `quantizeGroup`.
 */
export function quantizeRowByGroups(
  f: Pick<FormatRecord, "groupSize" | "quantizeGroup">,
  w: ArrayLike<number>,
  wOff: number,
  K: number,
  codes: Uint8Array,
  codeOff: number,
  scales: Float32Array,
  zeros: Float32Array,
  paramOff: number,
): void {
  const G = f.groupSize === -1 ? K : f.groupSize;
  for (let g = 0, k0 = 0; k0 < K; g++, k0 += G) {
    const len = Math.min(G, K - k0);
    const p = f.quantizeGroup(w, wOff + k0, len, 1, codes, codeOff + k0);
    scales[paramOff + g] = p.scale;
    zeros[paramOff + g] = p.zero;
  }
}

const GROUP_CODES: Record<string, number> = { "32": 1, "64": 2, "128": 3, "-1": 4 };

/**
 * `params(min, max, shrink)` of the group `w[off + i·stride]`, `i < len`: the scan every format's `quantizeGroup`
 * starts from (affine and codebook formats alike).
 */
export function groupParams(
  params: (lo: number, hi: number, shrink?: number) => GroupParams,
  w: ArrayLike<number>,
  off: number,
  len: number,
  stride: number,
  shrink: number,
): GroupParams {
  let lo = Number.POSITIVE_INFINITY;
  let hi = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < len; i++) {
    const x = w[off + i * stride];
    if (x < lo) lo = x;
    if (x > hi) hi = x;
  }
  return params(lo, hi, shrink);
}

/**
 * Stable id of a format: `bits·100 + groupCode·10 + (symmetric ? 2 : 0) + (f16 ? 1 : 0)` with group
 * codes 32→1, 64→2, 128→3, per-channel→4. E.g. `int4-g128-asym-f16` = 431. Never reused.
 */
export function formatId(s: FormatSpec): number {
  return (
    s.bits * 100 +
    GROUP_CODES[String(s.groupSize)] * 10 +
    (s.symmetric ? 2 : 0) +
    (s.scaleDtype === "f16" ? 1 : 0)
  );
}

/** Stable name: `int{bits}-g{groupSize}|pc-{asym|sym}-{f16|f32}`, e.g. `int2-g64-asym-f16`, `int8-pc-sym-f32`. */
export function formatName(s: FormatSpec): string {
  const g = s.groupSize === -1 ? "pc" : `g${s.groupSize}`;
  return `int${s.bits}-${g}-${s.symmetric ? "sym" : "asym"}-${s.scaleDtype}`;
}

function bytesFor(bits: number, len: number, symmetric: boolean, paramBytes: number): number {
  return (len * bits) / 8 + paramBytes * (symmetric ? 1 : 2);
}

/** Builds the record of one format. Only the family files call this; use {@link getFormat} elsewhere. */
export function defineFormat(spec: FormatSpec): FormatRecord {
  const { bits, groupSize, symmetric, scaleDtype } = spec;
  const qmax = (1 << bits) - 1;
  const half = 1 << (bits - 1);
  const paramBytes: 2 | 4 = scaleDtype === "f16" ? 2 : 4;
  const f16 = scaleDtype === "f16";
  const len0 = groupSize === -1 ? NOMINAL_K : groupSize;
  const bytesPerGroup = bytesFor(bits, len0, symmetric, paramBytes);
  const bitsPerWeight = (bytesPerGroup * 8) / len0;
  const qWords = (len0 * bits) / 32;
  const layout =
    `q: u32[${qWords}] | scale: ${scaleDtype}` +
    (symmetric ? "" : ` | zero: ${scaleDtype}`) +
    ` → ${bitsPerWeight} bpw` +
    (groupSize === -1 ? ` (one group per row; shown for K = ${NOMINAL_K})` : "");

  // Rounded up for f16 (the stored step never shrinks); never 0, so every stored scale is positive.
  const storeScale = (x: number): number => {
    const s = f16 ? Math.max(roundUpToF16(x), 2 ** -24) : Math.max(Math.fround(x), 2 ** -126);
    if (!Number.isFinite(s)) {
      throw new Error(
        `quant-kernels: format ${formatName(spec)}: a group needs scale ${x}, beyond the ${scaleDtype} range` +
          (f16 ? " (max 65504); use an f32-scale format" : ""),
      );
    }
    return s;
  };

  const params = (lo: number, hi: number, shrink = 1): GroupParams => {
    lo = Math.min(lo, 0) * shrink;
    hi = Math.max(hi, 0) * shrink;
    if (symmetric) {
      // Codes 0..qmax map to (−half .. half−1)·scale: the negative side has one more level.
      const scale = Math.max(-lo / half, hi / (half - 1)) || 1;
      return { scale: storeScale(scale), zero: half };
    }
    if (hi - lo === 0) return { scale: 1, zero: half };
    const scale = storeScale((hi - lo) / qmax);
    const zero = Math.min(qmax, Math.max(0, Math.round(-lo / scale)));
    return { scale, zero };
  };

  const code = (w: number, scale: number, zero: number): number => {
    const q = Math.round(w / scale) + zero;
    return q < 0 ? 0 : Math.min(q, qmax);
  };

  const value = (q: number, scale: number, zero: number): number => Math.fround(scale * (q - zero));

  const errorBound = (lo: number, hi: number): number => {
    lo = Math.min(lo, 0);
    hi = Math.max(hi, 0);
    const step = symmetric ? Math.max(-lo / half, hi / (half - 1)) : (hi - lo) / qmax;
    const mag = Math.max(-lo, hi);
    // The absolute term covers the smallest stored scale (2^-24 for f16, 2^-126 for f32).
    return 0.5 * step * (f16 ? 1 + 2 ** -10 : 1 + 2 ** -20) + (f16 ? 2 ** -24 : 2 ** -126) + mag * 2 ** -22;
  };

  const record: FormatRecord = {
    id: formatId(spec),
    name: formatName(spec),
    decode: "affine",
    bits: bits as Bits & FormatBits,
    groupSize,
    symmetric,
    scaleDtype,
    qmax,
    paramBytes,
    layout,
    bytesPerGroup,
    bitsPerWeight,
    groupBytes: (len) => bytesFor(bits, len, symmetric, paramBytes),
    bitsPerWeightAt: (K) => {
      const nG = groupSize === -1 ? 1 : Math.ceil(K / groupSize);
      return bits + (nG * paramBytes * (symmetric ? 1 : 2) * 8) / K;
    },
    params,
    code,
    value,
    errorBound,
    quantizeGroup(w, off, len, stride, codes, codeOff, shrink = 1) {
      const p = groupParams(params, w, off, len, stride, shrink);
      for (let i = 0; i < len; i++) codes[codeOff + i * stride] = code(w[off + i * stride], p.scale, p.zero);
      return p;
    },
    dequantizeGroup(codes, codeOff, len, stride, p, out, outOff) {
      for (let i = 0; i < len; i++)
        out[outOff + i * stride] = value(codes[codeOff + i * stride], p.scale, p.zero);
    },
    dequantizeRow(q, n, out, outOff) {
      const { scales, zeros } = q;
      forEachCode(q, n, (k, c, p) => {
        out[outOff + k] = Math.fround(scales[p] * (c - zeros[p]));
      });
    },
    quantizeRow(w, wOff, K, codes, codeOff, scales, zeros, paramOff) {
      quantizeRowByGroups(record, w, wOff, K, codes, codeOff, scales, zeros, paramOff);
    },
  };
  return Object.freeze(record);
}

/** All 16 formats of one bit width: group sizes 32/64/128/per-channel × asym/sym × f32/f16. */
export function defineFamily(bits: FormatBits): readonly FormatRecord[] {
  const out: FormatRecord[] = [];
  for (const groupSize of [32, 64, 128, -1] as const) {
    for (const symmetric of [false, true]) {
      for (const scaleDtype of ["f16", "f32"] as const)
        out.push(defineFormat({ bits, groupSize, symmetric, scaleDtype }));
    }
  }
  return Object.freeze(out);
}
