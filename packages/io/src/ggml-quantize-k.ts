// Reference round-to-nearest quantizers for the rest of the ggml block formats (Q5_0, Q5_1, the k-quants
// Q2_K … Q6_K, IQ4_NL, IQ4_XS), written from the block layouts and the scale searches ggml's reference
// quantizers run when no importance matrix is given (what `llama-quantize` writes). Every float operation is
// rounded to float32 (Math.fround) in ggml's order, so the bytes equal llama.cpp's. They allocate nothing
// per call beyond module scratch.
//
// Each `quantizeX(src, out)` reads `src.length / blockSize` blocks of float32 values and writes the blocks to
// `out`; it throws a RangeError on a length that is not a whole number of blocks, a short output, a
// non-finite value or one of magnitude ≥ 2^64, or a block scale beyond the f16 range.

import { IQ4_NL_VALUES } from "./ggml-dequant";
import { blockMax, blockMin, checkBlockSizes, signedAbsMax } from "./ggml-quantize";
import { f16BitsToF32, f32BitsToF16 } from "./half";

const fr = Math.fround;
const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** f16 bits of float `x` (round to nearest even), as ggml's `GGML_FP32_TO_FP16`. */
function toHalf(x: number): number {
  f32[0] = x;
  return f32BitsToF16(u32[0]);
}

/** Writes f16 bits `h` little-endian at byte `o`. */
function putBits(out: Uint8Array, o: number, h: number): void {
  out[o] = h & 255;
  out[o + 1] = h >> 8;
}

/**
 * Stores `x` as an f16 at byte `o` and returns the stored value as a float (what ggml reads back with
 * `GGML_FP16_TO_FP32`). Throws when `x` overflows f16 or is NaN (ggml would store it).
 */
function putHalf(name: string, what: string, out: Uint8Array, o: number, x: number, block: number): number {
  if (!(Math.abs(x) <= 65504)) {
    // NaN too: the float32 sums of x² overflow for values beyond ~1e19.
    throw new RangeError(
      `io: quantize ${name}: block ${block}: ${what} ${x} overflows f16 (values too large for ${name})`,
    );
  }
  const h = toHalf(x);
  putBits(out, o, h);
  return f16BitsToF32(h);
}

/** ggml's `nearest_int`: round half to even through the float32 addition of 1.5·2^23 (|x| < 2^22). */
function nearestInt(x: number): number {
  return fr(x + 12582912) - 12582912;
}

/** float32 `a·b`, `a/b`, `a+b`, `a−b`. */
const mul = (a: number, b: number): number => fr(a * b);
const div = (a: number, b: number): number => fr(a / b);
const add = (a: number, b: number): number => fr(a + b);
const sub = (a: number, b: number): number => fr(a - b);

const clamp = (v: number, lo: number, hi: number): number => (v < lo ? lo : Math.min(v, hi));

/** ggml's `GROUP_MAX_EPS` (1e-15f): a group whose largest magnitude is below it quantizes to zero. */
const GROUP_MAX_EPS = fr(1e-15);

/** {@link checkBlockSizes}, then every value finite and of magnitude < 2^64; returns the block count. */
function checkSizes(name: string, src: Float32Array, out: Uint8Array, block: number, bytes: number): number {
  if (!(src instanceof Float32Array))
    throw new TypeError(`io: quantize ${name}: source must be a Float32Array`);
  const blocks = checkBlockSizes(name, src, out, block, bytes);
  for (let i = 0; i < src.length; i++) {
    if (!Number.isFinite(src[i]))
      throw new RangeError(`io: quantize ${name}: value ${src[i]} at index ${i} is not finite`);
    if (Math.abs(src[i]) >= 2 ** 64) {
      throw new RangeError(
        `io: quantize ${name}: value ${src[i]} at index ${i} is too large (the float32 scale search squares values: |x| must be < 2^64)`,
      );
    }
  }
  return blocks;
}

/**
 * Checks the sizes and values ({@link checkSizes}), then quantizes every block: `quantizeBlock(src, out, x,
 * o, b)` writes block `b` of `block` values at `src[x]` to the `bytes` bytes at `out[o]`. Returns `out`.
 */
function quantizeBlocks(
  name: string,
  src: Float32Array,
  out: Uint8Array,
  block: number,
  bytes: number,
  quantizeBlock: (src: Float32Array, out: Uint8Array, x: number, o: number, b: number) => void,
): Uint8Array {
  const blocks = checkSizes(name, src, out, block, bytes);
  for (let b = 0; b < blocks; b++) quantizeBlock(src, out, b * block, b * bytes, b);
  return out;
}

/**
 * Packs 32 five-bit codes `L[0, 32)` as Q5_0 / Q5_1 do: bit 4 of weight j in bit j of the u32 `qh` at byte
 * `o`, the low nibbles in the 16 bytes after it (weight j low, j + 16 high).
 */
function pack5(L: Uint8Array, out: Uint8Array, o: number): void {
  let qh = 0;
  for (let j = 0; j < 16; j++) {
    out[o + 4 + j] = (L[j] & 15) | ((L[j + 16] & 15) << 4);
    qh |= ((L[j] >> 4) & 1) << j;
    qh |= ((L[j + 16] >> 4) & 1) << (j + 16);
  }
  out[o] = qh & 255;
  out[o + 1] = (qh >>> 8) & 255;
  out[o + 2] = (qh >>> 16) & 255;
  out[o + 3] = (qh >>> 24) & 255;
}

/**
 * Q5_0 (block of 32 → `d: f16 | qh: u32 | qs: u8[16]`): `max` = the weight of largest magnitude (sign kept),
 * `d = max / −16`, `q = min(31, trunc(x / d + 16.5))`, low nibbles in `qs` (weight j low, j + 16 high), bit 4
 * of weight j in bit j of `qh`.
 */
export function quantizeQ5_0(src: Float32Array, out: Uint8Array): Uint8Array {
  return quantizeBlocks("Q5_0", src, out, 32, 22, blockQ5_0);
}

/** Block `b` of {@link quantizeQ5_0}: the 32 values at `src[x]` into the 22 bytes at `out[o]`. */
function blockQ5_0(src: Float32Array, out: Uint8Array, x: number, o: number, b: number): void {
  const d = div(signedAbsMax(src, x, 32), -16);
  putHalf("Q5_0", "scale", out, o, d, b);
  const id = d !== 0 ? div(1, d) : 0;
  for (let j = 0; j < 32; j++) codes[j] = Math.min(31, Math.trunc(add(mul(src[x + j], id), 16.5)));
  pack5(codes, out, o + 2);
}

/**
 * Q5_1 (block of 32 → `d: f16 | m: f16 | qh: u32 | qs: u8[16]`): `m = min x`, `d = (max x − m) / 31`,
 * `q = trunc((x − m) / d + 0.5)` (5 bits kept, as ggml), packed as Q5_0; `x ≈ d·q + m`.
 */
export function quantizeQ5_1(src: Float32Array, out: Uint8Array): Uint8Array {
  return quantizeBlocks("Q5_1", src, out, 32, 24, blockQ5_1);
}

/** Block `b` of {@link quantizeQ5_1}: the 32 values at `src[x]` into the 24 bytes at `out[o]`. */
function blockQ5_1(src: Float32Array, out: Uint8Array, x: number, o: number, b: number): void {
  const min = blockMin(src, x, 32);
  const d = div(sub(blockMax(src, x, 32), min), 31);
  putHalf("Q5_1", "scale", out, o, d, b);
  putHalf("Q5_1", "minimum", out, o + 2, min, b);
  const id = d !== 0 ? div(1, d) : 0;
  for (let j = 0; j < 32; j++) codes[j] = Math.trunc(add(mul(sub(src[x + j], min), id), 0.5));
  pack5(codes, out, o + 4);
}

// ---- k-quant scale searches ----

/** Result slot of {@link searchScaleMin}: the sub-block's `min` as ggml returns it (`−min`, ≥ 0). */
const minOut = new Float32Array(1);

/**
 * The float32 weighted error `Σ w[i]·e(scale·L[lo + i] + min − x[xo + i])` of a fit, `e` the absolute value
 * (`useMad`) or the square.
 */
function fitError(
  n: number,
  x: Float32Array,
  xo: number,
  w: Float32Array,
  L: Uint8Array,
  lo: number,
  scale: number,
  min: number,
  useMad: boolean,
): number {
  let err = 0;
  for (let i = 0; i < n; i++) {
    let diff = sub(add(mul(scale, L[lo + i]), min), x[xo + i]);
    diff = useMad ? Math.abs(diff) : mul(diff, diff);
    err = add(err, mul(w[i], diff));
  }
  return err;
}

/**
 * ggml's `make_qkx2_quants`: codes `L[lo + i]` in [0, nmax] for `x[xo + i]`, `i < n`, minimising the weighted
 * error of `x ≈ scale·L + min` (min ≤ 0) over the `nstep + 1` candidate inverse scales
 * `(rmin + rdelta·is + nmax) / (max − min)` (min: the best candidate's so far), each refitted by weighted least squares. Returns the scale;
 * `minOut[0] = −min`.
 */
function searchScaleMin(
  n: number,
  nmax: number,
  x: Float32Array,
  xo: number,
  w: Float32Array,
  L: Uint8Array,
  lo: number,
  aux: Uint8Array,
  rmin: number,
  rdelta: number,
  nstep: number,
  useMad: boolean,
): number {
  let min = x[xo];
  let max = x[xo];
  let sumW = w[0];
  let sumX = mul(sumW, x[xo]);
  for (let i = 1; i < n; i++) {
    const v = x[xo + i];
    if (v < min) min = v;
    if (v > max) max = v;
    sumW = add(sumW, w[i]);
    sumX = add(sumX, mul(w[i], v));
  }
  if (min > 0) min = 0;
  if (max === min) {
    for (let i = 0; i < n; i++) L[lo + i] = 0;
    minOut[0] = -min;
    return 0;
  }
  let iscale = div(nmax, sub(max, min));
  let scale = div(1, iscale);
  for (let i = 0; i < n; i++) L[lo + i] = clamp(nearestInt(mul(iscale, sub(x[xo + i], min))), 0, nmax);
  let best = fitError(n, x, xo, w, L, lo, scale, min, useMad);
  if (nstep < 1) {
    minOut[0] = -min;
    return scale;
  }
  for (let is = 0; is <= nstep; is++) {
    // `min` moves to the best candidate's, so the next candidates are measured from it (as ggml does).
    iscale = div(add(add(rmin, mul(rdelta, is)), nmax), sub(max, min));
    let sumL = 0;
    let sumL2 = 0;
    let sumXL = 0;
    for (let i = 0; i < n; i++) {
      const v = x[xo + i];
      const l = clamp(nearestInt(mul(iscale, sub(v, min))), 0, nmax);
      aux[i] = l;
      const wl = mul(w[i], l);
      sumL = add(sumL, wl);
      sumL2 = add(sumL2, mul(wl, l));
      sumXL = add(sumXL, mul(wl, v));
    }
    const D = sub(mul(sumW, sumL2), mul(sumL, sumL));
    if (D > 0) {
      let thisScale = div(sub(mul(sumW, sumXL), mul(sumX, sumL)), D);
      let thisMin = div(sub(mul(sumL2, sumX), mul(sumL, sumXL)), D);
      if (thisMin > 0) {
        thisMin = 0;
        thisScale = div(sumXL, sumL2);
      }
      const mad = fitError(n, x, xo, w, aux, 0, thisScale, thisMin, useMad);
      if (mad < best) {
        for (let i = 0; i < n; i++) L[lo + i] = aux[i];
        best = mad;
        scale = thisScale;
        min = thisMin;
      }
    }
  }
  minOut[0] = -min;
  return scale;
}

/** Result slots of {@link signedSums}: `Σw·x·l`, `Σw·l²`. */
const sums = new Float32Array(2);

/**
 * The float32 sums `Σw·x·l` and `Σw·l²` (weights `x²`) of the signed codes `l = round(iscale·x)` in
 * [−nmax, nmax) of `x[xo, xo + n)`, into {@link sums}; writes `L[lo + i] = l + offset` when `L` is given.
 */
function signedSums(
  n: number,
  nmax: number,
  x: Float32Array,
  xo: number,
  iscale: number,
  L: Uint8Array | Int8Array | null,
  lo: number,
  offset: number,
): void {
  let sumLX = 0;
  let sumL2 = 0;
  for (let i = 0; i < n; i++) {
    const v = x[xo + i];
    const l = clamp(nearestInt(mul(iscale, v)), -nmax, nmax - 1);
    if (L !== null) L[lo + i] = l + offset;
    const w = mul(v, v);
    sumLX = add(sumLX, mul(mul(w, v), l));
    sumL2 = add(sumL2, mul(mul(w, l), l));
  }
  sums[0] = sumLX;
  sums[1] = sumL2;
}

/**
 * ggml's `make_qx_quants` with `rmse_type` 1 (weights `x²`): signed codes `L[lo + i] + nmax` in
 * [0, 2·nmax) for `x ≈ scale·l`, the best of 19 inverse scales `−(nmax + 0.1·is) / max` by weighted least
 * squares. Returns the scale (0 for an all-zero group).
 */
function searchScaleSigned(
  n: number,
  nmax: number,
  x: Float32Array,
  xo: number,
  L: Uint8Array,
  lo: number,
): number {
  const max = signedAbsMax(x, xo, n);
  if (Math.abs(max) < GROUP_MAX_EPS) {
    for (let i = 0; i < n; i++) L[lo + i] = 0;
    return 0;
  }
  let iscale = div(-nmax, max);
  signedSums(n, nmax, x, xo, iscale, L, lo, nmax);
  let sumLX = sums[0];
  let sumL2 = sums[1];
  let scale = sumL2 !== 0 ? div(sumLX, sumL2) : 0;
  let best = mul(scale, sumLX);
  for (let is = -9; is <= 9; is++) {
    if (is === 0) continue;
    iscale = div(-add(nmax, mul(fr(0.1), is)), max);
    signedSums(n, nmax, x, xo, iscale, null, 0, 0);
    sumLX = sums[0];
    sumL2 = sums[1];
    if (sumL2 > 0 && mul(sumLX, sumLX) > mul(best, sumL2)) {
      for (let i = 0; i < n; i++)
        L[lo + i] = nmax + clamp(nearestInt(mul(iscale, x[xo + i])), -nmax, nmax - 1);
      scale = div(sumLX, sumL2);
      best = mul(scale, sumLX);
    }
  }
  return scale;
}

/** Signed codes of {@link searchScaleQ3}, before the `+ nmax` offset. */
const q3Codes = new Int8Array(16);

/**
 * ggml's `make_q3_quants` with `do_rmse`: signed codes in [−nmax, nmax) for `x ≈ scale·l` starting from
 * `−nmax / max`, then up to 5 passes of single-code moves that raise `(Σw·x·l)² / Σw·l²` (weights `x²`).
 * Writes `L[lo + i] = l + nmax`; returns the scale (0 for an all-zero group).
 */
function searchScaleQ3(
  n: number,
  nmax: number,
  x: Float32Array,
  xo: number,
  L: Uint8Array,
  lo: number,
): number {
  const max = signedAbsMax(x, xo, n);
  if (Math.abs(max) < GROUP_MAX_EPS) {
    for (let i = 0; i < n; i++) L[lo + i] = 0;
    return 0;
  }
  const Ls = q3Codes;
  signedSums(n, nmax, x, xo, div(-nmax, max), Ls, 0, 0);
  let sumLX = sums[0];
  let sumL2 = sums[1];
  for (let itry = 0; itry < 5; itry++) {
    let changed = 0;
    for (let i = 0; i < n; i++) {
      const v = x[xo + i];
      const w = mul(v, v);
      let slx = sub(sumLX, mul(mul(w, v), Ls[i]));
      if (slx > 0) {
        let sl2 = sub(sumL2, mul(mul(w, Ls[i]), Ls[i]));
        const nl = clamp(nearestInt(div(mul(v, sl2), slx)), -nmax, nmax - 1);
        if (nl !== Ls[i]) {
          slx = add(slx, mul(mul(w, v), nl));
          sl2 = add(sl2, mul(mul(w, nl), nl));
          if (sl2 > 0 && mul(mul(slx, slx), sumL2) > mul(mul(sumLX, sumLX), sl2)) {
            Ls[i] = nl;
            sumLX = slx;
            sumL2 = sl2;
            changed++;
          }
        }
      }
    }
    if (changed === 0) break;
  }
  for (let i = 0; i < n; i++) L[lo + i] = Ls[i] + nmax;
  return div(sumLX, sumL2);
}

// Per-call scratch (module level: the quantizers allocate nothing).
const codes = new Uint8Array(256);
const aux = new Uint8Array(32);
const weights = new Float32Array(32);
const subScales = new Float32Array(16);
const subMins = new Float32Array(16);

/**
 * Re-rounds the codes of one sub-block against its stored scale `dj` and min `dm` (ggml's second pass):
 * `codes[lo + i] = clamp(round((x[xo + i] + dm) / dj), qmin, qmax) − qmin`; leaves them as they are when
 * `dj` is 0.
 */
function reround(
  x: Float32Array,
  xo: number,
  n: number,
  dj: number,
  dm: number,
  qmin: number,
  qmax: number,
  lo: number,
): void {
  if (dj === 0) return;
  for (let i = 0; i < n; i++)
    codes[lo + i] = clamp(nearestInt(div(add(x[xo + i], dm), dj)), qmin, qmax) - qmin;
}

/** Packs 2-bit codes `L[0, 256)` ggml's way: byte `32h + l` holds weights `128h + l + 32s` at bits `2s`. */
function pack2(L: Uint8Array, out: Uint8Array, o: number): void {
  for (let j = 0; j < 256; j += 128) {
    for (let l = 0; l < 32; l++)
      out[o + j / 4 + l] = L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6);
  }
}

/**
 * Q2_K (256 weights → `scales: u8[16] | qs: u8[64] | d: f16 | dmin: f16`, 84 bytes): per sub-block of 16,
 * scale and min by {@link searchScaleMin} (weights |x|, nmax 3, 16 candidates around 3 − 0.5 … 3 + 1,
 * least absolute error); the 16 scales and 16 mins are quantized to 4 bits against `d = maxScale / 15`,
 * `dmin = maxMin / 15`; codes are then re-rounded against the stored scales.
 */
export function quantizeQ2_K(src: Float32Array, out: Uint8Array): Uint8Array {
  return quantizeBlocks("Q2_K", src, out, 256, 84, blockQ2_K);
}

/** Block `b` of {@link quantizeQ2_K}: the 256 values at `src[x]` into the 84 bytes at `out[o]`. */
function blockQ2_K(src: Float32Array, out: Uint8Array, x: number, o: number, b: number): void {
  const L = codes;
  let maxScale = 0;
  let maxMin = 0;
  for (let j = 0; j < 16; j++) {
    for (let l = 0; l < 16; l++) weights[l] = Math.abs(src[x + 16 * j + l]);
    subScales[j] = searchScaleMin(16, 3, src, x + 16 * j, weights, L, 16 * j, aux, -0.5, fr(0.1), 15, true);
    subMins[j] = minOut[0];
    if (subScales[j] > maxScale) maxScale = subScales[j];
    if (subMins[j] > maxMin) maxMin = subMins[j];
  }
  let d = 0;
  let dmin = 0;
  if (maxScale > 0) {
    const iscale = div(15, maxScale);
    for (let j = 0; j < 16; j++) out[o + j] = nearestInt(mul(iscale, subScales[j])) & 255;
    d = putHalf("Q2_K", "scale", out, o + 80, div(maxScale, 15), b);
  } else {
    for (let j = 0; j < 16; j++) out[o + j] = 0;
    putBits(out, o + 80, 0);
  }
  if (maxMin > 0) {
    const iscale = div(15, maxMin);
    for (let j = 0; j < 16; j++) out[o + j] |= (nearestInt(mul(iscale, subMins[j])) << 4) & 255;
    dmin = putHalf("Q2_K", "minimum", out, o + 82, div(maxMin, 15), b);
  } else {
    putBits(out, o + 82, 0);
  }
  for (let j = 0; j < 16; j++)
    reround(src, x + 16 * j, 16, mul(d, out[o + j] & 15), mul(dmin, out[o + j] >> 4), 0, 3, 16 * j);
  pack2(L, out, o + 16);
}

/**
 * Q3_K (256 weights → `hmask: u8[32] | qs: u8[64] | scales: u8[12] | d: f16`, 110 bytes): per sub-block of
 * 16, a signed scale by {@link searchScaleQ3} (codes −4 … 3); the 16 scales are quantized to 6 bits
 * against `d = −maxScale / 32` (`maxScale` the one of largest magnitude, sign kept); codes re-rounded
 * against the stored scales; bit 2 of each code goes to `hmask`.
 */
export function quantizeQ3_K(src: Float32Array, out: Uint8Array): Uint8Array {
  return quantizeBlocks("Q3_K", src, out, 256, 110, blockQ3_K);
}

/** Block `b` of {@link quantizeQ3_K}: the 256 values at `src[x]` into the 110 bytes at `out[o]`. */
function blockQ3_K(src: Float32Array, out: Uint8Array, x: number, o: number, b: number): void {
  const L = codes;
  for (let j = 0; j < 16; j++) subScales[j] = searchScaleQ3(16, 4, src, x + 16 * j, L, 16 * j);
  const maxScale = signedAbsMax(subScales, 0, 16);
  const sc = o + 96;
  out.fill(0, sc, sc + 12);
  let d = 0;
  if (maxScale !== 0) {
    const iscale = div(-32, maxScale);
    for (let j = 0; j < 16; j++) {
      const l = clamp((nearestInt(mul(iscale, subScales[j])) << 24) >> 24, -32, 31) + 32;
      if (j < 8) out[sc + j] = l & 15;
      else out[sc + j - 8] |= (l & 15) << 4;
      out[sc + 8 + (j % 4)] |= (l >> 4) << (2 * (j >> 2));
    }
    d = putHalf("Q3_K", "scale", out, o + 108, div(1, iscale), b);
  } else {
    putBits(out, o + 108, 0);
  }
  for (let j = 0; j < 16; j++) {
    const low = j < 8 ? out[sc + j] & 15 : out[sc + j - 8] >> 4;
    const s = (low | (((out[sc + 8 + (j % 4)] >> (2 * (j >> 2))) & 3) << 4)) - 32;
    reround(src, x + 16 * j, 16, mul(d, s), 0, -4, 3, 16 * j);
  }
  out.fill(0, o, o + 32);
  for (let j = 0, m = 0, hm = 1; j < 256; j++) {
    if (L[j] > 3) {
      out[o + m] |= hm;
      L[j] -= 4;
    }
    if (++m === 32) {
      m = 0;
      hm <<= 1;
    }
  }
  pack2(L, out, o + 32);
}

/**
 * The shared half of Q4_K / Q5_K: per sub-block of 32, scale and min by {@link searchScaleMin} (weights
 * `rms(x) + |x|`), both quantized to 6 bits against `d = maxScale / 63`, `dmin = maxMin / 63` and packed in
 * 12 bytes at `o + 4` (`d` at `o`, `dmin` at `o + 2`); codes re-rounded against the stored values into
 * `codes[0, 256)`.
 */
function quantizeK4Scales(
  name: string,
  src: Float32Array,
  x: number,
  out: Uint8Array,
  o: number,
  nmax: number,
  rmin: number,
  nstep: number,
  b: number,
): void {
  const L = codes;
  let maxScale = 0;
  let maxMin = 0;
  for (let j = 0; j < 8; j++) {
    let sumX2 = 0;
    for (let l = 0; l < 32; l++) sumX2 = add(sumX2, mul(src[x + 32 * j + l], src[x + 32 * j + l]));
    const avX = fr(Math.sqrt(div(sumX2, 32)));
    for (let l = 0; l < 32; l++) weights[l] = add(avX, Math.abs(src[x + 32 * j + l]));
    subScales[j] = searchScaleMin(
      32,
      nmax,
      src,
      x + 32 * j,
      weights,
      L,
      32 * j,
      aux,
      rmin,
      fr(0.1),
      nstep,
      false,
    );
    subMins[j] = minOut[0];
    if (subScales[j] > maxScale) maxScale = subScales[j];
    if (subMins[j] > maxMin) maxMin = subMins[j];
  }
  const invScale = maxScale > 0 ? div(63, maxScale) : 0;
  const invMin = maxMin > 0 ? div(63, maxMin) : 0;
  const sc = o + 4;
  for (let j = 0; j < 8; j++) {
    const ls = Math.min(63, nearestInt(mul(invScale, subScales[j])) & 255);
    const lm = Math.min(63, nearestInt(mul(invMin, subMins[j])) & 255);
    if (j < 4) {
      out[sc + j] = ls;
      out[sc + j + 4] = lm;
    } else {
      out[sc + j + 4] = (ls & 15) | ((lm & 15) << 4);
      out[sc + j - 4] |= (ls >> 4) << 6;
      out[sc + j] |= (lm >> 4) << 6;
    }
  }
  const d = putHalf(name, "scale", out, o, div(maxScale, 63), b);
  const dmin = putHalf(name, "minimum", out, o + 2, div(maxMin, 63), b);
  for (let j = 0; j < 8; j++) {
    const s = j < 4 ? out[sc + j] & 63 : (out[sc + j + 4] & 15) | ((out[sc + j - 4] >> 6) << 4);
    const m = j < 4 ? out[sc + j + 4] & 63 : (out[sc + j + 4] >> 4) | ((out[sc + j] >> 6) << 4);
    reround(src, x + 32 * j, 32, mul(d, s), mul(dmin, m), 0, nmax, 32 * j);
  }
}

/**
 * Q4_K (256 weights → `d: f16 | dmin: f16 | scales: u8[12] | qs: u8[128]`, 144 bytes): 8 sub-blocks of 32
 * with 6-bit scales and mins (search over 21 candidates around 15 − 1 … 15 + 1, weighted squared error),
 * 4-bit codes; byte `32c + l` of `qs` holds weight `64c + l` (low nibble) and `64c + 32 + l` (high).
 */
export function quantizeQ4_K(src: Float32Array, out: Uint8Array): Uint8Array {
  return quantizeBlocks("Q4_K", src, out, 256, 144, blockQ4_K);
}

/** Block `b` of {@link quantizeQ4_K}: the 256 values at `src[x]` into the 144 bytes at `out[o]`. */
function blockQ4_K(src: Float32Array, out: Uint8Array, x: number, o: number, b: number): void {
  quantizeK4Scales("Q4_K", src, x, out, o, 15, -1, 20, b);
  for (let j = 0; j < 256; j += 64)
    for (let l = 0; l < 32; l++) out[o + 16 + j / 2 + l] = codes[j + l] | (codes[j + l + 32] << 4);
}

/**
 * Q5_K (256 weights → `d: f16 | dmin: f16 | scales: u8[12] | qh: u8[32] | qs: u8[128]`, 176 bytes): as Q4_K
 * with 5-bit codes (search over 16 candidates around 31 − 0.5 … 31 + 1); bit 4 of weight `64c + 32u + l`
 * is bit `2c + u` of `qh[l]`.
 */
export function quantizeQ5_K(src: Float32Array, out: Uint8Array): Uint8Array {
  return quantizeBlocks("Q5_K", src, out, 256, 176, blockQ5_K);
}

/** Block `b` of {@link quantizeQ5_K}: the 256 values at `src[x]` into the 176 bytes at `out[o]`. */
function blockQ5_K(src: Float32Array, out: Uint8Array, x: number, o: number, b: number): void {
  quantizeK4Scales("Q5_K", src, x, out, o, 31, -0.5, 15, b);
  out.fill(0, o + 16, o + 48);
  for (let n = 0, m1 = 1, m2 = 2; n < 256; n += 64, m1 <<= 2, m2 <<= 2) {
    for (let j = 0; j < 32; j++) {
      let l1 = codes[n + j];
      if (l1 > 15) {
        l1 -= 16;
        out[o + 16 + j] |= m1;
      }
      let l2 = codes[n + j + 32];
      if (l2 > 15) {
        l2 -= 16;
        out[o + 16 + j] |= m2;
      }
      out[o + 48 + n / 2 + j] = l1 | (l2 << 4);
    }
  }
}

/**
 * Q6_K (256 weights → `ql: u8[128] | qh: u8[64] | scales: i8[16] | d: f16`, 210 bytes): per sub-block of 16,
 * a signed scale by {@link searchScaleSigned} (codes −32 … 31); the scales are quantized to int8 against
 * `d = −maxScale / 128`; codes re-rounded against the stored scales. An all-zero super-block is all zero bytes.
 */
export function quantizeQ6_K(src: Float32Array, out: Uint8Array): Uint8Array {
  return quantizeBlocks("Q6_K", src, out, 256, 210, blockQ6_K);
}

/** Block `b` of {@link quantizeQ6_K}: the 256 values at `src[x]` into the 210 bytes at `out[o]`. */
function blockQ6_K(src: Float32Array, out: Uint8Array, x: number, o: number, b: number): void {
  const L = codes;
  for (let j = 0; j < 16; j++) subScales[j] = searchScaleSigned(16, 32, src, x + 16 * j, L, 16 * j);
  const maxScale = signedAbsMax(subScales, 0, 16);
  if (Math.abs(maxScale) < GROUP_MAX_EPS) {
    out.fill(0, o, o + 210);
    return;
  }
  const iscale = div(-128, maxScale);
  const d = putHalf("Q6_K", "scale", out, o + 208, div(1, iscale), b);
  for (let j = 0; j < 16; j++) out[o + 192 + j] = Math.min(127, nearestInt(mul(iscale, subScales[j]))) & 255;
  for (let j = 0; j < 16; j++)
    reround(src, x + 16 * j, 16, mul(d, (out[o + 192 + j] << 24) >> 24), 0, -32, 31, 16 * j);
  for (let j = 0; j < 256; j += 128) {
    const ql = o + j / 2;
    const qh = o + 128 + j / 4;
    for (let l = 0; l < 32; l++) {
      const a = L[j + l];
      const c = L[j + l + 32];
      const e = L[j + l + 64];
      const g = L[j + l + 96];
      out[ql + l] = (a & 15) | ((e & 15) << 4);
      out[ql + l + 32] = (c & 15) | ((g & 15) << 4);
      out[qh + l] = (a >> 4) | ((c >> 4) << 2) | ((e >> 4) << 4) | ((g >> 4) << 6);
    }
  }
}

// ---- IQ4_NL / IQ4_XS ----

/** ggml's `best_index_int8` over `kvalues_iq4nl`: the nearest level to `x` (ties to the upper one). */
function nearestLevel(x: number): number {
  const v = IQ4_NL_VALUES;
  if (x <= v[0]) return 0;
  if (x >= v[15]) return 15;
  let lo = 0;
  let hi = 15;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (x < v[mid]) hi = mid;
    else lo = mid;
  }
  return sub(x, v[hi - 1]) < sub(v[hi], x) ? hi - 1 : hi;
}

/** How many scale candidates on each side of the first guess ggml tries (`ntry`, as `llama-quantize`). */
const IQ4_TRIES = 7;

/**
 * The float32 sums `Σw·q·x` and `Σw·q²` (weights {@link weights}) of the levels `q` nearest to `id·x` over
 * `x[xo, xo + 32)`, into {@link sums}; writes the level indices to `L[lo + j]` when `L` is given.
 */
function iq4Sums(src: Float32Array, xo: number, id: number, L: Uint8Array | null, lo: number): void {
  const v = IQ4_NL_VALUES;
  let sumQX = 0;
  let sumQ2 = 0;
  for (let j = 0; j < 32; j++) {
    const l = nearestLevel(mul(id, src[xo + j]));
    if (L !== null) L[lo + j] = l;
    const wq = mul(weights[j], v[l]);
    sumQX = add(sumQX, mul(wq, src[xo + j]));
    sumQ2 = add(sumQ2, mul(wq, v[l]));
  }
  sums[0] = sumQX;
  sums[1] = sumQ2;
}

/**
 * The scale of one block of 32 at `x[xo]` (ggml's `quantize_row_iq4_nl_impl` search with `ntry` 7, weights
 * `x²`): codes `L[lo + j]` for the first guess `d = max / 127`, then the weighted least-squares scale of the
 * best of 15 inverse scales `(itry − 127) / max`. Returns 0 for an all-zero block (codes untouched).
 */
function iq4BlockScale(src: Float32Array, xo: number, L: Uint8Array, lo: number): number {
  const v = IQ4_NL_VALUES;
  const max = signedAbsMax(src, xo, 32);
  if (Math.abs(max) < GROUP_MAX_EPS) return 0;
  for (let j = 0; j < 32; j++) weights[j] = mul(src[xo + j], src[xo + j]);
  iq4Sums(src, xo, div(1, div(-max, v[0])), L, lo);
  let sumQX = sums[0];
  let sumQ2 = sums[1];
  let d = div(sumQX, sumQ2);
  let best = mul(d, sumQX);
  for (let itry = -IQ4_TRIES; itry <= IQ4_TRIES; itry++) {
    iq4Sums(src, xo, div(itry + v[0], max), null, 0);
    sumQX = sums[0];
    sumQ2 = sums[1];
    if (sumQ2 > 0 && mul(sumQX, sumQX) > mul(best, sumQ2)) {
      d = div(sumQX, sumQ2);
      best = mul(d, sumQX);
    }
  }
  return d;
}

/** Packs 32 codes `L[lo, lo + 32)` into 16 bytes: weight j in the low nibble, j + 16 in the high one. */
function pack4(L: Uint8Array, lo: number, out: Uint8Array, o: number): void {
  for (let j = 0; j < 16; j++) out[o + j] = L[lo + j] | (L[lo + 16 + j] << 4);
}

/**
 * IQ4_NL (block of 32 → `d: f16 | qs: u8[16]`, 18 bytes): the scale search of {@link iq4BlockScale} (as
 * `llama-quantize`, ntry 7; ggml's `quantize_row_iq4_nl_ref` runs the search with ntry −1), then each code
 * is the level nearest to `x / d`.
 */
export function quantizeIQ4_NL(src: Float32Array, out: Uint8Array): Uint8Array {
  return quantizeBlocks("IQ4_NL", src, out, 32, 18, blockIQ4_NL);
}

/** Block `b` of {@link quantizeIQ4_NL}: the 32 values at `src[x]` into the 18 bytes at `out[o]`. */
function blockIQ4_NL(src: Float32Array, out: Uint8Array, x: number, o: number, b: number): void {
  const L = codes;
  const d = iq4BlockScale(src, x, L, 0);
  putHalf("IQ4_NL", "scale", out, o, d, b);
  const id = d !== 0 ? div(1, d) : 0;
  for (let j = 0; j < 32; j++) L[j] = nearestLevel(mul(id, src[x + j]));
  pack4(L, 0, out, o + 2);
}

/**
 * IQ4_XS (256 weights → `d: f16 | scales_h: u16 | scales_l: u8[4] | qs: u8[128]`, 136 bytes): per block of
 * 32 the scale of {@link iq4BlockScale}; the 8 scales are quantized to 6 bits (offset 32) against
 * `d = −maxScale / 32`, and each code is the level nearest to `x / (d·l)`.
 */
export function quantizeIQ4_XS(src: Float32Array, out: Uint8Array): Uint8Array {
  return quantizeBlocks("IQ4_XS", src, out, 256, 136, blockIQ4_XS);
}

/** Block `b` of {@link quantizeIQ4_XS}: the 256 values at `src[x]` into the 136 bytes at `out[o]`. */
function blockIQ4_XS(src: Float32Array, out: Uint8Array, x: number, o: number, b: number): void {
  const L = codes;
  for (let ib = 0; ib < 8; ib++) subScales[ib] = iq4BlockScale(src, x + 32 * ib, L, 32 * ib);
  const d = fr(-signedAbsMax(subScales, 0, 8) / 32);
  putHalf("IQ4_XS", "scale", out, o, d, b);
  const id = d !== 0 ? div(1, d) : 0;
  let sh = 0;
  for (let ib = 0; ib < 8; ib++) {
    let l = clamp(nearestInt(mul(id, subScales[ib])), -32, 31);
    const dl = mul(d, l);
    const idl = dl !== 0 ? div(1, dl) : 0;
    for (let j = 0; j < 32; j++) L[32 * ib + j] = nearestLevel(mul(idl, src[x + 32 * ib + j]));
    l += 32;
    if (ib % 2 === 0) out[o + 4 + (ib >> 1)] = l & 15;
    else out[o + 4 + (ib >> 1)] |= (l & 15) << 4;
    sh |= (l >> 4) << (2 * ib);
  }
  out[o + 2] = sh & 255;
  out[o + 3] = sh >> 8;
  for (let ib = 0; ib < 8; ib++) pack4(L, 32 * ib, out, o + 8 + 16 * ib);
}
