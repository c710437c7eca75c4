import { getUnchecked, packUnchecked, unpackUnchecked } from "./stream";
import {
  type Bits,
  type IntArrayLike,
  type UnpackTarget,
  assertBits,
  assertCapacity,
  assertCount,
  assertValue,
} from "./validate";

/**
 * A row-major matrix of `rows × cols` unsigned `bits`-wide integers, packed along the columns
 * (the K / input dimension of a weight `[out, in]`), each row starting on a word boundary.
 *
 * Byte map: row `r` is a flat stream (see {@link streamWords}) of `cols` values occupying words
 * `[r*wordsPerRow, (r+1)*wordsPerRow)`, with `wordsPerRow = ceil(cols*bits/32)`. Bits past the last
 * value of a row are zero. Row `r` can be read without touching row `r-1`.
 *
 * ```
 * INT2, cols = 20 → wordsPerRow = 2
 * word 0: c15 c14 ... c1 c0      (2 bits each, c0 in bits 1:0)
 * word 1: 0 ... 0 c19 c18 c17 c16 (bits 31:8 zero)
 * word 2: row 1 starts here
 * ```
 */
export interface PackedMatrix {
  readonly bits: Bits;
  readonly rows: number;
  readonly cols: number;
  /** `ceil(cols*bits/32)`. */
  readonly wordsPerRow: number;
  /** `rows * wordsPerRow` words. */
  readonly words: Uint32Array;
}

/** Words per packed row: `ceil(cols*bits/32)`. */
export function matrixWordsPerRow(cols: number, bits: number): number {
  assertCount(cols, "cols");
  assertBits(bits);
  return Math.ceil((cols * bits) / 32);
}

/**
 * Packs a row-major `rows × cols` matrix of integers in `[0, 2^bits)`.
 * `out` (optional) receives the words and must hold `rows * wordsPerRow` of them.
 */
export function packMatrix(
  values: IntArrayLike,
  rows: number,
  cols: number,
  bits: Bits,
  out?: Uint32Array,
): PackedMatrix {
  assertCount(rows, "rows");
  const wpr = matrixWordsPerRow(cols, bits);
  if (values.length !== rows * cols) {
    throw new RangeError(
      `bitpack: packMatrix expected ${rows}×${cols} = ${rows * cols} values, got ${values.length}`,
    );
  }
  for (let i = 0; i < values.length; i++) assertValue(values[i], bits, i);
  const words = out ?? new Uint32Array(rows * wpr);
  assertCapacity(words.length, rows * wpr, "output word buffer");
  words.fill(0, 0, rows * wpr);
  for (let r = 0; r < rows; r++) packUnchecked(values, r * cols, cols, bits, words, r * wpr);
  return { bits, rows, cols, wordsPerRow: wpr, words };
}

/** Wraps existing words as a packed matrix, checking the length. */
export function packedMatrixView(words: Uint32Array, rows: number, cols: number, bits: Bits): PackedMatrix {
  assertCount(rows, "rows");
  const wpr = matrixWordsPerRow(cols, bits);
  if (words.length !== rows * wpr) {
    throw new RangeError(
      `bitpack: a ${rows}×${cols} ${bits}-bit matrix needs ${rows * wpr} words (${wpr} per row), got ${words.length}`,
    );
  }
  return { bits, rows, cols, wordsPerRow: wpr, words };
}

/** Reads element `(r, c)`. Throws a RangeError outside the matrix. */
export function getMatrix(m: PackedMatrix, r: number, c: number): number {
  if (!Number.isInteger(r) || !Number.isInteger(c) || r < 0 || c < 0 || r >= m.rows || c >= m.cols) {
    throw new RangeError(
      `bitpack: element (${String(r)}, ${String(c)}) is outside a ${m.rows}×${m.cols} matrix`,
    );
  }
  return getUnchecked(m.words, m.bits, c, r * m.wordsPerRow);
}

/** Unpacks row `r` into `out[outOffset .. outOffset+cols)`. Allocates nothing. */
export function unpackMatrixRow(m: PackedMatrix, r: number, out: UnpackTarget, outOffset = 0): UnpackTarget {
  if (!Number.isInteger(r) || r < 0 || r >= m.rows) {
    throw new RangeError(`bitpack: row ${String(r)} is outside a matrix of ${m.rows} rows`);
  }
  assertCapacity(out.length - outOffset, m.cols, "output buffer");
  unpackUnchecked(m.words, m.bits, m.cols, out, r * m.wordsPerRow, outOffset);
  return out;
}

/** Unpacks the whole matrix row-major into `out` (`rows * cols` elements). Allocates nothing. */
export function unpackMatrix(m: PackedMatrix, out: UnpackTarget): UnpackTarget {
  assertCapacity(out.length, m.rows * m.cols, "output buffer");
  for (let r = 0; r < m.rows; r++)
    unpackUnchecked(m.words, m.bits, m.cols, out, r * m.wordsPerRow, r * m.cols);
  return out;
}
