// A QuantizedLinear of a ggml block format from a GGUF tensor's bytes, and back: no float round trip.
import { packedMatrixView } from "@int21/bitpack";
import type { FormatRecord } from "./formats/format";
import { blockFormatOrThrow, blockRowBytes } from "./formats/ggml-blocks";
import { getFormat } from "./formats/registry";
import { createQuantizedLinear } from "./quantized-linear";
import type { QuantizedLinear } from "./types";

/** Options of {@link quantizedFromGgmlBlocks}. */
export interface FromGgmlBlocksOptions {
  /**
   * Always copy the bytes (default false: when a row is a whole number of 32-bit words and `data` is
   * 4-byte aligned, the layer's words are a view on `data`'s buffer, which must then stay unchanged).
   */
  copy?: boolean;
}

/**
 * The packed words of `N` rows of `rowBytes` ggml bytes (row-contiguous `data`, as a GGUF tensor stores
 * them): a view on `data` when every row is whole words and `data` is 4-byte aligned (and `copy` is not
 * set), else a copy with each row padded to a whole word (padding bytes 0).
 */
function rowsToWords(data: Uint8Array, N: number, rowBytes: number, copy: boolean): Uint32Array {
  const wpr = Math.ceil(rowBytes / 4);
  if (!copy && rowBytes % 4 === 0 && data.byteOffset % 4 === 0)
    return new Uint32Array(data.buffer, data.byteOffset, N * wpr);
  const words = new Uint32Array(N * wpr);
  const dst = new Uint8Array(words.buffer);
  if (rowBytes % 4 === 0) dst.set(data.subarray(0, N * rowBytes));
  else for (let n = 0; n < N; n++) dst.set(data.subarray(n * rowBytes, (n + 1) * rowBytes), n * wpr * 4);
  return words;
}

/**
 * Builds the {@link QuantizedLinear} of a GGUF tensor stored in a ggml block type, keeping its bytes:
 * `type` is the ggml type (`"Q4_K"`, or its numeric id 12) or a block format record (`getFormat("q4_k")`);
 * `data` holds the tensor's `N·K / blockSize` blocks, row after row (ggml's `ne[0] = K` weights per row,
 * `ne[1] = N` rows: the GGUF layout of a `[N × K]` = out × in weight); `N` output rows of `K` input weights.
 *
 * Layout of the result: `format` the block record (`q4_k`, …), `qweight` an 8-bit PackedMatrix of N rows ×
 * `K / blockSize · blockBytes` bytes (row n = the row's ggml blocks; each row padded to a whole 32-bit word
 * when it is not one already — only Q5_0, Q8_0, Q3_K, Q6_K and IQ4_NL rows with an odd block count need
 * it), `scales` and `zeros` empty. Zero-copy when the rows are whole words and `data` is 4-byte aligned
 * (`opts.copy` forces a copy). Validates like `createQuantizedLinear` (K a whole number of blocks, every
 * f16 scale finite); throws an Error naming the type, shape or block.
 */
export function quantizedFromGgmlBlocks(
  type: string | number | FormatRecord,
  data: Uint8Array,
  N: number,
  K: number,
  opts: FromGgmlBlocksOptions = {},
): QuantizedLinear {
  const f = blockFormatOrThrow(type);
  const who = `quant-kernels: quantizedFromGgmlBlocks ${f.block.ggmlType}`;
  if (!Number.isSafeInteger(N) || N < 1 || !Number.isSafeInteger(K) || K < 1)
    throw new Error(`${who}: N and K must be positive integers, got N=${N}, K=${K}`);
  if (K % f.block.blockSize !== 0)
    throw new Error(`${who}: K = ${K} is not a multiple of the block size ${f.block.blockSize}`);
  if (!(data instanceof Uint8Array)) throw new Error(`${who}: data must be a Uint8Array`);
  const rowBytes = blockRowBytes(f, K);
  if (data.length !== N * rowBytes) {
    throw new Error(
      `${who}: data has ${data.length} bytes, a ${N}×${K} tensor needs ${N * rowBytes} (${N}×${K / f.block.blockSize} blocks of ${f.block.blockBytes})`,
    );
  }
  const words = rowsToWords(data, N, rowBytes, opts.copy === true);
  return createQuantizedLinear({
    format: f,
    outFeatures: N,
    inFeatures: K,
    qweight: packedMatrixView(words, N, rowBytes, 8),
    scales: new Float32Array(0),
  });
}

/**
 * The ggml bytes of a block-format layer, row after row with no padding: exactly the data of a GGUF
 * tensor of the layer's ggml type (`q.format.block.ggmlType`) with `ne = [K, N]`. A view on the layer's
 * words when its rows are whole words (no copy), else a copy without the row padding. Throws for a layer
 * that is not of a block format.
 */
export function ggmlBlocksOf(q: QuantizedLinear): Uint8Array {
  const f = blockFormatOrThrow(getFormat(q.format));
  const N = q.outFeatures;
  const rowBytes = blockRowBytes(f, q.inFeatures);
  const { words, wordsPerRow } = q.qweight;
  const all = new Uint8Array(words.buffer, words.byteOffset, words.byteLength);
  if (wordsPerRow * 4 === rowBytes) return all.subarray(0, N * rowBytes);
  const out = new Uint8Array(N * rowBytes);
  for (let n = 0; n < N; n++)
    out.set(all.subarray(n * wordsPerRow * 4, n * wordsPerRow * 4 + rowBytes), n * rowBytes);
  return out;
}
