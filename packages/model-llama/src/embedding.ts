// The token embedding table: float32, or packed like a projection (rows = tokens), gathered row by row.
import {
  type Backend,
  type Linear,
  type QuantFormat,
  type QuantizedLinear,
  bytes as packedBytes,
  createFloatLinear,
  createQuantLinear,
  createReferenceBackend,
  dequantizeRows,
  getFormat,
  rtnQuantize,
} from "@int21/quant-kernels";
import type { LlamaConfig } from "./config";

/**
 * A token embedding `[vocabSize × dim]`: a row-major float32 table, or a packed record with
 * `outFeatures = vocabSize` and `inFeatures = dim` (one packed row per token, the same layout as a
 * projection, so a tied classifier runs the fused quantized matmul over the very same record).
 */
export type TokenEmbedding = Float32Array | QuantizedLinear;

/** Whether `e` is a packed (quantized) table rather than float32. */
export function isPackedEmbedding(e: TokenEmbedding): e is QuantizedLinear {
  return !(e instanceof Float32Array);
}

/**
 * Throws an Error naming `source` and `tokenEmbedding` unless `e` is a float32 table of
 * `vocabSize·dim` values or a packed record of shape `[vocabSize × dim]`.
 */
export function checkTokenEmbedding(e: TokenEmbedding, config: LlamaConfig, source: string): void {
  const { vocabSize, dim } = config;
  if (e instanceof Float32Array) {
    if (e.length !== vocabSize * dim)
      throw new Error(
        `${source}: tokenEmbedding has ${e.length} values, expected [vocabSize × dim] = ${vocabSize}×${dim}`,
      );
    return;
  }
  if (e === null || typeof e !== "object" || (e as Partial<QuantizedLinear>).qweight === undefined)
    throw new Error(`${source}: tokenEmbedding must be a Float32Array or a packed QuantizedLinear`);
  if (e.outFeatures !== vocabSize || e.inFeatures !== dim)
    throw new Error(
      `${source}: packed tokenEmbedding is ${e.outFeatures}×${e.inFeatures}, expected [vocabSize × dim] = ${vocabSize}×${dim}`,
    );
}

/**
 * The embedding lookup: row `ids[i]` of the table into `out[i·dim, (i+1)·dim)`. A float table is
 * copied; a packed one is dequantized row by row (`dequantizeRows`: only `ids.length · dim` codes are
 * read, nothing of size `vocabSize` is built). Allocates nothing. Throws an Error naming the index
 * when an id is outside `[0, vocabSize)`, and when `out` does not hold `ids.length · dim` floats.
 * ```
 * for i < T, j < dim: out[i*dim + j] = E[ids[i], j]
 * ```
 */
export function embeddingRows(
  weights: { config: LlamaConfig; tokenEmbedding: TokenEmbedding },
  ids: ArrayLike<number>,
  out: Float32Array,
): void {
  const { dim, vocabSize } = weights.config;
  const T = ids.length;
  if (!(out instanceof Float32Array) || out.length !== T * dim)
    throw new Error(
      `embeddingRows: out must be a Float32Array of ids.length × dim = ${T}×${dim} floats, got ${out?.length}`,
    );
  for (let i = 0; i < T; i++) {
    const t = ids[i];
    if (!Number.isInteger(t) || t < 0 || t >= vocabSize)
      throw new Error(`embeddingRows: token ${String(t)} at index ${i} is outside [0, ${vocabSize})`);
  }
  const e = weights.tokenEmbedding;
  if (isPackedEmbedding(e)) {
    if (e.outFeatures !== vocabSize || e.inFeatures !== dim)
      throw new Error(
        `embeddingRows: packed tokenEmbedding is ${e.outFeatures}×${e.inFeatures}, config says ${vocabSize}×${dim}`,
      );
    dequantizeRows(e, ids, out);
    return;
  }
  for (let i = 0; i < T; i++) {
    const o = ids[i] * dim;
    for (let j = 0; j < dim; j++) out[i * dim + j] = e[o + j];
  }
}

/** Bytes the table holds: `4·vocabSize·dim` for float32, the packed record's `bytes()` otherwise. */
export function tokenEmbeddingBytes(e: TokenEmbedding): number {
  return isPackedEmbedding(e) ? packedBytes(e) : e.byteLength;
}

/**
 * The table as float32 `[vocabSize × dim]`: the array itself when float, else a freshly allocated
 * dequantization of the whole packed table (`4·vocabSize·dim` bytes; for exporters and calibration
 * that need every row, never for the training or inference forward).
 */
export function denseTokenEmbedding(e: TokenEmbedding): Float32Array {
  if (!isPackedEmbedding(e)) return e;
  const out = new Float32Array(e.outFeatures * e.inFeatures);
  createReferenceBackend().dequantize(e, out);
  return out;
}

/**
 * The classifier of a model with `sharedClassifier`: a float linear over the float table, or a
 * quantized linear (`createQuantLinear`, the fused kernels) over the same packed record — never a
 * float copy of a packed table.
 */
export function tiedClassifier(e: TokenEmbedding, config: LlamaConfig, backend: Backend): Linear {
  checkTokenEmbedding(e, config, "tiedClassifier");
  if (isPackedEmbedding(e)) return createQuantLinear({ q: e, backend });
  return createFloatLinear({ weight: e, outFeatures: config.vocabSize, inFeatures: config.dim, backend });
}

/** Whether `cls` is the tied classifier of `e` (the same float array or the same packed record). */
export function isTiedClassifier(cls: Linear, e: TokenEmbedding): boolean {
  const c = cls as { weight?: unknown; q?: unknown };
  return isPackedEmbedding(e) ? c.q === e : c.weight === e;
}

/**
 * Round-to-nearest quantization of a float table into `format` (one packed row per token, groups
 * along `dim`). Throws naming `tokenEmbedding` when the table is already packed or has the wrong size.
 */
export function quantizeTokenEmbedding(
  e: TokenEmbedding,
  config: LlamaConfig,
  format: QuantFormat | string,
): QuantizedLinear {
  checkTokenEmbedding(e, config, "quantizeTokenEmbedding");
  if (isPackedEmbedding(e))
    throw new Error("quantizeTokenEmbedding: tokenEmbedding is already packed; start from a float table");
  return rtnQuantize(e, config.vocabSize, config.dim, getFormat(format));
}
