// Reading safetensors: from a local file with positioned reads (tensor by tensor), or from bytes in memory.

import { type FileSource, openFileSource } from "./file-source";
import {
  assertLittleEndian,
  decodeFloatTensor,
  parseSafetensorsHeader,
  readSafetensorsHeaderLength,
  SAFETENSORS_DTYPES,
  type SafetensorsDtype,
  type SafetensorsHeader,
  type SafetensorsTensorInfo,
  type SafetensorsTypedArray,
} from "./safetensors-format";

/** A tensor's raw values: the typed array of its dtype (F16/BF16 as bit patterns, BOOL/F8 as bytes). */
export interface RawTensor {
  readonly dtype: SafetensorsDtype;
  readonly shape: readonly number[];
  readonly data: SafetensorsTypedArray;
}

/** What both readers share: the validated header. */
export interface SafetensorsInfo {
  /** The file path (or the label given to {@link parseSafetensors}), used in every error. */
  readonly path: string;
  /** The `__metadata__` string map (empty if absent). */
  readonly metadata: Readonly<Record<string, string>>;
  /** Tensors by name: dtype, row-major shape, byte length, absolute byte offset. */
  readonly tensors: Readonly<Record<string, SafetensorsTensorInfo>>;
  /** Tensor names in file order. */
  readonly names: readonly string[];
}

/** A safetensors file opened for streamed reading; each read touches only that tensor's bytes. */
export interface SafetensorsFile extends SafetensorsInfo {
  /**
   * Reads a floating-point tensor (F32, F16, BF16, F64, F8_*) as float32, into `out` when given
   * (it must hold at least product(shape) values) or a new array.
   */
  readF32(name: string, out?: Float32Array): Promise<Float32Array>;
  /** Reads any tensor's raw values as the typed array of its dtype (a fresh, aligned copy). */
  readRaw(name: string): Promise<RawTensor>;
  /** Closes the file. */
  close(): Promise<void>;
}

/** A safetensors file parsed from bytes in memory (for browsers); the same reads, synchronous. */
export interface SafetensorsBytes extends SafetensorsInfo {
  /** As {@link SafetensorsFile.readF32}, synchronous. */
  readF32(name: string, out?: Float32Array): Float32Array;
  /** As {@link SafetensorsFile.readRaw}, synchronous; the data is a copy (so it is aligned). */
  readRaw(name: string): RawTensor;
}

function lookup(header: SafetensorsHeader, name: string, file: string): SafetensorsTensorInfo {
  if (!Object.hasOwn(header.tensors, name)) {
    const some = header.names.slice(0, 5).join(", ");
    throw new Error(
      `safetensors: ${file}: no tensor named "${name}" (the file has ${header.names.length}: ${some}${header.names.length > 5 ? ", ..." : ""})`,
    );
  }
  return header.tensors[name];
}

function outputFor(info: SafetensorsTensorInfo, out: Float32Array | undefined, where: string): Float32Array {
  const count = info.byteLength / SAFETENSORS_DTYPES[info.dtype].bytes;
  if (!SAFETENSORS_DTYPES[info.dtype].float) {
    throw new Error(`${where}: dtype ${info.dtype} is not a float type; read it with readRaw`);
  }
  if (out === undefined) return new Float32Array(count);
  if (out.length < count) throw new RangeError(`${where}: output has ${out.length} elements, needs ${count}`);
  return out;
}

function rawView(info: SafetensorsTensorInfo, bytes: Uint8Array): SafetensorsTypedArray {
  const d = SAFETENSORS_DTYPES[info.dtype];
  return new d.array(bytes.buffer, bytes.byteOffset, info.byteLength / d.bytes);
}

/**
 * Opens a safetensors file for streamed reading. Reads and validates only the header (every tensor's dtype,
 * shape and offsets against the file length); tensor data is read on demand with positioned reads.
 * @throws Error naming the file (and tensor) on a truncated or corrupt file
 */
export async function openSafetensors(path: string): Promise<SafetensorsFile> {
  assertLittleEndian(path);
  const src: FileSource = await openFileSource(path);
  let header: SafetensorsHeader;
  try {
    const first = await src.read(0, Math.min(8, src.size));
    const n = readSafetensorsHeaderLength(first, src.size, path);
    header = parseSafetensorsHeader(await src.read(8, n), src.size, path);
  } catch (e) {
    await src.close();
    throw e;
  }
  return {
    path,
    metadata: header.metadata,
    tensors: header.tensors,
    names: header.names,
    async readF32(name, out) {
      const info = lookup(header, name, path);
      const where = `safetensors: ${path}: tensor "${name}"`;
      const target = outputFor(info, out, where);
      if (info.dtype === "F32") {
        await src.readInto(
          info.byteOffset,
          new Uint8Array(target.buffer, target.byteOffset, info.byteLength),
        );
        return target;
      }
      const bytes = await src.read(info.byteOffset, info.byteLength);
      return decodeFloatTensor(
        info.dtype,
        bytes,
        info.byteLength / SAFETENSORS_DTYPES[info.dtype].bytes,
        target,
        where,
      );
    },
    async readRaw(name) {
      const info = lookup(header, name, path);
      const bytes = await src.read(info.byteOffset, info.byteLength);
      return { dtype: info.dtype, shape: info.shape, data: rawView(info, bytes) };
    },
    close: () => src.close(),
  };
}

/**
 * Parses a whole safetensors file held in memory (browsers, tests). Validates exactly as {@link openSafetensors}.
 * @param name a label for error messages (default `"<bytes>"`)
 */
export function parseSafetensors(bytes: Uint8Array, name = "<bytes>"): SafetensorsBytes {
  assertLittleEndian(name);
  const n = readSafetensorsHeaderLength(bytes.subarray(0, 8), bytes.length, name);
  const header = parseSafetensorsHeader(bytes.subarray(8, 8 + n), bytes.length, name);
  const copy = (info: SafetensorsTensorInfo) =>
    bytes.slice(info.byteOffset, info.byteOffset + info.byteLength);
  return {
    path: name,
    metadata: header.metadata,
    tensors: header.tensors,
    names: header.names,
    readF32(tensor, out) {
      const info = lookup(header, tensor, name);
      const where = `safetensors: ${name}: tensor "${tensor}"`;
      const target = outputFor(info, out, where);
      return decodeFloatTensor(
        info.dtype,
        copy(info),
        info.byteLength / SAFETENSORS_DTYPES[info.dtype].bytes,
        target,
        where,
      );
    },
    readRaw(tensor) {
      const info = lookup(header, tensor, name);
      return { dtype: info.dtype, shape: info.shape, data: rawView(info, copy(info)) };
    },
  };
}
