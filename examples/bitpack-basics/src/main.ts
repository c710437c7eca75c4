// Pack a 4096×4096 matrix of 3-bit codes, check that every row reads back exactly, and report sizes.
import { getMatrix, packMatrix, unpackMatrixRow } from "@int21/bitpack";

const rows = Number(process.env.ROWS ?? 4096);
const cols = Number(process.env.COLS ?? 4096);
const bits = 3;

const codes = new Uint8Array(rows * cols);
let s = 2021;
for (let i = 0; i < codes.length; i++) {
  s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
  codes[i] = s >>> 29; // 0..7
}
const t0 = performance.now();
const m = packMatrix(codes, rows, cols, bits);
const t1 = performance.now();
const row = new Uint8Array(cols);
let mismatches = 0;
for (let r = 0; r < rows; r++) {
  unpackMatrixRow(m, r, row);
  for (let c = 0; c < cols; c++) if (row[c] !== codes[r * cols + c]) mismatches++;
}
const t2 = performance.now();
console.log(`matrix ${rows}×${cols}, ${bits}-bit codes`);
console.log(
  `packed: ${m.words.byteLength} bytes (${m.wordsPerRow} words per row) vs ${codes.byteLength} bytes as Uint8Array (${(codes.byteLength / m.words.byteLength).toFixed(2)}× smaller)`,
);
console.log(`element (1, 10) = ${getMatrix(m, 1, 10)} (expected ${codes[cols + 10]})`);
console.log(
  `pack ${(t1 - t0).toFixed(1)} ms, unpack all rows ${(t2 - t1).toFixed(1)} ms, mismatches: ${mismatches}`,
);
if (mismatches !== 0) process.exit(1);
