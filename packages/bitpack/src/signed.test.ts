import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { decodeSigned, encodeSigned, fromOffsetBinary, signedRange, toOffsetBinary } from "./signed";
import { packStream, unpackStream } from "./stream";
import type { Bits } from "./validate";

describe("offset-binary signed helpers", () => {
  it("golden codes", () => {
    expect(signedRange(4)).toEqual({ min: -8, max: 7, offset: 8 });
    expect([-8, 0, 7].map((v) => toOffsetBinary(v, 4))).toEqual([0, 8, 15]);
    expect([-2, -1, 0, 1].map((v) => toOffsetBinary(v, 2))).toEqual([0, 1, 2, 3]);
    expect(fromOffsetBinary(0, 8)).toBe(-128);
  });
  it("signed values survive encode → pack → unpack → decode", () => {
    fc.assert(
      fc.property(
        fc.constantFrom<Bits>(2, 3, 4, 8).chain((bits) =>
          fc.tuple(
            fc.constant(bits),
            fc.array(fc.integer({ min: -(1 << (bits - 1)), max: (1 << (bits - 1)) - 1 }), {
              maxLength: 100,
            }),
          ),
        ),
        ([bits, xs]) => {
          const codes = encodeSigned(xs, bits, new Uint8Array(xs.length));
          const words = packStream(codes, bits);
          const back = unpackStream(words, bits, xs.length, new Int32Array(xs.length)) as Int32Array;
          decodeSigned(back, bits, back);
          expect(Array.from(back)).toEqual(xs);
        },
      ),
      { seed: 3, numRuns: 100 },
    );
  });
  it("rejects out-of-range signed values and codes", () => {
    expect(() => toOffsetBinary(8, 4)).toThrow(/signed value 8 is outside \[-8, 7\] for 4 bits/);
    expect(() => toOffsetBinary(-3, 2)).toThrow(/outside \[-2, 1\]/);
    expect(() => fromOffsetBinary(16, 4)).toThrow(/code 16 is outside \[0, 15\]/);
    expect(() => encodeSigned([1, 2], 4, new Uint8Array(1))).toThrow(/output buffer too small/);
  });
});
