import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { bf16ToF32, f16BitsToF32, f16ToF32, f32ToBf16, f32ToF16 } from "./half";

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
const fromBits = (b: number) => {
  u32[0] = b;
  return f32[0];
};

function roundHalfEven(q: number): number {
  const r = Math.floor(q);
  const d = q - r;
  return d > 0.5 || (d === 0.5 && r % 2 === 1) ? r + 1 : r;
}

/** Independent reference: the value float32 `x` rounds to in a float format with `mant` mantissa bits. */
function referenceRound(
  bits: number,
  mant: number,
  minExp: number,
  maxFinite: number,
  overflowAt: number,
): number {
  const x = fromBits(bits);
  const a = Math.abs(x);
  const biased = (bits >>> 23) & 0xff;
  const e = Math.max(biased === 0 ? -126 : biased - 127, minExp);
  const ulp = 2 ** (e - mant);
  const v = roundHalfEven(a / ulp) * ulp;
  const r = v >= overflowAt || v > maxFinite ? Number.POSITIVE_INFINITY : v;
  return x < 0 || Object.is(x, -0) ? -r : r;
}

const one = (fn: (s: Float32Array, o: Uint16Array) => Uint16Array, x: number) =>
  fn(new Float32Array([x]), new Uint16Array(1))[0];

describe("f16", () => {
  it("encodes hand-picked values", () => {
    expect(one(f32ToF16, 1)).toBe(0x3c00);
    expect(one(f32ToF16, -2)).toBe(0xc000);
    expect(one(f32ToF16, 65504)).toBe(0x7bff);
    expect(one(f32ToF16, 65519.99)).toBe(0x7bff);
    expect(one(f32ToF16, 65520)).toBe(0x7c00);
    expect(one(f32ToF16, 2 ** -24)).toBe(0x0001);
    expect(one(f32ToF16, 2 ** -25)).toBe(0x0000); // tie between 0 and 2^-24 goes to even (0)
    expect(one(f32ToF16, 3 * 2 ** -25)).toBe(0x0002); // tie between 1 and 2 ulps goes to even (2)
    expect(one(f32ToF16, 2 ** -14)).toBe(0x0400);
    expect(one(f32ToF16, 0.1)).toBe(0x2e66);
    expect(one(f32ToF16, 1 + 2 ** -11)).toBe(0x3c00); // tie, even stays
    expect(one(f32ToF16, 1 + 3 * 2 ** -11)).toBe(0x3c02); // tie, odd rounds up
    expect(one(f32ToF16, -0)).toBe(0x8000);
    expect(one(f32ToF16, Number.NEGATIVE_INFINITY)).toBe(0xfc00);
    expect(Number.isNaN(f16BitsToF32(one(f32ToF16, Number.NaN)))).toBe(true);
  });

  it("round-trips every finite and infinite half exactly", () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    const back = f32ToF16(f16ToF32(all, new Float32Array(65536)), new Uint16Array(65536));
    for (let h = 0; h < 65536; h++) {
      if ((h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0) {
        expect(Number.isNaN(f16BitsToF32(back[h]))).toBe(true);
      } else if (back[h] !== h) {
        expect.fail(`half 0x${h.toString(16)} came back as 0x${back[h].toString(16)}`);
      }
    }
  });

  it("rounds every float32 to the nearest half, ties to even (property)", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffffffff }), (bits) => {
        if ((bits & 0x7fffffff) > 0x7f800000) return;
        const h = one(f32ToF16, fromBits(bits));
        expect(f16BitsToF32(h)).toBe(referenceRound(bits, 10, -14, 65504, 65520));
      }),
      { seed: 42, numRuns: 20000 },
    );
  });

  it("refuses an output that is too small", () => {
    expect(() => f32ToF16(new Float32Array(3), new Uint16Array(2))).toThrow(/f32ToF16.*needs at least 3/);
  });
});

describe("bf16", () => {
  it("encodes hand-picked values", () => {
    expect(one(f32ToBf16, 1)).toBe(0x3f80);
    expect(one(f32ToBf16, -2)).toBe(0xc000);
    expect(one(f32ToBf16, 1 + 2 ** -8)).toBe(0x3f80); // tie, even stays
    expect(one(f32ToBf16, 1 + 3 * 2 ** -8)).toBe(0x3f82); // tie, odd rounds up
    expect(one(f32ToBf16, 3.4028234663852886e38)).toBe(0x7f80); // FLT_MAX rounds to +inf
    expect(
      Number.isNaN(bf16ToF32(new Uint16Array([one(f32ToBf16, Number.NaN)]), new Float32Array(1))[0]),
    ).toBe(true);
  });

  it("rounds every float32 to the nearest bfloat16, ties to even (property)", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffffffff }), (bits) => {
        if ((bits & 0x7fffffff) > 0x7f800000) return;
        const h = one(f32ToBf16, fromBits(bits));
        const back = bf16ToF32(new Uint16Array([h]), new Float32Array(1))[0];
        expect(back).toBe(referenceRound(bits, 7, -126, 3.3895313892515355e38, 2 ** 128));
      }),
      { seed: 42, numRuns: 20000 },
    );
  });

  it("decodes by shifting the bits into the top half of a float32", () => {
    const src = new Uint16Array([0x3f80, 0xc049, 0x0001]);
    const out = bf16ToF32(src, new Float32Array(3));
    expect([...out]).toEqual([1, fromBits(0xc0490000), fromBits(0x00010000)]);
  });
});
