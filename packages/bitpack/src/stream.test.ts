import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { getStream, packStream, streamWords, unpackStream } from "./stream";
import type { Bits } from "./validate";

const SEED = 42;
const widths: Bits[] = [1, 2, 3, 4, 5, 6, 7, 8];
const arbValues = (bits: Bits) => fc.array(fc.integer({ min: 0, max: (1 << bits) - 1 }), { maxLength: 300 });

describe("flat stream", () => {
  for (const bits of widths) {
    it(`unpack(pack(x)) === x for ${bits}-bit values, any length`, () => {
      fc.assert(
        fc.property(arbValues(bits), (xs) => {
          const words = packStream(xs, bits);
          expect(words.length).toBe(Math.ceil((xs.length * bits) / 32));
          const out = new Uint8Array(xs.length);
          unpackStream(words, bits, xs.length, out);
          expect(Array.from(out)).toEqual(xs);
          expect(xs.map((_, i) => getStream(words, bits, i))).toEqual(xs);
        }),
        { seed: SEED, numRuns: 150 },
      );
    });
  }

  it("packed size is ceil(n*bits/32), including n = 0 and 1", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 10_000 }), fc.constantFrom(...widths), (n, bits) => {
        expect(streamWords(n, bits)).toBe(Math.ceil((n * bits) / 32));
        expect(packStream(new Uint8Array(n), bits).length).toBe(Math.ceil((n * bits) / 32));
      }),
      { seed: SEED, numRuns: 200 },
    );
  });

  it("unpacks at word and output offsets and leaves the rest of the output untouched", () => {
    fc.assert(
      fc.property(fc.constantFrom(...widths), arbValues(8), fc.nat(5), fc.nat(5), (bits, raw, wo, oo) => {
        const xs = raw.map((v) => v & ((1 << bits) - 1));
        const words = new Uint32Array(wo + streamWords(xs.length, bits)).fill(0xdeadbeef);
        packStream(xs, bits, words, wo);
        const out = new Int32Array(oo + xs.length + 2).fill(-7);
        unpackStream(words, bits, xs.length, out, wo, oo);
        expect(Array.from(out.subarray(oo, oo + xs.length))).toEqual(xs);
        expect(Array.from(out.subarray(0, oo))).toEqual(new Array(oo).fill(-7));
        expect(out[oo + xs.length]).toBe(-7);
        expect(xs.map((_, i) => getStream(words, bits, i, wo))).toEqual(xs);
      }),
      { seed: SEED, numRuns: 150 },
    );
  });
});

describe("byte-output fast path", () => {
  it("Uint8Array outputs at aligned and unaligned offsets (subarray views too) equal the generic path", () => {
    fc.assert(
      fc.property(
        fc.constantFrom<Bits>(2, 4, 8),
        arbValues(8),
        fc.nat(9),
        fc.nat(3),
        (bits, raw, oo, viewOff) => {
          const xs = raw.map((v) => v & ((1 << bits) - 1));
          const words = packStream(xs, bits);
          const backing = new Uint8Array(viewOff + oo + xs.length + 3).fill(0xaa);
          const out = backing.subarray(viewOff);
          unpackStream(words, bits, xs.length, out, 0, oo);
          const generic = new Int32Array(xs.length);
          unpackStream(words, bits, xs.length, generic);
          expect(Array.from(out.subarray(oo, oo + xs.length))).toEqual(Array.from(generic));
          expect(Array.from(out.subarray(oo, oo + xs.length))).toEqual(xs);
          expect(Array.from(backing.subarray(0, viewOff + oo)).every((b) => b === 0xaa)).toBe(true);
          expect(Array.from(backing.subarray(viewOff + oo + xs.length)).every((b) => b === 0xaa)).toBe(true);
        },
      ),
      { seed: SEED, numRuns: 300 },
    );
  });
});

describe("golden vectors (byte map)", () => {
  const bytesOf = (w: Uint32Array) => Array.from(new Uint8Array(w.buffer, w.byteOffset, w.byteLength));
  it("2-bit: value i in bits [2i, 2i+2) of word 0, LSB first", () => {
    const w = packStream([1, 2, 3, 0, 3, 3, 3, 3, 0, 0, 0, 0, 0, 0, 0, 2], 2);
    expect(Array.from(w)).toEqual([0b10_00_00_00_00_00_00_00_11_11_11_11_00_11_10_01 >>> 0]);
    expect(bytesOf(w)).toEqual([0b00111001, 0b11111111, 0b00000000, 0b10000000]);
  });
  it("3-bit: value 10 straddles words 0 and 1", () => {
    const xs = new Array(11).fill(0);
    xs[10] = 0b101; // bits 30,31 of word 0 get 01, bit 0 of word 1 gets 1
    xs[0] = 0b110;
    const w = packStream(xs, 3);
    expect(Array.from(w)).toEqual([(0b01 << 30) | 0b110, 0b1].map((x) => x >>> 0));
  });
  it("3-bit: 32 values fill exactly 3 words, byte map as documented", () => {
    const xs = Array.from({ length: 32 }, (_, i) => i % 8);
    const w = packStream(xs, 3);
    expect(w.length).toBe(3);
    // byte 0 = v2[1:0] v1[2:0] v0[2:0] = 10 001 000
    expect(bytesOf(w)[0]).toBe(0b10001000);
    // byte 1 = v5[0] v4 v3 v2[2] = 1 100 011 0
    expect(bytesOf(w)[1]).toBe(0b11000110);
  });
  it("4-bit and 8-bit nibble/byte order", () => {
    expect(Array.from(packStream([0x1, 0x2, 0x3, 0x4, 0x5, 0x6, 0x7, 0x8], 4))).toEqual([0x87654321]);
    expect(Array.from(packStream([0x11, 0x22, 0x33, 0x44, 0x55], 8))).toEqual([0x44332211, 0x55]);
  });
});

describe("bad input", () => {
  it("rejects widths outside 1..8", () => {
    expect(() => packStream([1], 0 as Bits)).toThrow(/bits must be an integer from 1 to 8, got 0/);
    expect(() => packStream([1], 9 as Bits)).toThrow(/got 9/);
    expect(() => streamWords(3, 2.5)).toThrow(/got 2.5/);
  });
  it("rejects values out of range or non-integer, naming the index", () => {
    expect(() => packStream([0, 4], 2)).toThrow(
      /value 4 at index 1 is out of range \[0, 3\] for 2-bit packing/,
    );
    expect(() => packStream([-1], 8)).toThrow(/value -1 at index 0 is out of range/);
    expect(() => packStream([0.5], 4)).toThrow(/value 0.5 at index 0 is not an integer/);
    expect(() => packStream([Number.NaN], 4)).toThrow(/NaN at index 0 is not an integer/);
  });
  it("rejects buffers that are too small", () => {
    expect(() => packStream([1, 2, 3], 8, new Uint32Array(0))).toThrow(
      /output word buffer too small: needs 1/,
    );
    expect(() => unpackStream(new Uint32Array(1), 8, 5, new Uint8Array(5))).toThrow(
      /packed word buffer too small/,
    );
    expect(() => unpackStream(new Uint32Array(2), 8, 5, new Uint8Array(4))).toThrow(
      /output buffer too small: needs 5/,
    );
    expect(() => getStream(new Uint32Array(1), 8, 4)).toThrow(/index 4 is outside/);
  });
});
