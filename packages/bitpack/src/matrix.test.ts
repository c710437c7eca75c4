import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  getMatrix,
  matrixWordsPerRow,
  packMatrix,
  packedMatrixView,
  unpackMatrix,
  unpackMatrixRow,
} from "./matrix";
import { streamWords, unpackStream } from "./stream";
import type { Bits } from "./validate";

const SEED = 7;
const arbMatrix = fc
  .record({
    bits: fc.constantFrom<Bits>(1, 2, 3, 4, 5, 6, 7, 8),
    rows: fc.integer({ min: 0, max: 9 }),
    cols: fc.integer({ min: 0, max: 70 }),
  })
  .chain(({ bits, rows, cols }) =>
    fc.record({
      bits: fc.constant(bits),
      rows: fc.constant(rows),
      cols: fc.constant(cols),
      values: fc.array(fc.integer({ min: 0, max: (1 << bits) - 1 }), {
        minLength: rows * cols,
        maxLength: rows * cols,
      }),
    }),
  );

describe("row-aligned matrix", () => {
  it("round trips, get agrees with bulk unpack, size is rows*ceil(cols*bits/32)", () => {
    fc.assert(
      fc.property(arbMatrix, ({ bits, rows, cols, values }) => {
        const m = packMatrix(values, rows, cols, bits);
        expect(m.wordsPerRow).toBe(Math.ceil((cols * bits) / 32));
        expect(m.words.length).toBe(rows * m.wordsPerRow);
        const out = new Uint16Array(rows * cols);
        unpackMatrix(m, out);
        expect(Array.from(out)).toEqual(values);
        const row = new Float32Array(cols);
        const viaGet: number[] = [];
        const viaRows: number[] = [];
        for (let r = 0; r < rows; r++) {
          unpackMatrixRow(m, r, row);
          viaRows.push(...row);
          for (let c = 0; c < cols; c++) viaGet.push(getMatrix(m, r, c));
        }
        expect(viaRows).toEqual(values);
        expect(viaGet).toEqual(values);
      }),
      { seed: SEED, numRuns: 200 },
    );
  });

  it("each row is an independent stream starting on a word boundary", () => {
    fc.assert(
      fc.property(arbMatrix, ({ bits, rows, cols, values }) => {
        const m = packMatrix(values, rows, cols, bits);
        for (let r = 0; r < rows; r++) {
          const rowWords = m.words.slice(r * m.wordsPerRow, (r + 1) * m.wordsPerRow);
          expect(rowWords.length).toBe(streamWords(cols, bits));
          const out = new Uint8Array(cols);
          unpackStream(rowWords, bits, cols, out);
          expect(Array.from(out)).toEqual(values.slice(r * cols, (r + 1) * cols));
        }
      }),
      { seed: SEED, numRuns: 100 },
    );
  });

  it("golden: INT2 20 columns → 2 words per row, high bits of the row's last word are zero", () => {
    const values = Array.from({ length: 40 }, (_, i) => (i < 20 ? 3 : 1));
    const m = packMatrix(values, 2, 20, 2);
    expect(m.wordsPerRow).toBe(2);
    expect(Array.from(m.words)).toEqual([0xffffffff, 0x000000ff, 0x55555555, 0x00000055]);
  });

  it("golden: INT3 row of 11 values uses 2 words, value 10 straddles", () => {
    const m = packMatrix([7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7], 1, 11, 3);
    expect(Array.from(m.words)).toEqual([(0b11 << 30) | 7, 1].map((x) => x >>> 0));
    expect(getMatrix(m, 0, 10)).toBe(7);
  });

  it("rejects bad shapes and indices with clear errors", () => {
    expect(() => packMatrix([1, 2, 3], 2, 2, 4)).toThrow(/expected 2×2 = 4 values, got 3/);
    expect(() => packedMatrixView(new Uint32Array(3), 2, 20, 2)).toThrow(
      /needs 4 words \(2 per row\), got 3/,
    );
    const m = packMatrix([1, 2, 3, 4], 2, 2, 4);
    expect(() => getMatrix(m, 2, 0)).toThrow(/element \(2, 0\) is outside a 2×2 matrix/);
    expect(() => unpackMatrixRow(m, -1, new Uint8Array(2))).toThrow(/row -1 is outside/);
    expect(() => unpackMatrix(m, new Uint8Array(3))).toThrow(/output buffer too small: needs 4/);
    expect(() => matrixWordsPerRow(-1, 2)).toThrow(/cols must be a non-negative integer/);
  });
});
