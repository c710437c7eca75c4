import { type Bits, getMatrix } from "@int21/bitpack";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  buildFloatLayout,
  codesPerFloat,
  floatLayoutCode,
  floatLayoutOf,
  groupIndexOf,
} from "./float-layout";
import { randomLayer } from "./test-fixtures";

describe("float layout", () => {
  it("packs floor(24 / bits) codes per float", () => {
    expect([1, 2, 3, 4, 5, 6, 7, 8].map(codesPerFloat)).toEqual([24, 12, 8, 6, 4, 4, 3, 3]);
    expect(() => codesPerFloat(9)).toThrow(/bits must be an integer in \[1, 8\]/);
  });

  it("golden: INT2, K = 13 → two elements per row, codes little-end first", () => {
    const q = randomLayer({ N: 1, K: 13, bits: 2, groupSize: -1, seed: 3 });
    const l = buildFloatLayout(q);
    expect(l.elementsPerRow).toBe(2);
    let first = 0;
    for (let k = 11; k >= 0; k--) first = first * 4 + getMatrix(q.qweight, 0, k);
    expect(l.codes[0]).toBe(first);
    expect(l.codes[1]).toBe(getMatrix(q.qweight, 0, 12));
  });

  it("every code reads back exactly with float arithmetic, every element is an integer < 2^24", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 8 }),
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 1, max: 90 }),
        fc.integer(),
        (bits, N, K, seed) => {
          const q = randomLayer({ N, K, bits: bits as Bits, groupSize: 32, seed });
          const l = buildFloatLayout(q);
          for (const v of l.codes) {
            expect(Number.isInteger(v) && v >= 0 && v < 2 ** 24).toBe(true);
            expect(Math.fround(v)).toBe(v);
          }
          for (let n = 0; n < N; n++)
            for (let k = 0; k < K; k++) expect(floatLayoutCode(l, n, k)).toBe(getMatrix(q.qweight, n, k));
        },
      ),
      { seed: 42, numRuns: 200 },
    );
  });

  it("group index: gIdx, floor(k / groupSize) with a short tail group, or 0 per channel", () => {
    const tail = randomLayer({ N: 2, K: 70, bits: 4, groupSize: 32, seed: 1 });
    expect(Array.from(groupIndexOf(tail).subarray(30, 36))).toEqual([0, 0, 1, 1, 1, 1]);
    expect(groupIndexOf(tail)[69]).toBe(2);
    const act = randomLayer({ N: 2, K: 64, bits: 4, groupSize: 32, actOrder: true, seed: 1 });
    expect(groupIndexOf(act)).toBe(act.gIdx);
    const pc = randomLayer({ N: 2, K: 64, bits: 4, groupSize: -1, seed: 1 });
    expect(Array.from(new Set(groupIndexOf(pc)))).toEqual([0]);
  });

  it("is cached per record", () => {
    const q = randomLayer({ N: 2, K: 16, bits: 2, groupSize: 32, seed: 1 });
    expect(floatLayoutOf(q)).toBe(floatLayoutOf(q));
  });

  it("rejects a record whose packed matrix or group parameters disagree with its shape", () => {
    const q = randomLayer({ N: 2, K: 16, bits: 2, groupSize: 32, seed: 1 });
    expect(() => buildFloatLayout({ ...q, inFeatures: 17 })).toThrow(
      /qweight is 2×16 at 2 bits, but the layer is 2×17/,
    );
    expect(() => buildFloatLayout({ ...q, scales: new Float32Array(1) })).toThrow(
      /needs 2 scales and zeros, got 1/,
    );
    expect(() => buildFloatLayout({ ...q, gIdx: new Int32Array(16).fill(3) })).toThrow(
      /gIdx\[0\] = 3 is outside \[0, 1\)/,
    );
  });
});
