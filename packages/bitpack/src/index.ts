// @int21/bitpack: bit-packing of 1- to 8-bit integers into Uint32Array words.
export type { Bits, IntArrayLike, UnpackTarget } from "./validate";
export { assertBits } from "./validate";
export { getStream, packStream, streamWords, unpackStream } from "./stream";
export {
  type PackedMatrix,
  getMatrix,
  matrixWordsPerRow,
  packMatrix,
  packedMatrixView,
  unpackMatrix,
  unpackMatrixRow,
} from "./matrix";
export { decodeSigned, encodeSigned, fromOffsetBinary, signedRange, toOffsetBinary } from "./signed";
