// The shared shape of every format record and the group math they all use (ggml type traits).
import type { Bits } from "@int21/bitpack";
import { roundUpToF16 } from "../f16";
import type { QuantFormat, ScaleDtype } from "../types";

/** Group sizes the registry knows: 32, 64, 128 columns, or -1 for one group per output row. */
export type GroupSize = 32 | 64 | 128 | -1;

/** Bit widths the registry knows. */
export type FormatBits = 2 | 3 | 4 | 8;

/** What {@link makeFormat} takes. */
export interface FormatSpec {
  bits: FormatBits;
  groupSize: GroupSize;
  symmetric: boolean;
  scaleDtype: ScaleDtype;
}

/** Scale and zero point of one group; `w ≈ scale · (q − zero)`. */
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
  /** Code of one value: `clamp(round(w/scale) + zero, 0, qmax)`. */
  code(w: number, scale: number, zero: number): number;
  /** Value of one code: `fround(scale · (q − zero))`. */
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
}

const GROUP_CODES: Record<string, number> = { "32": 1, "64": 2, "128": 3, "-1": 4 };

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
      let lo = Number.POSITIVE_INFINITY;
      let hi = Number.NEGATIVE_INFINITY;
      for (let i = 0; i < len; i++) {
        const x = w[off + i * stride];
        if (x < lo) lo = x;
        if (x > hi) hi = x;
      }
      const p = params(lo, hi, shrink);
      for (let i = 0; i < len; i++) codes[codeOff + i * stride] = code(w[off + i * stride], p.scale, p.zero);
      return p;
    },
    dequantizeGroup(codes, codeOff, len, stride, p, out, outOff) {
      for (let i = 0; i < len; i++)
        out[outOff + i * stride] = value(codes[codeOff + i * stride], p.scale, p.zero);
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
