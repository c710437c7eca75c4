// The safetensors layout, its dtype table, and header validation against the file length.
//
//   u64 LE  N                      header length in bytes (at most 100 MB)
//   u8[N]   header                 UTF-8 JSON, right-padded with spaces; starts with '{'
//   u8[...] data                   tensors back to back, little-endian, row-major
//
// header = { "__metadata__"?: { string: string }, NAME: { dtype, shape: int[], data_offsets: [begin, end] } }
// where data_offsets are relative to the start of the data area. The tensors must tile the data area exactly:
// sorted by begin they start at 0, each begins where the previous ends, and the last ends at the file's end.

import { bf16ToF32, f16BitsToF32, f16ToF32 } from "./half";

/** Every safetensors dtype this package reads (sub-byte F4/F6 types are rejected with a clear error). */
export type SafetensorsDtype =
  | "BOOL"
  | "U8"
  | "I8"
  | "F8_E5M2"
  | "F8_E4M3"
  | "F8_E8M0"
  | "I16"
  | "U16"
  | "F16"
  | "BF16"
  | "I32"
  | "U32"
  | "F32"
  | "F64"
  | "I64"
  | "U64";

/** Typed array `readRaw` returns for a dtype (F16/BF16 as bit patterns, F8 and BOOL as bytes). */
export type SafetensorsTypedArray =
  | Uint8Array
  | Int8Array
  | Int16Array
  | Uint16Array
  | Int32Array
  | Uint32Array
  | Float32Array
  | Float64Array
  | BigInt64Array
  | BigUint64Array;

type TypedArrayCtor = {
  new (buffer: ArrayBufferLike, byteOffset: number, length: number): SafetensorsTypedArray;
  readonly BYTES_PER_ELEMENT: number;
};

/** Facts about one dtype: bytes per element, the typed array of its raw values, whether `readF32` converts it. */
export interface SafetensorsDtypeInfo {
  readonly bytes: number;
  /** Position in the reference writer's dtype order (it writes larger ranks first, so data stays aligned). */
  readonly rank: number;
  readonly array: TypedArrayCtor;
  /** True for floating-point dtypes, which `readF32` converts; integer and BOOL tensors are read with `readRaw`. */
  readonly float: boolean;
}

/**
 * The dtype table: bytes per element, raw typed array, and writer order (the rank of the Rust `Dtype` enum,
 * by which the reference writer sorts tensors, largest first).
 */
export const SAFETENSORS_DTYPES: Readonly<Record<SafetensorsDtype, SafetensorsDtypeInfo>> = {
  BOOL: { bytes: 1, rank: 0, array: Uint8Array, float: false },
  U8: { bytes: 1, rank: 4, array: Uint8Array, float: false },
  I8: { bytes: 1, rank: 5, array: Int8Array, float: false },
  F8_E5M2: { bytes: 1, rank: 6, array: Uint8Array, float: true },
  F8_E4M3: { bytes: 1, rank: 7, array: Uint8Array, float: true },
  F8_E8M0: { bytes: 1, rank: 8, array: Uint8Array, float: true },
  I16: { bytes: 2, rank: 9, array: Int16Array, float: false },
  U16: { bytes: 2, rank: 10, array: Uint16Array, float: false },
  F16: { bytes: 2, rank: 11, array: Uint16Array, float: true },
  BF16: { bytes: 2, rank: 12, array: Uint16Array, float: true },
  I32: { bytes: 4, rank: 13, array: Int32Array, float: false },
  U32: { bytes: 4, rank: 14, array: Uint32Array, float: false },
  F32: { bytes: 4, rank: 15, array: Float32Array, float: true },
  F64: { bytes: 8, rank: 17, array: Float64Array, float: true },
  I64: { bytes: 8, rank: 18, array: BigInt64Array, float: false },
  U64: { bytes: 8, rank: 19, array: BigUint64Array, float: false },
};

/** Largest header the reference implementation accepts (100 MB). */
export const SAFETENSORS_MAX_HEADER = 100_000_000;

/** One tensor's entry in a safetensors header, after validation. */
export interface SafetensorsTensorInfo {
  readonly dtype: SafetensorsDtype;
  /** Row-major shape (outermost first), as written. `[]` is a scalar. */
  readonly shape: readonly number[];
  /** Bytes of data: product(shape) × bytes per element. */
  readonly byteLength: number;
  /** Absolute byte offset of the data in the file (8 + header length + data_offsets[0]). */
  readonly byteOffset: number;
}

/** A validated header: metadata, tensors by name, and the names in file order. */
export interface SafetensorsHeader {
  readonly metadata: Readonly<Record<string, string>>;
  readonly tensors: Readonly<Record<string, SafetensorsTensorInfo>>;
  /** Tensor names in the order their data appears in the file. */
  readonly names: readonly string[];
  /** Absolute offset of the data area (8 + header length). */
  readonly dataStart: number;
}

const isLittleEndian = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Throws unless the platform is little-endian (safetensors and GGUF data are little-endian). */
export function assertLittleEndian(file: string): void {
  if (!isLittleEndian) throw new Error(`io: ${file}: big-endian platforms are not supported`);
}

/** Number of elements of a shape; throws naming the tensor if it is not a list of non-negative integers. */
export function shapeSize(shape: unknown, where: string): number {
  if (!Array.isArray(shape))
    throw new Error(`${where}: shape must be an array of integers, got ${JSON.stringify(shape)}`);
  let n = 1;
  for (const d of shape) {
    if (!Number.isSafeInteger(d) || d < 0) {
      throw new Error(
        `${where}: shape ${JSON.stringify(shape)} has a dimension that is not a non-negative integer`,
      );
    }
    n *= d;
    if (!Number.isSafeInteger(n))
      throw new Error(`${where}: shape ${JSON.stringify(shape)} has too many elements`);
  }
  return n;
}

/**
 * Reads the 8-byte little-endian header length and checks it against the file length.
 * @param first8 the first 8 bytes of the file (or fewer if the file is shorter)
 */
export function readSafetensorsHeaderLength(first8: Uint8Array, fileSize: number, file: string): number {
  if (fileSize < 8 || first8.length < 8) {
    throw new Error(
      `safetensors: ${file}: file is ${fileSize} bytes, too short for the 8-byte header length`,
    );
  }
  const dv = new DataView(first8.buffer, first8.byteOffset, 8);
  const lo = dv.getUint32(0, true);
  const hi = dv.getUint32(4, true);
  const n = hi * 2 ** 32 + lo;
  if (hi >= 2 ** 21 || n > SAFETENSORS_MAX_HEADER) {
    throw new Error(
      `safetensors: ${file}: header length ${n} exceeds the ${SAFETENSORS_MAX_HEADER}-byte limit`,
    );
  }
  if (n < 2) throw new Error(`safetensors: ${file}: header length ${n} is too small to hold a JSON object`);
  if (8 + n > fileSize) {
    throw new Error(
      `safetensors: ${file}: header length ${n} runs past the end of the file (${fileSize} bytes; truncated?)`,
    );
  }
  return n;
}

/**
 * Parses and validates the JSON header against the file length: every tensor has a known dtype, a valid shape,
 * data_offsets whose span equals product(shape) × dtype size, and the tensors tile the data area exactly
 * (no gap, no overlap, nothing past the end, nothing left over).
 * @param json the `headerLength` header bytes
 * @throws Error naming the file and, where there is one, the tensor
 */
export function parseSafetensorsHeader(json: Uint8Array, fileSize: number, file: string): SafetensorsHeader {
  const headerLength = json.length;
  const dataStart = 8 + headerLength;
  const dataLength = fileSize - dataStart;
  if (json[0] !== 0x7b) throw new Error(`safetensors: ${file}: header does not start with '{'`);
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(json);
  } catch {
    throw new Error(`safetensors: ${file}: header is not valid UTF-8`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new Error(`safetensors: ${file}: header is not valid JSON: ${(e as Error).message}`);
  }
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
    throw new Error(`safetensors: ${file}: header must be a JSON object`);
  }
  const metadata: Record<string, string> = Object.create(null);
  const tensors: Record<string, SafetensorsTensorInfo> = Object.create(null);
  const spans: { name: string; begin: number; end: number }[] = [];
  for (const [name, entry] of Object.entries(parsed as Record<string, unknown>)) {
    if (name === "__metadata__") {
      if (entry === null || typeof entry !== "object" || Array.isArray(entry)) {
        throw new Error(`safetensors: ${file}: __metadata__ must be an object of strings`);
      }
      for (const [k, v] of Object.entries(entry as Record<string, unknown>)) {
        if (typeof v !== "string") {
          throw new Error(
            `safetensors: ${file}: __metadata__["${k}"] must be a string, got ${JSON.stringify(v)}`,
          );
        }
        metadata[k] = v;
      }
      continue;
    }
    const where = `safetensors: ${file}: tensor "${name}"`;
    if (entry === null || typeof entry !== "object" || Array.isArray(entry)) {
      throw new Error(`${where}: entry must be an object with dtype, shape and data_offsets`);
    }
    const { dtype, shape, data_offsets: offsets } = entry as Record<string, unknown>;
    if (typeof dtype !== "string" || !Object.hasOwn(SAFETENSORS_DTYPES, dtype)) {
      throw new Error(
        `${where}: unknown or unsupported dtype ${JSON.stringify(dtype)} (supported: ${Object.keys(SAFETENSORS_DTYPES).join(", ")})`,
      );
    }
    const info = SAFETENSORS_DTYPES[dtype as SafetensorsDtype];
    const count = shapeSize(shape, where);
    if (
      !Array.isArray(offsets) ||
      offsets.length !== 2 ||
      !Number.isSafeInteger(offsets[0]) ||
      !Number.isSafeInteger(offsets[1]) ||
      offsets[0] < 0 ||
      offsets[1] < offsets[0]
    ) {
      throw new Error(
        `${where}: data_offsets must be [begin, end] with 0 <= begin <= end, got ${JSON.stringify(offsets)}`,
      );
    }
    const [begin, end] = offsets as [number, number];
    if (end > dataLength) {
      throw new Error(
        `${where}: data_offsets [${begin}, ${end}] run past the end of the file (data area is ${Math.max(0, dataLength)} bytes; truncated?)`,
      );
    }
    const byteLength = count * info.bytes;
    if (byteLength !== end - begin) {
      throw new Error(
        `${where}: shape ${JSON.stringify(shape)} × ${dtype} (${info.bytes} bytes) is ${byteLength} bytes, but data_offsets [${begin}, ${end}] span ${end - begin}`,
      );
    }
    tensors[name] = {
      dtype: dtype as SafetensorsDtype,
      shape: [...(shape as number[])],
      byteLength,
      byteOffset: dataStart + begin,
    };
    spans.push({ name, begin, end });
  }
  spans.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let cursor = 0;
  for (let i = 0; i < spans.length; i++) {
    const s = spans[i];
    if (s.begin < cursor) {
      throw new Error(
        `safetensors: ${file}: tensor "${s.name}": data_offsets [${s.begin}, ${s.end}] overlap tensor "${spans[i - 1].name}"`,
      );
    }
    if (s.begin > cursor) {
      throw new Error(
        `safetensors: ${file}: tensor "${s.name}": data_offsets begin at ${s.begin}, leaving a gap after byte ${cursor}`,
      );
    }
    cursor = s.end;
  }
  if (cursor !== dataLength) {
    throw new Error(
      `safetensors: ${file}: tensors cover ${cursor} bytes but the data area is ${dataLength} bytes (trailing or missing data)`,
    );
  }
  return { metadata, tensors, names: spans.map((s) => s.name), dataStart };
}

function f8e4m3ToF32(b: number): number {
  const sign = b & 0x80 ? -1 : 1;
  const e = (b >>> 3) & 0xf;
  const m = b & 7;
  if (e === 15 && m === 7) return Number.NaN; // E4M3FN: no infinities, one NaN per sign
  if (e === 0) return sign * m * 2 ** -9;
  return sign * (8 + m) * 2 ** (e - 10);
}

/**
 * Converts the raw little-endian bytes of a floating-point tensor to float32, into `out`.
 * `bytes` must start at a multiple of the element size (fresh buffers always do).
 */
export function decodeFloatTensor(
  dtype: SafetensorsDtype,
  bytes: Uint8Array,
  count: number,
  out: Float32Array,
  where: string,
): Float32Array {
  switch (dtype) {
    case "F32":
      out.set(new Float32Array(bytes.buffer, bytes.byteOffset, count));
      return out;
    case "F64": {
      const src = new Float64Array(bytes.buffer, bytes.byteOffset, count);
      for (let i = 0; i < count; i++) out[i] = src[i];
      return out;
    }
    case "F16":
      return f16ToF32(new Uint16Array(bytes.buffer, bytes.byteOffset, count), out);
    case "BF16":
      return bf16ToF32(new Uint16Array(bytes.buffer, bytes.byteOffset, count), out);
    case "F8_E5M2":
      for (let i = 0; i < count; i++) out[i] = f16BitsToF32(bytes[i] << 8);
      return out;
    case "F8_E4M3":
      for (let i = 0; i < count; i++) out[i] = f8e4m3ToF32(bytes[i]);
      return out;
    case "F8_E8M0":
      for (let i = 0; i < count; i++) out[i] = bytes[i] === 255 ? Number.NaN : 2 ** (bytes[i] - 127);
      return out;
    default:
      throw new Error(`${where}: dtype ${dtype} is not a float type; read it with readRaw`);
  }
}
