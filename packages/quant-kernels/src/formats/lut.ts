// Codebook ("lut") formats: w = scale · codebook[q], one scale per group (NF4, IQ4_NL, user formats).
import type { Bits } from "@int21/bitpack";
import { roundUpToF16 } from "../f16";
import type { ScaleDtype } from "../types";
import {
  type FormatBits,
  type FormatRecord,
  type GroupParams,
  type GroupSize,
  NOMINAL_K,
  forEachCode,
  groupParams,
  quantizeRowByGroups,
} from "./format";

/** What {@link defineLutFormat} takes. */
export interface LutFormatSpec {
  /** Stable id, never reused (user formats: ≥ 10000, see `registerFormat`). */
  id: number;
  /** Stable name, e.g. `nf4-g64-f32`. */
  name: string;
  bits: FormatBits;
  groupSize: GroupSize;
  scaleDtype: ScaleDtype;
  /** The `2^bits` values a code stands for, strictly ascending and finite (stored as float32). */
  codebook: ArrayLike<number>;
}

function fail(name: string, msg: string): never {
  throw new Error(`quant-kernels: defineLutFormat ${name}: ${msg}`);
}

/**
 * Builds the record of a codebook format: a group stores one scale (no zero) and `w = fround(scale ·
 * codebook[q])`.
 *
 * Round-to-nearest ({@link FormatRecord.params}, `code`): let `m` be the group's value of largest
 * magnitude and `c*` the codebook entry of largest magnitude (on a tie, the one with m's sign); then
 * `scale = m / c*` (so `m` is represented exactly up to the scale's rounding; the scale may be
 * negative, as ggml's IQ4_NL allows) and each code is the codebook entry nearest to `w / scale`
 * (ties to the lower entry). f16 scales are rounded away from zero, so `|w / scale| ≤ |c*|`.
 * An all-zero group gets the smallest stored scale. Throws an Error naming the format when the
 * codebook is not `2^bits` strictly ascending finite values.
 */
export function defineLutFormat(spec: LutFormatSpec): FormatRecord {
  const { id, name, bits, groupSize, scaleDtype } = spec;
  if (typeof name !== "string" || name.length === 0)
    throw new Error("quant-kernels: defineLutFormat: name must be a non-empty string");
  if (!Number.isSafeInteger(id) || id < 0) fail(name, `id must be a non-negative integer, got ${String(id)}`);
  if (![2, 3, 4, 8].includes(bits)) fail(name, `bits must be 2, 3, 4 or 8, got ${String(bits)}`);
  if (![32, 64, 128, -1].includes(groupSize))
    fail(name, `groupSize must be 32, 64, 128 or -1, got ${String(groupSize)}`);
  if (scaleDtype !== "f16" && scaleDtype !== "f32")
    fail(name, `scaleDtype must be "f16" or "f32", got ${String(scaleDtype)}`);
  const levels = 1 << bits;
  const src = spec.codebook;
  if (src === undefined || src.length !== levels)
    fail(name, `codebook must hold 2^${bits} = ${levels} values, has ${src?.length}`);
  const codebook = Float32Array.from(src);
  for (let i = 0; i < levels; i++) {
    if (!Number.isFinite(codebook[i])) fail(name, `codebook[${i}] = ${src[i]} is not a finite float32 value`);
    if (i > 0 && !(codebook[i] > codebook[i - 1]))
      fail(
        name,
        `codebook must be strictly ascending: [${i - 1}] = ${codebook[i - 1]}, [${i}] = ${codebook[i]}`,
      );
  }
  // Midpoints between neighbours: code(x) = the number of midpoints below x.
  const mids = new Float64Array(levels - 1);
  let maxGap = 0;
  for (let i = 0; i + 1 < levels; i++) {
    mids[i] = (codebook[i] + codebook[i + 1]) / 2;
    maxGap = Math.max(maxGap, codebook[i + 1] - codebook[i]);
  }
  const cLo = codebook[0];
  const cHi = codebook[levels - 1];
  const f16 = scaleDtype === "f16";
  const paramBytes: 2 | 4 = f16 ? 2 : 4;
  const minScale = f16 ? 2 ** -24 : 2 ** -126;
  const len0 = groupSize === -1 ? NOMINAL_K : groupSize;
  const groupBytes = (len: number): number => (len * bits) / 8 + paramBytes;
  const bytesPerGroup = groupBytes(len0);
  const bitsPerWeight = (bytesPerGroup * 8) / len0;
  const layout =
    `q: u32[${(len0 * bits) / 32}] | scale: ${scaleDtype} → ${bitsPerWeight} bpw, w = scale·codebook[q]` +
    (groupSize === -1 ? ` (one group per row; shown for K = ${NOMINAL_K})` : "");

  const storeScale = (x: number): number => {
    const a = Math.abs(x);
    const s = f16 ? Math.max(roundUpToF16(a), minScale) : Math.max(Math.fround(a), minScale);
    if (!Number.isFinite(s)) {
      throw new Error(
        `quant-kernels: format ${name}: a group needs scale ${x}, beyond the ${scaleDtype} range` +
          (f16 ? " (max 65504); use an f32-scale format" : ""),
      );
    }
    return x < 0 ? -s : s;
  };

  const params = (lo: number, hi: number, shrink = 1): GroupParams => {
    const m = (Math.abs(lo) > Math.abs(hi) ? lo : hi) * shrink;
    if (!(m !== 0)) return { scale: minScale, zero: 0 };
    // The codebook end of largest magnitude; on a tie the one with m's sign.
    const c = -cLo > cHi || (-cLo === cHi && m < 0) ? cLo : cHi;
    return { scale: storeScale(m / c), zero: 0 };
  };

  const code = (w: number, scale: number): number => {
    const x = w / scale;
    let a = 0;
    let b = levels - 1;
    while (a < b) {
      const h = (a + b) >>> 1;
      if (x > mids[h]) a = h + 1;
      else b = h;
    }
    return a;
  };

  const value = (q: number, scale: number): number => Math.fround(scale * codebook[q]);

  const errorBound = (lo: number, hi: number): number => {
    const s = params(lo, hi).scale;
    const a = Math.abs(s);
    const repLo = Math.min(s * cLo, s * cHi);
    const repHi = Math.max(s * cLo, s * cHi);
    const clip = Math.max(0, hi - repHi, repLo - lo);
    const mag = Math.max(Math.abs(lo), Math.abs(hi), a * Math.max(-cLo, cHi));
    return Math.max(0.5 * maxGap * a * (1 + 2 ** -20), clip) + mag * 2 ** -22;
  };

  const record: FormatRecord = {
    id,
    name,
    decode: "lut",
    codebook,
    bits: bits as Bits & FormatBits,
    groupSize,
    symmetric: true,
    scaleDtype,
    qmax: levels - 1,
    paramBytes,
    layout,
    bytesPerGroup,
    bitsPerWeight,
    groupBytes,
    bitsPerWeightAt: (K) => {
      const nG = groupSize === -1 ? 1 : Math.ceil(K / groupSize);
      return bits + (nG * paramBytes * 8) / K;
    },
    params,
    code,
    value,
    errorBound,
    quantizeGroup(w, off, len, stride, codes, codeOff, shrink = 1) {
      const p = groupParams(params, w, off, len, stride, shrink);
      for (let i = 0; i < len; i++) codes[codeOff + i * stride] = code(w[off + i * stride], p.scale);
      return p;
    },
    dequantizeGroup(codes, codeOff, len, stride, p, out, outOff) {
      for (let i = 0; i < len; i++) out[outOff + i * stride] = value(codes[codeOff + i * stride], p.scale);
    },
    dequantizeRow(q, n, out, outOff) {
      const { scales } = q;
      forEachCode(q, n, (k, c, p) => {
        out[outOff + k] = Math.fround(scales[p] * codebook[c]);
      });
    },
    quantizeRow(w, wOff, K, codes, codeOff, scales, zeros, paramOff) {
      quantizeRowByGroups(record, w, wOff, K, codes, codeOff, scales, zeros, paramOff);
    },
  };
  return Object.freeze(record);
}
