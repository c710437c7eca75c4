// IQ4_NL: ggml's 4-bit non-linear format, a 16-entry integer codebook with an f16 scale per 32 weights.
import type { FormatRecord } from "./format";
import { defineLutFormat } from "./lut";

/**
 * ggml's `kvalues_iq4nl`: 16 non-uniform int8 levels, denser near 0 and asymmetric (−127 … 113).
 */
export const IQ4_NL_CODEBOOK: readonly number[] = Object.freeze([
  -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
]);

/**
 * `iq4_nl` (id 5111): ggml's `GGML_TYPE_IQ4_NL` — blocks of 32 weights, one f16 scale `d`,
 * `w = d · kvalues_iq4nl[q]`. Byte layout of one block (planar in a `QuantizedLinear`):
 *
 * ```
 * q: u32[4] | scale: f16 → 4.5 bpw      (ggml: d: f16 | qs: u8[16], 18 bytes per 32 weights)
 * ```
 * Round-to-nearest: `d = m / −127` with `m` the block's value of largest magnitude (ggml's first
 * guess; `d` is negative when `m` is positive, so `m` lands on the −127 end), code = the entry
 * nearest to `w / d`. ggml's quantizer then searches nearby scales; int21's RTN does not (GPTQ and
 * the RTN `mseClip` option search through the same record).
 */
export const IQ4_NL_FORMAT: FormatRecord = defineLutFormat({
  id: 5111,
  name: "iq4_nl",
  bits: 4,
  groupSize: 32,
  scaleDtype: "f16",
  codebook: IQ4_NL_CODEBOOK,
});
