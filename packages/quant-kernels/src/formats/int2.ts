// INT2: 4 levels. The paper's target width (INT2.1 = INT2 + low-rank error correction).
import { defineFamily, type FormatRecord } from "./format";

/**
 * The INT2 formats, group sizes 32 / 64 / 128 / per-channel × asymmetric / symmetric × f16 / f32
 * scales. Ids 2xy, see `formatId`. Byte layout of one group of `G` columns
 * (planar in a `QuantizedLinear`, counted per group here):
 *
 * ```
 * asym: q: u32[G·2/32] | scale: f16|f32 | zero: f16|f32
 * sym:  q: u32[G·2/32] | scale: f16|f32            (zero = 2^1 implicit)
 * ```
 * e.g. `int2-g128-asym-f16`: q: u32[8] | scale: f16 | zero: f16 → 2.25 bpw.
 */
export const INT2_FORMATS: readonly FormatRecord[] = defineFamily(2);
