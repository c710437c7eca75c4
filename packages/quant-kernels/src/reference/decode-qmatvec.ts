// References of the decoding matvec with int16 activations (wasm/decode_qmv.c) and int8 activations
// (wasm/decode_qmv8.c, relaxed SIMD).
import { checkQuantCall } from "../check-args";
import type { QuantizedLinear } from "../types";
import { codeAt } from "./weight-at";

/**
 * Whether `q` is an affine format of `minBits`–`maxBits` bits without act-order whose groups are whole blocks of the
 * wasm layout and whose group sums against activations of magnitude ≤ `qmax` fit int32.
 */
function roundedApplies(q: QuantizedLinear, minBits: number, maxBits: number, qmax: number): boolean {
  const f = q.format;
  if ((f.decode ?? "affine") !== "affine" || q.gIdx !== undefined) return false;
  if (!Number.isInteger(f.bits) || f.bits < minBits || f.bits > maxBits) return false;
  const cb = f.bits <= 2 ? 2 : f.bits <= 4 ? 4 : 8;
  const bw = 128 / cb;
  const Kp = Math.ceil(q.inFeatures / bw) * bw;
  const gs = f.groupSize === -1 ? Kp : f.groupSize;
  return Number.isSafeInteger(gs) && gs > 0 && gs % bw === 0 && gs * 2 ** (cb - 1) * qmax < 2 ** 31;
}

/**
 * Whether {@link referenceQmatvecI16} (and the wasm decode matvec) applies to `q`: an affine format of
 * 1–8 bits without act-order, groups that are whole blocks of the wasm layout (a multiple of 16 columns
 * for 5–8 bits, 32 for 3–4 bits, 64 for 1–2 bits; or per-channel), and small enough that a group's
 * integer sum cannot overflow int32 (`groupLength · 2^(container bits − 1) · 32767 < 2^31`: up to 512
 * columns for 8-bit codes).
 */
export function qmatvecI16Applies(q: QuantizedLinear): boolean {
  return roundedApplies(q, 1, 8, 32767);
}

/**
 * Whether {@link referenceQmatvecI8} (and the wasm decode matvec's int8-activation path) applies to `q`: an
 * affine format of 3–4 bits (4-bit containers, whose unsigned codes 0..15 fit the relaxed dot product's 7-bit
 * operand; 1–2-bit layers measured no faster with int8 and keep int16) without act-order, groups that are whole
 * blocks of the wasm layout (a multiple of 32 columns, or per-channel), and short enough that a group's integer
 * sum fits int32 (`groupLength · 8 · 127 < 2^31`).
 */
export function qmatvecI8Applies(q: QuantizedLinear): boolean {
  return roundedApplies(q, 3, 4, 127);
}

/** Round half to even, as f32.nearest. */
function rint(v: number): number {
  const r = Math.round(v);
  return Math.abs(v % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * `y = W·x` with x rounded to integers of magnitude ≤ `qmax`, one float32 step per weight group; with `block`
 * (int8), each block of `block` columns of a group takes the group's step divided by 2^e[b] (see
 * {@link referenceQmatvecI8}), and the group's integer sum weighs block b by 2^(E − e[b]).
 */
function roundedQmatvec(q: QuantizedLinear, x: Float32Array, y: Float32Array, qmax: number, block = 0): void {
  const N = q.outFeatures;
  const K = q.inFeatures;
  const gs = q.format.groupSize === -1 ? K : q.format.groupSize;
  const ng = Math.ceil(K / gs);
  const E = block > 0 ? qmatvecI8Exponent(q) : 0;
  const xq = new Float64Array(K);
  const dx = new Float64Array(ng);
  for (let g = 0; g < ng; g++) {
    const k1 = Math.min(K, (g + 1) * gs);
    let mx = 0;
    for (let k = g * gs; k < k1; k++) mx = Math.max(mx, Math.abs(x[k]));
    const inv = mx > 0 ? Math.fround(qmax / mx) : 0;
    dx[g] = Math.fround(Math.fround(mx / qmax) * 2 ** -E);
    for (let b0 = g * gs; b0 < k1; b0 += block > 0 ? block : gs) {
      const b1 = block > 0 ? Math.min(k1, b0 + block) : k1;
      let mb = 0;
      for (let k = b0; k < b1; k++) mb = Math.max(mb, Math.abs(x[k]));
      let e = 0;
      while (e < E && mb * 2 ** (e + 1) <= mx) e++;
      for (let k = b0; k < b1; k++)
        xq[k] = Math.max(-qmax, Math.min(qmax, rint(Math.fround(x[k] * inv) * 2 ** e))) * 2 ** (E - e);
    }
  }
  for (let n = 0; n < N; n++) {
    let acc = 0;
    for (let g = 0; g < ng; g++) {
      const k1 = Math.min(K, (g + 1) * gs);
      const z = q.zeros[n * ng + g];
      let s = 0;
      for (let k = g * gs; k < k1; k++) s += (codeAt(q, n, k) - z) * xq[k];
      acc += q.scales[n * ng + g] * dx[g] * s;
    }
    y[n] = acc;
  }
}

/**
 * The block exponent bound E of {@link referenceQmatvecI8} for `q` (which must {@link qmatvecI8Applies}): the
 * largest E ≤ 14 with `groupLength · 8 · 127 · 2^E < 2^31` (per-channel: the columns rounded up to 32), so a
 * group's integer sum stays exact in int32. 14 for 128-column groups.
 */
export function qmatvecI8Exponent(q: QuantizedLinear): number {
  const Kp = Math.ceil(q.inFeatures / 32) * 32;
  const gs = q.format.groupSize === -1 ? Kp : q.format.groupSize;
  let e = 0;
  while (e < 14 && gs * 8 * 127 * 2 ** (e + 1) < 2 ** 31) e++;
  return e;
}

/**
 * `y[N] = W·x` for one row of activations rounded to int16 per weight group (float64 sums):
 * ```
 * dx[g]  = max_{k∈g} |x[k]| / 32767,  xq[k] = round(x[k] / dx[g])        (float32 scale, ties to even)
 * y[n]   = Σ_g scale[n,g] · dx[g] · Σ_{k∈g} (q[n,k] − zero[n,g]) · xq[k]
 * ```
 * so `|y − W·x| ≤ Σ_g dx[g]/2 · Σ_{k∈g} |w[n,k]|`. Requires {@link qmatvecI16Applies}.
 */
export function referenceQmatvecI16(q: QuantizedLinear, x: Float32Array, y: Float32Array): void {
  checkQuantCall("qmatvecI16", q, x, "x", q.inFeatures, 1, y, "y", q.outFeatures);
  if (!qmatvecI16Applies(q))
    throw new Error(
      `referenceQmatvecI16: format ${q.format.name} is not a 1–8-bit affine format with whole-block groups (at most 512 columns for 8 bits)`,
    );
  roundedQmatvec(q, x, y, 32767);
}

/**
 * `y[N] = W·x` for one row of activations rounded to int8 (float64 sums), the precision of llama.cpp's Q4_0 decode
 * (which rounds x to int8 per 32 columns): one step per block b of 32 columns of weight group g, the group's step
 * divided by a power of two so that the block's largest value rounds to at least 64 (down to 2^−E of the group's
 * step, {@link qmatvecI8Exponent}):
 * ```
 * dx[g]  = max_{k∈g} |x[k]| / 127                               (float32)
 * e[b]   = the largest e ≤ E with max_{k∈b} |x[k]| · 2^e ≤ max_{k∈g} |x[k]|
 * xq[k]  = round(x[k] · (127 / max_{k∈g} |x[k]|) · 2^e[b])      (float32 product, ties to even, |xq| ≤ 127)
 * y[n]   = Σ_g scale[n,g] · dx[g]·2^−E · Σ_b 2^(E − e[b]) · Σ_{k∈b} (q[n,k] − zero[n,g]) · xq[k]
 * ```
 * so `|y − W·x| ≤ Σ_b dx[g]·2^−e[b]/2 · Σ_{k∈b} |w[n,k]|` (each block's step at most twice its own
 * `max_{k∈b} |x[k]| / 127`, unless e[b] = E). Requires {@link qmatvecI8Applies}.
 */
export function referenceQmatvecI8(q: QuantizedLinear, x: Float32Array, y: Float32Array): void {
  checkQuantCall("qmatvecI8", q, x, "x", q.inFeatures, 1, y, "y", q.outFeatures);
  if (!qmatvecI8Applies(q))
    throw new Error(
      `referenceQmatvecI8: format ${q.format.name} is not a 3–4-bit affine format with whole-block groups`,
    );
  roundedQmatvec(q, x, y, 127, 32);
}
