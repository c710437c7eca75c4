export type {
  AdamWArgs,
  Backend,
  DecodeKind,
  GemmArgs,
  KernelName,
  Linear,
  QuantFormat,
  QuantizedLinear,
  ScaleDtype,
} from "./types";
export { f16BitsToF32, f32ToF16Bits, isF16Exact, roundToF16, roundUpToF16 } from "./f16";
export {
  type FormatBits,
  type FormatRecord,
  type FormatSpec,
  type GroupParams,
  type GroupSize,
  NOMINAL_K,
  formatId,
  formatName,
} from "./formats/format";
export { type LutFormatSpec, defineLutFormat } from "./formats/lut";
export { NF4_CODEBOOK, NF4_FORMATS } from "./formats/nf4";
export { IQ4_NL_CODEBOOK, IQ4_NL_FORMAT } from "./formats/iq4-nl";
export {
  type BlockFormatRecord,
  type BlockTraits,
  type GgmlBlockTypeName,
  GGML_BLOCK_FORMATS,
  IQ4_NL_GGML_FORMAT,
  IQ4_XS_FORMAT,
  Q2_K_FORMAT,
  Q3_K_FORMAT,
  Q4_0_FORMAT,
  Q4_1_FORMAT,
  Q4_K_FORMAT,
  Q5_0_FORMAT,
  Q5_1_FORMAT,
  Q5_K_FORMAT,
  Q6_K_FORMAT,
  Q8_0_FORMAT,
  blockFormatOfGgmlType,
  blockFormatOrThrow,
  isBlockFormat,
} from "./formats/ggml-blocks";
export { type FromGgmlBlocksOptions, ggmlBlocksOf, quantizedFromGgmlBlocks } from "./ggml-blocks-linear";
export { INT2_FORMATS } from "./formats/int2";
export { INT3_FORMATS } from "./formats/int3";
export { INT4_FORMATS } from "./formats/int4";
export { INT8_FORMATS } from "./formats/int8";
export {
  FIRST_USER_FORMAT_ID,
  FORMATS,
  formatNames,
  getFormat,
  makeFormat,
  registerFormat,
} from "./formats/registry";
export {
  type QuantizedLinearInit,
  bitsPerWeight,
  bytes,
  createQuantizedLinear,
  groupCount,
  packQuantizedLinear,
} from "./quantized-linear";
export { type ResolvedGemm, checkQuantCall, resolveGemm } from "./check-args";
export { createReferenceBackend } from "./reference/backend";
export {
  CE_PARALLEL_ELEMS,
  type CrossEntropyRowsArgs,
  type RopeRowsArgs,
  TRAIN_ATTN_PARALLEL,
  TRAIN_CE_CUTOFF,
  TRAIN_ROWS_PARALLEL,
  TRAIN_SWIGLU_PARALLEL,
  type TrainAttentionShape,
  type TrainKernels,
  checkCrossEntropyRowsArgs,
  referenceCrossEntropyRows,
  referenceRmsNorm,
  referenceRmsNormBackward,
  referenceRope,
  shareTrainKernels,
  trainKernels,
} from "./wasm/wasm-train";
export { type DecodeKernels, decodeKernels, shareDecodeKernels } from "./wasm/wasm-decode";
export { type AttentionArgs, checkAttentionArgs, referenceAttention } from "./reference/decode-attention";
export {
  qmatvecI16Applies,
  qmatvecI8Applies,
  referenceQmatvecI16,
  referenceQmatvecI8,
} from "./reference/decode-qmatvec";
export { plainBlockedSgemm } from "./reference/blocked-sgemm";
export { referenceDequantize } from "./reference/dequantize";
export { dequantizeRows } from "./dequantize-rows";
export { referenceQmatmul } from "./reference/qmatmul";
export { referenceQmatmulT } from "./reference/qmatmul-t";
export { referenceSgemm } from "./reference/sgemm";
export { checkAdamWArgs, referenceAdamW } from "./reference/adamw";
export { type FormatDecoder, codeAt, decoderOf, groupOf, weightAt } from "./reference/weight-at";
export {
  type LayerActivations,
  type QuantizeOptions,
  type Quantizer,
  checkQuantizer,
  checkWeight,
  needsCalibration,
} from "./quantizer";
export {
  type QuantizerEntry,
  type QuantizerFactory,
  type QuantizerParams,
  getQuantizer,
  listQuantizers,
  quantizerNames,
  registerQuantizer,
  resolveQuantizer,
  unregisterQuantizer,
} from "./quantizer-registry";
export { type RtnOptions, createRtnQuantizer, findGroupParams, groupMembers, rtn, rtnQuantize } from "./rtn";
export { type Hessian, type HessianOptions, createHessian } from "./hessian";
export { choleskyLowerInPlace, lowerInverseTransposed, upperCholeskyOfInverse } from "./cholesky";
export {
  type GptqInfo,
  type GptqOptions,
  type GptqQuantizerOptions,
  createGptqQuantizer,
  gptq,
  gptqQuantize,
  gptqQuantizeWithInfo,
} from "./gptq";
export { relativeOutputError } from "./output-error";
export { type FloatLinear, type QuantLinear, createFloatLinear, createQuantLinear } from "./linear";
export {
  type Float32NdArray,
  type NdArrayInput,
  type NdCopyOptions,
  type NdKernelOptions,
  describeNdarray,
  gatherNdarray,
  isNdarrayView,
  isRowMajor,
  ndDequantize,
  ndLinear,
  ndQmatmul,
  ndQmatmulT,
  ndQuantize,
  ndSgemm,
} from "./ndarray";
