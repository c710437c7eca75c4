// The float32-safe upload layout of a QuantizedLinear for gpu.js: codes repacked into integers < 2^24.
import type { QuantizedLinear } from "@int21/quant-kernels";

/** Payload bits per float element: every integer below 2^24 is exact in float32. */
export const FLOAT_PAYLOAD_BITS = 24;

/**
 * A {@link QuantizedLinear} laid out for kernels whose arguments arrive as float32 (every non-cpu gpu.js
 * mode: WebGL textures, WebAssembly, WebGPU). The u32 words of `qweight` would lose their low bits, so
 * the codes are repacked, `codesPerElement` of them per float, as integers below 2^24:
 *
 * ```
 * codesPerElement c = floor(24 / bits)          INT2 → 12, INT3 → 8, INT4 → 6, INT8 → 3
 * elementsPerRow  E = ceil(K / c)
 * codes[n*E + e] = Σ_j q[n, e*c + j] · 2^(bits·j)     (j < c, columns past K are 0)
 * ```
 * A kernel unpacks with exact float arithmetic only (no bit operations, which WebGL emulates with loops):
 * `code = v − floor(v / 2^bits)·2^bits; v = floor(v / 2^bits)`.
 * `groupOf[k]` is the group index of column k (`gIdx[k]`, or `floor(k / groupSize)`, or 0 per-channel).
 */
export interface FloatLayout {
  readonly bits: number;
  readonly outFeatures: number;
  readonly inFeatures: number;
  readonly nGroups: number;
  readonly codesPerElement: number;
  readonly elementsPerRow: number;
  /** `[N × E]` integers in `[0, 2^24)`. */
  readonly codes: Float32Array;
  /** `[K]` group index of each column. */
  readonly groupOf: Float32Array;
  /** `[N × nGroups]`, the record's own arrays. */
  readonly scales: Float32Array;
  readonly zeros: Float32Array;
}

/** Codes per float element for `bits`-wide codes: `floor(24 / bits)`. */
export function codesPerFloat(bits: number): number {
  if (!Number.isInteger(bits) || bits < 1 || bits > 8) {
    throw new RangeError(`gpu: float layout: bits must be an integer in [1, 8], got ${String(bits)}`);
  }
  return Math.floor(FLOAT_PAYLOAD_BITS / bits);
}

/** Group count of a record, checked against its scales. */
export function groupCountOf(q: QuantizedLinear): number {
  const G = q.format.groupSize === -1 ? 1 : Math.ceil(q.inFeatures / q.format.groupSize);
  if (q.scales.length !== q.outFeatures * G || q.zeros.length !== q.outFeatures * G) {
    throw new RangeError(
      `gpu: QuantizedLinear ${q.outFeatures}×${q.inFeatures} (${q.format.name}) needs ${q.outFeatures * G} scales and zeros, got ${q.scales.length} and ${q.zeros.length}`,
    );
  }
  return G;
}

/** `[K]` group index of each input column (`gIdx`, or `floor(k / groupSize)`, or 0 per-channel). */
export function groupIndexOf(q: QuantizedLinear): Int32Array {
  const K = q.inFeatures;
  const G = groupCountOf(q);
  if (q.gIdx) {
    if (q.gIdx.length !== K)
      throw new RangeError(`gpu: gIdx has ${q.gIdx.length} entries, expected K = ${K}`);
    for (let k = 0; k < K; k++) {
      const g = q.gIdx[k];
      if (g < 0 || g >= G) throw new RangeError(`gpu: gIdx[${k}] = ${g} is outside [0, ${G})`);
    }
    return q.gIdx;
  }
  const out = new Int32Array(K);
  if (q.format.groupSize !== -1) for (let k = 0; k < K; k++) out[k] = Math.floor(k / q.format.groupSize);
  return out;
}

/** Checks that a record's packed matrix matches its declared shape and bit width. */
export function assertPacked(q: QuantizedLinear): void {
  const m = q.qweight;
  if (m.rows !== q.outFeatures || m.cols !== q.inFeatures || m.bits !== q.format.bits) {
    throw new RangeError(
      `gpu: qweight is ${m.rows}×${m.cols} at ${m.bits} bits, but the layer is ${q.outFeatures}×${q.inFeatures} at ${q.format.bits} bits (${q.format.name})`,
    );
  }
  const wpr = Math.ceil((m.cols * m.bits) / 32);
  if (m.wordsPerRow !== wpr || m.words.length < m.rows * wpr) {
    throw new RangeError(
      `gpu: qweight holds ${m.words.length} words, a ${m.rows}×${m.cols} matrix needs ${m.rows * wpr}`,
    );
  }
}

/**
 * Builds the {@link FloatLayout} of `q` (allocates; cache it with {@link floatLayoutOf}).
 * ```
 * for n, k: codes[n*E + floor(k/c)] += q[n, k] * 2^(bits * (k mod c))
 * ```
 */
export function buildFloatLayout(q: QuantizedLinear): FloatLayout {
  assertPacked(q);
  const bits = q.format.bits;
  const N = q.outFeatures;
  const K = q.inFeatures;
  const c = codesPerFloat(bits);
  const E = Math.ceil(K / c);
  const codes = new Float32Array(N * E);
  const { words, wordsPerRow } = q.qweight;
  const mask = (1 << bits) - 1;
  for (let n = 0; n < N; n++) {
    const base = n * wordsPerRow;
    for (let e = 0; e < E; e++) {
      let v = 0;
      let scale = 1;
      for (let j = 0; j < c; j++) {
        const k = e * c + j;
        if (k >= K) break;
        const bit = k * bits;
        const s = bit & 31;
        let code = words[base + (bit >>> 5)] >>> s;
        if (s + bits > 32) code |= words[base + (bit >>> 5) + 1] << (32 - s);
        v += (code & mask) * scale;
        scale *= 1 << bits;
      }
      codes[n * E + e] = v;
    }
  }
  const groupOf = Float32Array.from(groupIndexOf(q));
  return {
    bits,
    outFeatures: N,
    inFeatures: K,
    nGroups: groupCountOf(q),
    codesPerElement: c,
    elementsPerRow: E,
    codes,
    groupOf,
    scales: q.scales,
    zeros: q.zeros,
  };
}

const cache = new WeakMap<QuantizedLinear, FloatLayout>();

/** {@link buildFloatLayout}, cached per record (records are immutable, so identity is the key). */
export function floatLayoutOf(q: QuantizedLinear): FloatLayout {
  let l = cache.get(q);
  if (!l) {
    l = buildFloatLayout(q);
    cache.set(q, l);
  }
  return l;
}

/**
 * Reads code `(n, k)` back from a layout with the same float arithmetic a kernel uses. The plain loop
 * the gpu.js kernels inline.
 */
export function floatLayoutCode(l: FloatLayout, n: number, k: number): number {
  const c = l.codesPerElement;
  const radix = 2 ** l.bits;
  let v = l.codes[n * l.elementsPerRow + Math.floor(k / c)];
  const j = k % c;
  for (let i = 0; i < j; i++) v = Math.floor(v / radix);
  return v - Math.floor(v / radix) * radix;
}
