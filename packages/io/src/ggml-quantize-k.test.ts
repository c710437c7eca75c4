import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  dequantizeIQ4_NL,
  dequantizeIQ4_XS,
  dequantizeQ2_K,
  dequantizeQ3_K,
  dequantizeQ4_K,
  dequantizeQ5_0,
  dequantizeQ5_1,
  dequantizeQ5_K,
  dequantizeQ6_K,
} from "./ggml-dequant";
import {
  quantizeIQ4_NL,
  quantizeIQ4_XS,
  quantizeQ2_K,
  quantizeQ3_K,
  quantizeQ4_K,
  quantizeQ5_0,
  quantizeQ5_1,
  quantizeQ5_K,
  quantizeQ6_K,
} from "./ggml-quantize-k";
import { GGML_TYPES } from "./ggml-types";

// Bit-identity with llama.cpp's own quantizer is tested in @int21/quant-kernels (formats/ggml-blocks.test.ts,
// fixtures made by libggml); here: shapes, errors, and the round trip's error against each format's step.

type Q = (src: Float32Array, out: Uint8Array) => Uint8Array;
type D = (src: Uint8Array, out: Float32Array, count: number) => Float32Array;

/** name, quantizer, dequantizer, block, bytes, relative error budget (× the block's max |x|). */
const CASES: [string, Q, D, number, number, number][] = [
  ["Q5_0", quantizeQ5_0, dequantizeQ5_0, 32, 22, 1 / 16],
  ["Q5_1", quantizeQ5_1, dequantizeQ5_1, 32, 24, 1 / 31],
  ["Q2_K", quantizeQ2_K, dequantizeQ2_K, 256, 84, 1],
  ["Q3_K", quantizeQ3_K, dequantizeQ3_K, 256, 110, 1 / 2],
  ["Q4_K", quantizeQ4_K, dequantizeQ4_K, 256, 144, 1 / 4],
  ["Q5_K", quantizeQ5_K, dequantizeQ5_K, 256, 176, 1 / 8],
  ["Q6_K", quantizeQ6_K, dequantizeQ6_K, 256, 210, 1 / 16],
  ["IQ4_NL", quantizeIQ4_NL, dequantizeIQ4_NL, 32, 18, 1 / 8],
  ["IQ4_XS", quantizeIQ4_XS, dequantizeIQ4_XS, 256, 136, 1 / 4],
];

describe.each(CASES)("%s", (name, quantize, dequantize, block, bytes, budget) => {
  it("is registered in GGML_TYPES with its codec and sizes", () => {
    const t = GGML_TYPES[name as "Q5_0"];
    expect([t.blockSize, t.blockBytes, t.quantize, t.dequantize]).toEqual([
      block,
      bytes,
      quantize,
      dequantize,
    ]);
  });

  it("round-trips every block within the format's step (property)", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 3 }),
        fc.integer({ min: 0, max: 1e9 }),
        // Scales in the f16 normal range (ggml's tiny scales are subnormal f16s, coarser than any step budget).
        fc.double({ min: 0.05, max: 100, noNaN: true }),
        (blocks, seed, scale) => {
          let s = seed >>> 0;
          const rnd = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32) * 2 - 1;
          const x = Float32Array.from({ length: blocks * block }, () => scale * rnd() ** 3);
          const q = quantize(x, new Uint8Array(blocks * bytes));
          const y = dequantize(q, new Float32Array(x.length), x.length);
          for (let b = 0; b < blocks; b++) {
            let amax = 0;
            for (let i = b * block; i < (b + 1) * block; i++) amax = Math.max(amax, Math.abs(x[i]));
            for (let i = b * block; i < (b + 1) * block; i++) {
              // + the f16 rounding of the stored scale / min (2^-11 relative, times up to 2 terms)
              expect(Math.abs(y[i] - x[i])).toBeLessThanOrEqual(budget * amax * 1.001 + amax * 2 ** -9);
            }
          }
        },
      ),
      { numRuns: 25, seed: 7 },
    );
  });

  it("quantizes an all-zero block to zeros", () => {
    const q = quantize(new Float32Array(block), new Uint8Array(bytes));
    expect(Array.from(dequantize(q, new Float32Array(block), block), Math.abs)).toEqual(
      new Array(block).fill(0),
    );
  });

  it("throws on a partial block, a short output, a non-finite value and an f16 overflow", () => {
    expect(() => quantize(new Float32Array(block + 1), new Uint8Array(2 * bytes))).toThrow(
      new RegExp(`quantize ${name}: ${block + 1} values is not a multiple of the block size ${block}`),
    );
    expect(() => quantize(new Float32Array(block), new Uint8Array(bytes - 1))).toThrow(/output has/);
    const bad = new Float32Array(block);
    bad[3] = Number.NaN;
    expect(() => quantize(bad, new Uint8Array(bytes))).toThrow(/value NaN at index 3 is not finite/);
    const big = new Float32Array(block).fill(3e38);
    big[1] = -3e38;
    expect(() => quantize(big, new Uint8Array(bytes))).toThrow(/too large/);
    big.fill(1e9);
    expect(() => quantize(big, new Uint8Array(bytes))).toThrow(/overflows f16/);
  });
});
