import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  dequantizeQ2_K,
  dequantizeQ3_K,
  dequantizeQ4_0,
  dequantizeQ4_1,
  dequantizeQ4_K,
  dequantizeQ5_0,
  dequantizeQ5_1,
  dequantizeQ5_K,
  dequantizeQ6_K,
  dequantizeQ8_0,
} from "./ggml-dequant";
import { f16BitsToF32, f32BitsToF16 } from "./half";

// Golden blocks are built byte by byte from the layouts in ggml-common.h; the expected values are worked out
// by hand in the comments. (These dequantizers also agree exactly with gguf-py 0.19's on random blocks.)

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
function halfBits(x: number): number {
  f32[0] = x;
  return f32BitsToF16(u32[0]);
}
function putHalf(b: Uint8Array, o: number, x: number): void {
  const h = halfBits(x);
  b[o] = h & 255;
  b[o + 1] = h >> 8;
}
const halfValue = (x: number) => f16BitsToF32(halfBits(x));
const run = (fn: (s: Uint8Array, o: Float32Array, n: number) => Float32Array, block: Uint8Array, n: number) =>
  fn(block, new Float32Array(n), n);

describe("golden blocks, 32-weight formats", () => {
  it("Q8_0: d * qs[j]", () => {
    const b = new Uint8Array(34);
    putHalf(b, 0, 0.5);
    b[2] = 0xff; // -1
    b[3] = 127;
    b[33] = 0x80; // -128
    const y = run(dequantizeQ8_0, b, 32);
    expect([y[0], y[1], y[2], y[31]]).toEqual([-0.5, 63.5, 0, -64]);
  });

  it("Q4_0: low nibble is weight j, high nibble weight j + 16, value d * (q - 8)", () => {
    const b = new Uint8Array(18);
    putHalf(b, 0, 2);
    b[2] = 0x9f; // weight 0: 15 - 8 = 7 → 14; weight 16: 9 - 8 = 1 → 2
    b[17] = 0x08; // weight 15: 8 - 8 = 0; weight 31: 0 - 8 → -16
    const y = run(dequantizeQ4_0, b, 32);
    expect([y[0], y[16], y[15], y[31], y[1]]).toEqual([14, 2, 0, -16, -16]);
  });

  it("Q4_1: d * q + m", () => {
    const b = new Uint8Array(20);
    putHalf(b, 0, 0.5);
    putHalf(b, 2, -1);
    b[4] = 0x3a; // weight 0: 10 → 4; weight 16: 3 → 0.5
    const y = run(dequantizeQ4_1, b, 32);
    expect([y[0], y[16], y[1]]).toEqual([4, 0.5, -1]);
  });
});

describe("golden blocks, 5-bit formats", () => {
  it("Q5_0: bit j of qh is bit 4 of weight j, bit j + 16 of weight j + 16; value d * (q - 16)", () => {
    const b = new Uint8Array(22);
    putHalf(b, 0, 0.5);
    b[2] = 0b1; // qh bit 0 → weight 0
    b[5] = 0b10000000; // qh bit 31 → weight 31
    b[6] = 0x3f; // weight 0: 15 | 16 = 31 → 7.5; weight 16: 3 → -6.5
    b[21] = 0xa0; // weight 15: 0 → -8; weight 31: 10 | 16 = 26 → 5
    const y = run(dequantizeQ5_0, b, 32);
    expect([y[0], y[16], y[15], y[31]]).toEqual([7.5, -6.5, -8, 5]);
  });

  it("Q5_1: d * q + m with 5-bit q", () => {
    const b = new Uint8Array(24);
    putHalf(b, 0, 0.25);
    putHalf(b, 2, 1);
    b[4 + 2] = 0b1; // qh bit 16 → weight 16
    b[8] = 0x12; // weight 0: 2 → 1.5; weight 16: 1 | 16 = 17 → 5.25
    const y = run(dequantizeQ5_1, b, 32);
    expect([y[0], y[16], y[1]]).toEqual([1.5, 5.25, 1]);
  });
});

describe("golden blocks, k-quants", () => {
  it("Q2_K: scales | qs | d | dmin, 2-bit quants in four planes", () => {
    const b = new Uint8Array(84);
    b.fill(0x21, 0, 16); // every sub-block: scale 1, min 2
    b[2] = 0x13; // sub-block 2 (weights 32..47): scale 3, min 1
    b[16 + 0] = 0b11100100; // qs[0]: weights 0, 32, 64, 96 get quants 0, 1, 2, 3
    b[16 + 33] = 0b11; // qs[33]: plane 0 of the second half, l = 1 → weight 129 gets 3
    putHalf(b, 80, 1);
    putHalf(b, 82, 0.5);
    const y = run(dequantizeQ2_K, b, 256);
    // y = d * scale * q - dmin * min
    expect(y[0]).toBe(1 * 1 * 0 - 0.5 * 2); // -1
    expect(y[32]).toBe(1 * 3 * 1 - 0.5 * 1); // 2.5
    expect(y[64]).toBe(1 * 1 * 2 - 0.5 * 2); // 1
    expect(y[96]).toBe(1 * 1 * 3 - 0.5 * 2); // 2
    expect(y[129]).toBe(1 * 1 * 3 - 0.5 * 2); // 2
    expect(y[1]).toBe(-1);
    expect(y[255]).toBe(-1);
  });

  it("Q3_K: hmask | qs | 12 bytes of 6-bit scales | d", () => {
    const b = new Uint8Array(110);
    b.fill(0xff, 0, 32); // high bit set everywhere: no -4
    b[0] &= ~1; // hmask[0] bit 0 clear → weight 0 gets -4
    b[8] &= ~(1 << 6); // hmask[8] bit 4*1 + 2 clear → weight 128 + 64 + 8 = 200 gets -4
    b[32 + 0] = 0b11100100; // weights 0, 32, 64, 96 get low bits 0, 1, 2, 3
    b[32 + 16] = 0b110000; // weight 64 + 16 = 80 (plane 2, l = 16) gets low bits 3
    b[32 + 32 + 8] = 0b010000; // weight 200 (h = 1, plane 2, l = 8) gets low bits 1
    // All 16 scales 33 (0b10_0001: low nibble 1, high bits 2), stored minus 32 → 1.
    b.fill(0x11, 96, 104);
    b.fill(0xaa, 104, 108);
    // Scale 5 = 29 (0b01_1101) → -3: low nibble 13 in byte 5, high bits 1 in byte 8 + 5 % 4 = 9 at bits 2..3.
    b[96 + 5] = 0x1d;
    b[96 + 9] = (0xaa & ~0x0c) | (1 << 2);
    putHalf(b, 108, 0.5);
    const y = run(dequantizeQ3_K, b, 256);
    // y = d * scale * q with q = low - (high ? 0 : 4)
    expect(y[0]).toBe(0.5 * 1 * (0 - 4)); // -2
    expect(y[32]).toBe(0.5 * 1 * 1);
    expect(y[64]).toBe(0.5 * 1 * 2);
    expect(y[96]).toBe(0.5 * 1 * 3);
    expect(y[80]).toBe(0.5 * -3 * 3); // sub-block 5: -4.5
    expect(y[81] + 0).toBe(0); // (-0 from -3 * 0) // sub-block 5, low bits 0, high set
    expect(y[200]).toBe(0.5 * 1 * (1 - 4)); // -1.5
    expect(y[1]).toBe(0);
  });

  it("Q4_K: d | dmin | 12 bytes of 6-bit scales and mins | qs", () => {
    const b = new Uint8Array(144);
    putHalf(b, 0, 0.5);
    putHalf(b, 2, 0.25);
    b[4 + 0] = 10; // sub-block 0: scale 10
    b[4 + 4] = 4; // sub-block 0: min 4
    // Sub-block 5: scale 40 = 0b10_1000, min 50 = 0b11_0010.
    b[4 + 9] = 0x28; // low nibble: scale & 15 = 8; high nibble: min & 15 = 2
    b[4 + 1] = 2 << 6; // top bits of byte 1: scale >> 4 = 2 (scale of sub-block 1 stays 0)
    b[4 + 5] = 3 << 6; // top bits of byte 5: min >> 4 = 3 (min of sub-block 1 stays 0)
    b[16 + 0] = 7; // weight 0 (sub-block 0, low nibble): q = 7
    b[16 + 67] = 0xf0; // qs[64 + 3] high nibble → weight 2*64 + 32 + 3 = 163 (sub-block 5): q = 15
    const y = run(dequantizeQ4_K, b, 256);
    // y = d * scale * q - dmin * min
    expect(y[0]).toBe(0.5 * 10 * 7 - 0.25 * 4); // 34
    expect(y[1]).toBe(-1);
    expect(y[163]).toBe(0.5 * 40 * 15 - 0.25 * 50); // 287.5
    expect(y[160]).toBe(-12.5);
    expect(y[131]).toBe(0); // sub-block 4: scale 0, min 0
    expect(y[40]).toBe(0); // sub-block 1: scale 0, min 0 (the top bits belong to sub-block 5)
  });

  it("Q5_K: Q4_K plus a high bit per weight in qh", () => {
    const b = new Uint8Array(176);
    putHalf(b, 0, 0.5);
    putHalf(b, 2, 0.25);
    b[4 + 9] = 0x28;
    b[4 + 1] = 2 << 6;
    b[4 + 5] = 3 << 6; // sub-block 5: scale 40, min 50 as above
    b[16 + 3] = 1 << 5; // qh[3] bit 5 → the high bit of weight 163 (sub-block 5, l = 3)
    b[48 + 67] = 0xf0; // qs[67] high nibble → weight 163 low bits 15
    b[48 + 66] = 0xf0; // weight 162: low bits 15, no high bit
    const y = run(dequantizeQ5_K, b, 256);
    expect(y[163]).toBe(0.5 * 40 * 31 - 0.25 * 50); // 607.5
    expect(y[162]).toBe(0.5 * 40 * 15 - 0.25 * 50); // 287.5
    expect(y[0]).toBe(0);
  });

  it("Q6_K: ql | qh | i8 scales | d", () => {
    const b = new Uint8Array(210);
    b[0] = 0x21; // ql[0]: weight 0 low bits 1 (low nibble), weight 64 low bits 2 (high nibble)
    b[128 + 0] = 0b00100001; // qh[0]: weight 0 high bits 1, weight 32 high 0, weight 64 high 2, weight 96 high 0
    b[101] = 0x0f; // ql[64 + 32 + 5]: weight 128 + 32 + 5 = 165 low bits 15
    b[128 + 37] = 0b1100; // qh[32 + 5] bits 2..3: weight 165 high bits 3
    b[192 + 0] = 2; // sub-block 0 scale 2
    b[192 + 4] = 1; // sub-block 4 (weights 64..79) scale 1
    b[192 + 10] = 0xfd; // sub-block 10 (weights 160..175) scale -3
    putHalf(b, 208, 0.25);
    const y = run(dequantizeQ6_K, b, 256);
    // y = d * scale * (bits - 32)
    expect(y[0]).toBe(0.25 * 2 * (1 + 16 - 32)); // -7.5
    expect(y[64]).toBe(0.25 * 1 * (2 + 32 - 32)); // 0.5
    expect(y[165]).toBe(0.25 * -3 * (15 + 48 - 32)); // -23.25
    expect(y[1]).toBe(0.25 * 2 * -32); // -16
    expect(y[16] + 0).toBe(0); // sub-block 1 scale 0
  });
});

/**
 * Test-side packers: from chosen per-weight quants and per-sub-block scales, build k-quant blocks following the
 * layout (the nested loops of ggml's reference quantizer), and the values a dequantizer must give.
 */
interface Case {
  block: Uint8Array;
  want: number[];
}

function packQ2K(sc: number[], mn: number[], q: number[], d: number, dmin: number): Case {
  const b = new Uint8Array(84);
  for (let k = 0; k < 16; k++) b[k] = sc[k] | (mn[k] << 4);
  for (let h = 0; h < 2; h++)
    for (let s = 0; s < 4; s++)
      for (let l = 0; l < 32; l++) b[16 + 32 * h + l] |= q[128 * h + 32 * s + l] << (2 * s);
  putHalf(b, 80, d);
  putHalf(b, 82, dmin);
  const [hd, hm] = [halfValue(d), halfValue(dmin)];
  return { block: b, want: q.map((v, i) => Math.fround(hd * sc[i >> 4] * v - hm * mn[i >> 4])) };
}

function packQ3K(scales: number[], q: number[], d: number): Case {
  const b = new Uint8Array(110);
  for (let h = 0; h < 2; h++)
    for (let s = 0; s < 4; s++)
      for (let l = 0; l < 32; l++) {
        const u = q[128 * h + 32 * s + l] + 4; // 0..7
        b[32 + 32 * h + l] |= (u & 3) << (2 * s);
        if (u & 4) b[l] |= 1 << (4 * h + s);
      }
  for (let k = 0; k < 16; k++) {
    const v = scales[k] + 32;
    if (k < 8) b[96 + k] |= v & 15;
    else b[96 + k - 8] |= (v & 15) << 4;
    b[96 + 8 + (k % 4)] |= (v >> 4) << (2 * Math.floor(k / 4));
  }
  putHalf(b, 108, d);
  const hd = halfValue(d);
  return { block: b, want: q.map((v, i) => Math.fround(hd * scales[i >> 4] * v)) };
}

function packK4Scales(b: Uint8Array, o: number, sc: number[], mn: number[]): void {
  for (let j = 0; j < 8; j++) {
    if (j < 4) {
      b[o + j] |= sc[j];
      b[o + j + 4] |= mn[j];
    } else {
      b[o + j + 4] |= (sc[j] & 15) | ((mn[j] & 15) << 4);
      b[o + j - 4] |= (sc[j] >> 4) << 6;
      b[o + j] |= (mn[j] >> 4) << 6;
    }
  }
}

function packQ45K(bits: 4 | 5, sc: number[], mn: number[], q: number[], d: number, dmin: number): Case {
  const b = new Uint8Array(bits === 4 ? 144 : 176);
  putHalf(b, 0, d);
  putHalf(b, 2, dmin);
  packK4Scales(b, 4, sc, mn);
  const qs = bits === 4 ? 16 : 48;
  for (let c = 0; c < 4; c++)
    for (let u = 0; u < 2; u++)
      for (let l = 0; l < 32; l++) {
        const v = q[64 * c + 32 * u + l];
        b[qs + 32 * c + l] |= (v & 15) << (4 * u);
        if (bits === 5 && v & 16) b[16 + l] |= 1 << (2 * c + u);
      }
  const [hd, hm] = [halfValue(d), halfValue(dmin)];
  return { block: b, want: q.map((v, i) => Math.fround(hd * sc[i >> 5] * v - hm * mn[i >> 5])) };
}

function packQ6K(scales: number[], q: number[], d: number): Case {
  const b = new Uint8Array(210);
  for (let h = 0; h < 2; h++)
    for (let s = 0; s < 4; s++)
      for (let l = 0; l < 32; l++) {
        const u = q[128 * h + 32 * s + l] + 32; // 0..63
        b[64 * h + 32 * (s & 1) + l] |= (u & 15) << (s < 2 ? 0 : 4);
        b[128 + 32 * h + l] |= (u >> 4) << (2 * s);
      }
  for (let k = 0; k < 16; k++) b[192 + k] = scales[k] & 255;
  putHalf(b, 208, d);
  const hd = halfValue(d);
  return { block: b, want: q.map((v, i) => Math.fround(hd * scales[i >> 4] * v)) };
}

const ints = (min: number, max: number, n: number) =>
  fc.array(fc.integer({ min, max }), { minLength: n, maxLength: n });
const scale = fc.double({ min: -4, max: 4, noNaN: true });

function check(fn: (s: Uint8Array, o: Float32Array, n: number) => Float32Array, cases: Case[]): void {
  const bytes = cases[0].block.length;
  const src = new Uint8Array(bytes * cases.length);
  for (const [i, c] of cases.entries()) src.set(c.block, i * bytes);
  const out = fn(src, new Float32Array(256 * cases.length), 256 * cases.length);
  for (let i = 0; i < out.length; i++) {
    const want = cases[i >> 8].want[i & 255];
    if (Math.abs(out[i] - want) > 1e-6 * Math.max(1, Math.abs(want)))
      expect.fail(`weight ${i}: ${out[i]} != ${want}`);
  }
}

describe("k-quant dequantizers against test-side packers (property)", () => {
  const opts = { seed: 42, numRuns: 60 };
  it("Q2_K", () => {
    const c = fc.tuple(ints(0, 15, 16), ints(0, 15, 16), ints(0, 3, 256), scale, scale);
    fc.assert(
      fc.property(fc.array(c, { minLength: 1, maxLength: 3 }), (cs) =>
        check(
          dequantizeQ2_K,
          cs.map((x) => packQ2K(...x)),
        ),
      ),
      opts,
    );
  });
  it("Q3_K", () => {
    const c = fc.tuple(ints(-32, 31, 16), ints(-4, 3, 256), scale);
    fc.assert(
      fc.property(fc.array(c, { minLength: 1, maxLength: 3 }), (cs) =>
        check(
          dequantizeQ3_K,
          cs.map((x) => packQ3K(...x)),
        ),
      ),
      opts,
    );
  });
  it("Q4_K", () => {
    const c = fc.tuple(ints(0, 63, 8), ints(0, 63, 8), ints(0, 15, 256), scale, scale);
    fc.assert(
      fc.property(fc.array(c, { minLength: 1, maxLength: 3 }), (cs) =>
        check(
          dequantizeQ4_K,
          cs.map((x) => packQ45K(4, ...x)),
        ),
      ),
      opts,
    );
  });
  it("Q5_K", () => {
    const c = fc.tuple(ints(0, 63, 8), ints(0, 63, 8), ints(0, 31, 256), scale, scale);
    fc.assert(
      fc.property(fc.array(c, { minLength: 1, maxLength: 3 }), (cs) =>
        check(
          dequantizeQ5_K,
          cs.map((x) => packQ45K(5, ...x)),
        ),
      ),
      opts,
    );
  });
  it("Q6_K", () => {
    const c = fc.tuple(ints(-128, 127, 16), ints(-32, 31, 256), scale);
    fc.assert(
      fc.property(fc.array(c, { minLength: 1, maxLength: 3 }), (cs) =>
        check(
          dequantizeQ6_K,
          cs.map((x) => packQ6K(...x)),
        ),
      ),
      opts,
    );
  });
});

describe("dequantizer argument checks", () => {
  it("rejects counts that are not whole blocks, short sources and short outputs", () => {
    expect(() => dequantizeQ4_K(new Uint8Array(144), new Float32Array(256), 100)).toThrow(
      /Q4_K: count 100 is not a multiple of the block size 256/,
    );
    expect(() => dequantizeQ6_K(new Uint8Array(209), new Float32Array(256), 256)).toThrow(
      /Q6_K: source has 209 bytes, 256 values need 210/,
    );
    expect(() => dequantizeQ8_0(new Uint8Array(34), new Float32Array(31), 32)).toThrow(
      /output has 31 elements, needs 32/,
    );
  });
});
