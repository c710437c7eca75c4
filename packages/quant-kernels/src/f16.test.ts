import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { f16BitsToF32, f32ToF16Bits, isF16Exact, roundToF16, roundUpToF16 } from "./f16";

describe("f16", () => {
  it("golden values (ties to even, overflow, subnormals)", () => {
    const cases: [number, number][] = [
      [1, 0x3c00],
      [-2, 0xc000],
      [0.1, 0x2e66],
      [65504, 0x7bff],
      [65519, 0x7bff],
      [65520, 0x7c00], // tie between 65504 and 65536 (Inf): even → Inf
      [2 ** -14, 0x0400], // smallest normal
      [2 ** -24, 0x0001], // smallest subnormal
      [2 ** -25, 0x0000], // tie with 0: even → 0
      [3 * 2 ** -26, 0x0001],
      [1 + 2 ** -11, 0x3c00], // tie: even → 1
      [1 + 3 * 2 ** -11, 0x3c02], // tie: even → up
      [Number.POSITIVE_INFINITY, 0x7c00],
      [-0, 0x8000],
    ];
    for (const [x, h] of cases) expect(f32ToF16Bits(x), `f32ToF16Bits(${x})`).toBe(h);
    expect(f32ToF16Bits(Number.NaN) & 0x7c00).toBe(0x7c00);
    expect(Number.isNaN(f16BitsToF32(0x7e00))).toBe(true);
  });

  it("every finite f16 value round-trips exactly (exhaustive)", () => {
    for (let h = 0; h < 0x10000; h++) {
      if ((h & 0x7c00) === 0x7c00) continue;
      const x = f16BitsToF32(h);
      expect(f32ToF16Bits(x)).toBe(h);
      expect(isF16Exact(x)).toBe(true);
    }
  });

  it("roundToF16 picks a nearest f16 neighbour; roundUpToF16 the smallest f16 ≥ x (property)", () => {
    fc.assert(
      fc.property(fc.float({ min: 2 ** -30, max: 60000, noNaN: true }), (x) => {
        x = Math.fround(x);
        const r = roundToF16(x);
        const h = f32ToF16Bits(r);
        const below = f16BitsToF32(Math.max(0, h - 1));
        const above = f16BitsToF32(h + 1);
        expect(Math.abs(x - r)).toBeLessThanOrEqual(Math.abs(x - below));
        expect(Math.abs(x - r)).toBeLessThanOrEqual(Math.abs(x - above));
        const u = roundUpToF16(x);
        expect(u).toBeGreaterThanOrEqual(x);
        const hu = f32ToF16Bits(u);
        if (hu > 0) expect(f16BitsToF32(hu - 1)).toBeLessThan(x);
      }),
      { seed: 42, numRuns: 2000 },
    );
  });
});
