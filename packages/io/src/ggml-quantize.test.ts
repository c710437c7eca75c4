import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { dequantizeQ4_0, dequantizeQ4_1, dequantizeQ8_0 } from "./ggml-dequant";
import { quantizeQ4_0, quantizeQ4_1, quantizeQ8_0 } from "./ggml-quantize";
import { f16BitsToF32, f32BitsToF16 } from "./half";

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
const toHalf = (x: number) => {
  f32[0] = x;
  return f16BitsToF32(f32BitsToF16(u32[0]));
};

describe("golden blocks", () => {
  it("Q8_0: d = max|x| / 127, q = roundf(x / d) (half away from zero)", () => {
    const x = new Float32Array(32);
    x[0] = 127;
    x[1] = -63.5; // → -64 (away from zero)
    x[2] = 0.5; // → 1
    x[3] = -0.49; // → 0
    const b = quantizeQ8_0(x, new Uint8Array(34));
    expect([...b.subarray(0, 6)]).toEqual([0x00, 0x3c, 127, 0xc0, 1, 0]); // d = 1.0 = f16 0x3c00
  });

  it("Q4_0: d = (weight of largest magnitude) / -8, q = min(15, trunc(x / d + 8.5))", () => {
    const x = new Float32Array(32);
    x[0] = -8; // largest magnitude → d = 1, q = 0
    x[1] = 7; // q = 15
    x[2] = 0.4; // 8.9 → 8
    x[16] = 0.5; // 9.0 → 9
    x[17] = -0.6; // 7.9 → 7
    const b = quantizeQ4_0(x, new Uint8Array(18));
    expect([b[0], b[1]]).toEqual([0x00, 0x3c]);
    expect([b[2], b[3], b[4]]).toEqual([0x90, 0x7f, 0x88]); // (q0 | q16 << 4), (q1 | q17 << 4), (q2 | q18 << 4)
    // A block whose largest-magnitude weight is positive: d = 8 / -8 = -1, the opposite extreme clamps to 15.
    x.fill(0);
    x[0] = 8;
    x[1] = -8;
    const c = quantizeQ4_0(x, new Uint8Array(18));
    expect([c[0], c[1]]).toEqual([0x00, 0xbc]); // -1.0
    expect(Array.from(dequantizeQ4_0(c, new Float32Array(32), 32).subarray(0, 3), (v) => v + 0)).toEqual([
      8, -7, 0,
    ]);
  });

  it("Q4_1: m = min, d = (max - min) / 15, q = min(15, trunc((x - m) / d + 0.5))", () => {
    const x = new Float32Array(32).fill(0);
    x[0] = -1;
    x[1] = 14; // d = 1
    x[2] = 3.4; // (4.4 + 0.5) → 4
    const b = quantizeQ4_1(x, new Uint8Array(20));
    expect([...b.subarray(0, 4)]).toEqual([0x00, 0x3c, 0x00, 0xbc]); // d = 1, m = -1
    expect([b[4], b[5], b[6], b[7]]).toEqual([0x10, 0x1f, 0x14, 0x11]); // weights 16.. are 0 → q 1
  });
});

const block = (n: number) =>
  fc
    .array(fc.float({ min: -1000, max: 1000, noNaN: true }), { minLength: 32 * n, maxLength: 32 * n })
    .map((a) => Float32Array.from(a));
const blocks = fc.integer({ min: 1, max: 4 }).chain(block);

describe("quantize → dequantize error within each format's bound (property)", () => {
  const opts = { seed: 42, numRuns: 300 };
  it("Q8_0: |y - x| <= d/2 + 127 |f16(d) - d|", () => {
    fc.assert(
      fc.property(blocks, (x) => {
        const y = dequantizeQ8_0(
          quantizeQ8_0(x, new Uint8Array((x.length / 32) * 34)),
          new Float32Array(x.length),
          x.length,
        );
        for (let b = 0; b < x.length; b += 32) {
          const amax = Math.max(...x.subarray(b, b + 32).map(Math.abs));
          const d = Math.fround(amax / 127);
          const bound = d / 2 + 127 * Math.abs(toHalf(d) - d) + 1e-6 * amax;
          for (let j = b; j < b + 32; j++) expect(Math.abs(y[j] - x[j])).toBeLessThanOrEqual(bound);
        }
      }),
      opts,
    );
  });

  it("Q4_0: |y - x| <= |d| + 8 |f16(d) - d| (|d|/2 except the clamped extreme)", () => {
    fc.assert(
      fc.property(blocks, (x) => {
        const y = dequantizeQ4_0(
          quantizeQ4_0(x, new Uint8Array((x.length / 32) * 18)),
          new Float32Array(x.length),
          x.length,
        );
        for (let b = 0; b < x.length; b += 32) {
          const amax = Math.max(...x.subarray(b, b + 32).map(Math.abs));
          const d = amax / 8;
          const slack = 8 * Math.abs(toHalf(d) - d) + 1e-6 * amax;
          for (let j = b; j < b + 32; j++) {
            const err = Math.abs(y[j] - x[j]);
            expect(err).toBeLessThanOrEqual(d + slack);
            // Only a weight near the opposite extreme (quant 16 clamped to 15) may exceed d/2.
            if (err > d / 2 + slack) expect(Math.abs(x[j])).toBeGreaterThan(7 * d);
          }
        }
      }),
      opts,
    );
  });

  it("Q4_1: |y - x| <= d/2 + 15 |f16(d) - d| + |f16(m) - m|", () => {
    fc.assert(
      fc.property(blocks, (x) => {
        const y = dequantizeQ4_1(
          quantizeQ4_1(x, new Uint8Array((x.length / 32) * 20)),
          new Float32Array(x.length),
          x.length,
        );
        for (let b = 0; b < x.length; b += 32) {
          const xs = [...x.subarray(b, b + 32)];
          const min = Math.min(...xs);
          const d = Math.fround(Math.fround(Math.max(...xs) - min) / 15);
          const bound =
            d / 2 +
            15 * Math.abs(toHalf(d) - d) +
            Math.abs(toHalf(min) - min) +
            1e-6 * Math.max(...xs.map(Math.abs));
          for (let j = b; j < b + 32; j++) expect(Math.abs(y[j] - x[j])).toBeLessThanOrEqual(bound);
        }
      }),
      opts,
    );
  });

  it("an all-zero block quantizes to zeros", () => {
    const x = new Float32Array(32);
    const zeros = (y: Float32Array) => Array.from(y, (v) => v + 0); // -0 counts as 0
    expect(zeros(dequantizeQ8_0(quantizeQ8_0(x, new Uint8Array(34)), new Float32Array(32), 32))).toEqual([
      ...x,
    ]);
    expect(zeros(dequantizeQ4_0(quantizeQ4_0(x, new Uint8Array(18)), new Float32Array(32), 32))).toEqual([
      ...x,
    ]);
    expect(zeros(dequantizeQ4_1(quantizeQ4_1(x, new Uint8Array(20)), new Float32Array(32), 32))).toEqual([
      ...x,
    ]);
  });
});

describe("quantizer argument checks", () => {
  it("rejects partial blocks, short outputs, non-finite values and scales past the f16 range", () => {
    expect(() => quantizeQ8_0(new Float32Array(31), new Uint8Array(34))).toThrow(
      /31 values is not a multiple of the block size 32/,
    );
    expect(() => quantizeQ4_0(new Float32Array(32), new Uint8Array(17))).toThrow(
      /output has 17 bytes, needs 18/,
    );
    const x = new Float32Array(64);
    x[40] = Number.NaN;
    expect(() => quantizeQ4_1(x, new Uint8Array(40))).toThrow(/value NaN at index 40 is not finite/);
    x[40] = 1e7;
    expect(() => quantizeQ8_0(x, new Uint8Array(68))).toThrow(/Q8_0: block 1: scale .* overflows f16/);
  });
});
