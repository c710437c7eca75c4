// Reading GGUF: from a local file with positioned reads (header first, tensors on demand), or from bytes.

import { openFileSource } from "./file-source";
import { GGML_TYPES } from "./ggml-types";
import {
  type GgufHeader,
  type GgufTensorInfo,
  type GgufValue,
  ggufGet,
  NeedMoreBytes,
  parseGgufHeader,
} from "./gguf-format";
import { assertLittleEndian } from "./safetensors-format";

/** What both GGUF readers share: the validated header. */
export interface GgufInfo {
  /** The file path (or the label given to {@link parseGguf}), used in every error. */
  readonly path: string;
  readonly version: number;
  /** Typed metadata values by key, in file order. */
  readonly metadata: Readonly<Record<string, GgufValue>>;
  /** Tensors by name: ggml type, dims (innermost first), shape (row-major), sizes, offset. */
  readonly tensors: Readonly<Record<string, GgufTensorInfo>>;
  /** Tensor names in header order. */
  readonly names: readonly string[];
  readonly alignment: number;
  /** Plain value of a metadata key, or undefined. */
  get(key: string): GgufValue["value"] | undefined;
}

/** A GGUF file opened for streamed reading. */
export interface GgufFile extends GgufInfo {
  /**
   * Reads a tensor as float32 in row-major order (`shape`), dequantizing F32, F16, BF16, Q8_0, Q4_0, Q4_1,
   * Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K and Q6_K; into `out` when given.
   */
  readTensorF32(name: string, out?: Float32Array): Promise<Float32Array>;
  /** Reads a tensor's raw bytes (ggml blocks) as stored. */
  readTensorRaw(name: string): Promise<Uint8Array>;
  close(): Promise<void>;
}

/** A GGUF file parsed from bytes in memory; the same reads, synchronous. */
export interface GgufBytes extends GgufInfo {
  readTensorF32(name: string, out?: Float32Array): Float32Array;
  /** The tensor's bytes (a view into the input, not a copy). */
  readTensorRaw(name: string): Uint8Array;
}

function lookup(header: GgufHeader, name: string, file: string): GgufTensorInfo {
  if (!Object.hasOwn(header.tensors, name)) {
    const some = header.names.slice(0, 5).join(", ");
    throw new Error(
      `gguf: ${file}: no tensor named "${name}" (the file has ${header.names.length}: ${some}${header.names.length > 5 ? ", ..." : ""})`,
    );
  }
  return header.tensors[name];
}

function dequantize(
  info: GgufTensorInfo,
  bytes: Uint8Array,
  out: Float32Array | undefined,
  file: string,
): Float32Array {
  const where = `gguf: ${file}: tensor "${info.name}"`;
  const type = GGML_TYPES[info.type];
  if (type.dequantize === undefined) {
    throw new Error(
      `${where}: dequantizing ${info.type} is not supported; read its blocks with readTensorRaw`,
    );
  }
  if (out !== undefined && out.length < info.count) {
    throw new RangeError(`${where}: output has ${out.length} elements, needs ${info.count}`);
  }
  return type.dequantize(bytes, out ?? new Float32Array(info.count), info.count);
}

function infoOf(path: string, header: GgufHeader): GgufInfo {
  return {
    path,
    version: header.version,
    metadata: header.metadata,
    tensors: header.tensors,
    names: header.names,
    alignment: header.alignment,
    get: (key) => ggufGet(header.metadata, key),
  };
}

/**
 * Opens a GGUF file for streamed reading: reads and validates the header (growing the read until the header
 * fits), then reads each tensor on demand with positioned reads.
 * @throws Error naming the file (and key or tensor) on bad magic, unsupported version, truncation or corruption
 */
export async function openGguf(path: string): Promise<GgufFile> {
  assertLittleEndian(path);
  const src = await openFileSource(path);
  let header: GgufHeader | undefined;
  try {
    for (let want = Math.min(src.size, 1 << 20); header === undefined; want = Math.min(src.size, want * 4)) {
      try {
        header = parseGgufHeader(await src.read(0, want), src.size, path);
      } catch (e) {
        if (!(e instanceof NeedMoreBytes)) throw e;
      }
    }
  } catch (e) {
    await src.close();
    throw e;
  }
  const h = header;
  return {
    ...infoOf(path, h),
    async readTensorF32(name, out) {
      const info = lookup(h, name, path);
      return dequantize(info, await src.read(info.byteOffset, info.byteLength), out, path);
    },
    async readTensorRaw(name) {
      const info = lookup(h, name, path);
      return src.read(info.byteOffset, info.byteLength);
    },
    close: () => src.close(),
  };
}

/**
 * Parses a whole GGUF file held in memory (browsers, tests), validating exactly as {@link openGguf}.
 * @param name a label for error messages (default `"<bytes>"`)
 */
export function parseGguf(bytes: Uint8Array, name = "<bytes>"): GgufBytes {
  assertLittleEndian(name);
  const header = parseGgufHeader(bytes, bytes.length, name);
  const view = (info: GgufTensorInfo) => bytes.subarray(info.byteOffset, info.byteOffset + info.byteLength);
  return {
    ...infoOf(name, header),
    readTensorF32: (tensor, out) => {
      const info = lookup(header, tensor, name);
      return dequantize(info, view(info), out, name);
    },
    readTensorRaw: (tensor) => view(lookup(header, tensor, name)),
  };
}
