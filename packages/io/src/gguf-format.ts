// The GGUF container (versions 2 and 3), all little-endian:
//
//   u32 magic "GGUF" | u32 version | u64 tensor_count | u64 kv_count
//   kv_count × { string key | u32 value_type | value }
//   tensor_count × { string name | u32 n_dims | u64 ne[n_dims] | u32 ggml_type | u64 offset }
//   zero padding to `general.alignment` (u32, default 32)
//   tensor data; each tensor's offset (relative to here) is a multiple of the alignment
//
// string = u64 byte length | UTF-8 bytes (no NUL); array value = u32 item_type | u64 count | items.
// ne[] lists dimensions innermost first: ne[0] is the row length (contiguous), so a PyTorch/safetensors
// weight of shape [out, in] is stored with ne = [in, out]. `shape` below is ne reversed (row-major).

import { type GgmlTypeName, ggmlTypeById } from "./ggml-types";

/** GGUF metadata value type names, with their on-disk ids. */
export const GGUF_VALUE_TYPES = {
  u8: 0,
  i8: 1,
  u16: 2,
  i16: 3,
  u32: 4,
  i32: 5,
  f32: 6,
  bool: 7,
  string: 8,
  array: 9,
  u64: 10,
  i64: 11,
  f64: 12,
} as const;

/** A GGUF metadata value type name. */
export type GgufValueType = keyof typeof GGUF_VALUE_TYPES;

/** Items of a GGUF array: a typed array for numeric items, plain arrays for bool, string and nested arrays. */
export type GgufArrayItems =
  | Uint8Array
  | Int8Array
  | Uint16Array
  | Int16Array
  | Uint32Array
  | Int32Array
  | Float32Array
  | Float64Array
  | BigUint64Array
  | BigInt64Array
  | boolean[]
  | string[]
  | GgufArray[];

/** A GGUF array value. */
export interface GgufArray {
  readonly type: "array";
  readonly itemType: GgufValueType;
  readonly value: GgufArrayItems;
}

/** A typed GGUF metadata value (64-bit integers as bigint). */
export type GgufValue =
  | { readonly type: "u8" | "i8" | "u16" | "i16" | "u32" | "i32" | "f32" | "f64"; readonly value: number }
  | { readonly type: "u64" | "i64"; readonly value: bigint }
  | { readonly type: "bool"; readonly value: boolean }
  | { readonly type: "string"; readonly value: string }
  | GgufArray;

/** One tensor's entry in a GGUF file, after validation. */
export interface GgufTensorInfo {
  readonly name: string;
  readonly type: GgmlTypeName;
  /** ggml's dimension list, innermost first: `dims[0]` is the row length. */
  readonly dims: readonly number[];
  /** Row-major shape, outermost first (`dims` reversed): `[out, in]` for a weight matrix. */
  readonly shape: readonly number[];
  /** Number of elements. */
  readonly count: number;
  readonly byteLength: number;
  /** Absolute byte offset of the data in the file. */
  readonly byteOffset: number;
}

/** A parsed and validated GGUF header. */
export interface GgufHeader {
  readonly version: number;
  readonly metadata: Readonly<Record<string, GgufValue>>;
  readonly tensors: Readonly<Record<string, GgufTensorInfo>>;
  /** Tensor names in header order. */
  readonly names: readonly string[];
  readonly alignment: number;
  /** Absolute offset of the tensor data area. */
  readonly dataStart: number;
}

/** Default alignment when `general.alignment` is absent. */
export const GGUF_DEFAULT_ALIGNMENT = 32;
/** Most dimensions a ggml tensor has. */
export const GGML_MAX_DIMS = 4;

/** Thrown internally when a header parse ran off the end of a partial read of a longer file. */
export class NeedMoreBytes extends Error {}

const SCALAR_BYTES: Record<Exclude<GgufValueType, "string" | "array">, number> = {
  u8: 1,
  i8: 1,
  u16: 2,
  i16: 2,
  u32: 4,
  i32: 4,
  f32: 4,
  bool: 1,
  u64: 8,
  i64: 8,
  f64: 8,
};
const TYPE_BY_ID = Object.entries(GGUF_VALUE_TYPES).map(([k]) => k as GgufValueType);

type ArrayCtor = new (n: number) => Exclude<GgufArrayItems, boolean[] | string[] | GgufArray[]>;
const ARRAY_CTOR: Record<Exclude<GgufValueType, "string" | "array" | "bool">, ArrayCtor> = {
  u8: Uint8Array,
  i8: Int8Array,
  u16: Uint16Array,
  i16: Int16Array,
  u32: Uint32Array,
  i32: Int32Array,
  f32: Float32Array,
  u64: BigUint64Array,
  i64: BigInt64Array,
  f64: Float64Array,
};

class Cursor {
  pos = 0;
  readonly view: DataView;
  readonly decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
  constructor(
    readonly bytes: Uint8Array,
    readonly fileSize: number,
    readonly file: string,
  ) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  }
  need(n: number, what: string): void {
    if (this.pos + n <= this.bytes.length) return;
    if (this.bytes.length < this.fileSize) throw new NeedMoreBytes();
    throw new Error(
      `gguf: ${this.file}: truncated: ${what} needs ${n} bytes at offset ${this.pos}, but the file is ${this.fileSize} bytes`,
    );
  }
  u32(what: string): number {
    this.need(4, what);
    const v = this.view.getUint32(this.pos, true);
    this.pos += 4;
    return v;
  }
  u64(what: string): number {
    this.need(8, what);
    const v = this.view.getBigUint64(this.pos, true);
    this.pos += 8;
    if (v > BigInt(Number.MAX_SAFE_INTEGER))
      throw new Error(`gguf: ${this.file}: ${what} ${v} is out of range`);
    return Number(v);
  }
  string(what: string): string {
    const n = this.u64(`length of ${what}`);
    if (this.pos + n > this.fileSize) {
      throw new Error(
        `gguf: ${this.file}: truncated: ${what} is ${n} bytes at offset ${this.pos}, past the end of the file (${this.fileSize} bytes)`,
      );
    }
    this.need(n, what);
    try {
      return this.decoder.decode(this.bytes.subarray(this.pos, (this.pos += n)));
    } catch {
      throw new Error(`gguf: ${this.file}: ${what} is not valid UTF-8`);
    }
  }
  scalar(type: Exclude<GgufValueType, "string" | "array">, what: string): number | bigint | boolean {
    this.need(SCALAR_BYTES[type], what);
    const v = this.view;
    const p = this.pos;
    this.pos += SCALAR_BYTES[type];
    switch (type) {
      case "u8":
        return v.getUint8(p);
      case "i8":
        return v.getInt8(p);
      case "u16":
        return v.getUint16(p, true);
      case "i16":
        return v.getInt16(p, true);
      case "u32":
        return v.getUint32(p, true);
      case "i32":
        return v.getInt32(p, true);
      case "f32":
        return v.getFloat32(p, true);
      case "f64":
        return v.getFloat64(p, true);
      case "u64":
        return v.getBigUint64(p, true);
      case "i64":
        return v.getBigInt64(p, true);
      case "bool": {
        const b = v.getUint8(p);
        if (b > 1) throw new Error(`gguf: ${this.file}: ${what}: bool byte ${b} is not 0 or 1`);
        return b === 1;
      }
    }
  }
  valueType(what: string): GgufValueType {
    const id = this.u32(`type of ${what}`);
    const type = TYPE_BY_ID[id];
    if (type === undefined) throw new Error(`gguf: ${this.file}: ${what}: unknown value type ${id}`);
    return type;
  }
  array(what: string, depth: number): GgufArray {
    const itemType = this.valueType(`items of ${what}`);
    const count = this.u64(`item count of ${what}`);
    const min = itemType === "string" || itemType === "array" ? 8 : SCALAR_BYTES[itemType];
    if (count * min > this.fileSize - this.pos) {
      throw new Error(
        `gguf: ${this.file}: truncated: ${what}: array of ${count} ${itemType} items cannot fit in the ${this.fileSize - this.pos} bytes left in the file`,
      );
    }
    if (itemType === "string") {
      const items: string[] = new Array(count);
      for (let i = 0; i < count; i++) items[i] = this.string(`${what}[${i}]`);
      return { type: "array", itemType, value: items };
    }
    if (itemType === "array") {
      if (depth > 8) throw new Error(`gguf: ${this.file}: ${what}: arrays nested too deeply`);
      const items: GgufArray[] = new Array(count);
      for (let i = 0; i < count; i++) {
        const inner = this.valueType(`${what}[${i}]`);
        if (inner !== "array")
          throw new Error(`gguf: ${this.file}: ${what}[${i}]: expected an array, got ${inner}`);
        items[i] = this.array(`${what}[${i}]`, depth + 1);
      }
      return { type: "array", itemType, value: items };
    }
    if (itemType === "bool") {
      const items: boolean[] = new Array(count);
      for (let i = 0; i < count; i++) items[i] = this.scalar("bool", `${what}[${i}]`) as boolean;
      return { type: "array", itemType, value: items };
    }
    const size = SCALAR_BYTES[itemType];
    this.need(count * size, what);
    const items = new ARRAY_CTOR[itemType](count);
    new Uint8Array(items.buffer).set(this.bytes.subarray(this.pos, this.pos + count * size));
    this.pos += count * size;
    return { type: "array", itemType, value: items };
  }
  value(type: GgufValueType, what: string): GgufValue {
    if (type === "string") return { type, value: this.string(what) };
    if (type === "array") return this.array(what, 0);
    return { type, value: this.scalar(type, what) } as GgufValue;
  }
}

/**
 * Parses and validates a GGUF header from the first `bytes.length` bytes of a file of `fileSize` bytes.
 * Throws {@link NeedMoreBytes} when `bytes` is a prefix that ends inside the header (read more and retry).
 * Validates: magic, version (2 or 3), counts, every value type, alignment (a power of two), each tensor's
 * n_dims (1..4), ggml type, row length (a multiple of the block size), offset (aligned), and that every tensor's
 * data lies inside the file without overlapping another.
 * @throws Error naming the file and the key or tensor
 */
export function parseGgufHeader(bytes: Uint8Array, fileSize: number, file: string): GgufHeader {
  const c = new Cursor(bytes, fileSize, file);
  if (fileSize < 4) throw new Error(`gguf: ${file}: file is ${fileSize} bytes, too short for the GGUF magic`);
  c.need(4, "magic");
  if (bytes[0] !== 0x47 || bytes[1] !== 0x47 || bytes[2] !== 0x55 || bytes[3] !== 0x46) {
    const got = [...bytes.subarray(0, 4)].map((b) => b.toString(16).padStart(2, "0")).join(" ");
    throw new Error(`gguf: ${file}: bad magic: expected "GGUF" (47 47 55 46), got ${got}`);
  }
  c.pos = 4;
  const version = c.u32("version");
  if (version !== 2 && version !== 3) {
    if (version === 1) throw new Error(`gguf: ${file}: GGUF version 1 is not supported (only 2 and 3)`);
    if ((version & 0xffff) === 0) throw new Error(`gguf: ${file}: big-endian GGUF files are not supported`);
    throw new Error(`gguf: ${file}: unsupported GGUF version ${version} (only 2 and 3)`);
  }
  const tensorCount = c.u64("tensor count");
  const kvCount = c.u64("metadata count");
  if (tensorCount * 24 > fileSize || kvCount * 13 > fileSize) {
    throw new Error(
      `gguf: ${file}: ${tensorCount} tensors and ${kvCount} metadata entries cannot fit in ${fileSize} bytes (corrupt or truncated)`,
    );
  }
  const metadata: Record<string, GgufValue> = Object.create(null);
  for (let i = 0; i < kvCount; i++) {
    const key = c.string(`metadata key #${i}`);
    if (Object.hasOwn(metadata, key)) throw new Error(`gguf: ${file}: duplicate metadata key "${key}"`);
    metadata[key] = c.value(c.valueType(`metadata "${key}"`), `metadata "${key}"`);
  }
  let alignment = GGUF_DEFAULT_ALIGNMENT;
  const a = metadata["general.alignment"];
  if (a !== undefined) {
    if (a.type !== "u32" || a.value === 0 || (a.value & (a.value - 1)) !== 0) {
      throw new Error(
        `gguf: ${file}: general.alignment must be a u32 power of two, got ${a.type} ${String(a.value)}`,
      );
    }
    alignment = a.value;
  }
  const tensors: Record<string, GgufTensorInfo> = Object.create(null);
  const names: string[] = [];
  const raw: { name: string; offset: number; dims: number[]; typeId: number }[] = [];
  for (let i = 0; i < tensorCount; i++) {
    const name = c.string(`tensor name #${i}`);
    const nDims = c.u32(`n_dims of tensor "${name}"`);
    if (nDims < 1 || nDims > GGML_MAX_DIMS) {
      throw new Error(`gguf: ${file}: tensor "${name}": n_dims ${nDims} is not in 1..${GGML_MAX_DIMS}`);
    }
    const dims: number[] = [];
    for (let d = 0; d < nDims; d++) dims.push(c.u64(`ne[${d}] of tensor "${name}"`));
    const typeId = c.u32(`type of tensor "${name}"`);
    const offset = c.u64(`offset of tensor "${name}"`);
    raw.push({ name, offset, dims, typeId });
  }
  const dataStart = Math.ceil(c.pos / alignment) * alignment;
  const spans: { name: string; begin: number; end: number }[] = [];
  for (const { name, offset, dims, typeId } of raw) {
    const where = `gguf: ${file}: tensor "${name}"`;
    if (Object.hasOwn(tensors, name)) throw new Error(`${where}: duplicate tensor name`);
    const type = ggmlTypeById(typeId);
    if (type === undefined) throw new Error(`${where}: unknown ggml type id ${typeId}`);
    let count = 1;
    for (const d of dims) {
      count *= d;
      if (!Number.isSafeInteger(count))
        throw new Error(`${where}: dims [${dims.join(", ")}] have too many elements`);
    }
    if (dims[0] % type.blockSize !== 0) {
      throw new Error(
        `${where}: row length ne[0] = ${dims[0]} is not a multiple of the ${type.name} block size ${type.blockSize}`,
      );
    }
    if (offset % alignment !== 0)
      throw new Error(`${where}: offset ${offset} is not a multiple of the alignment ${alignment}`);
    const byteLength = (count / type.blockSize) * type.blockBytes;
    const begin = dataStart + offset;
    if (begin + byteLength > fileSize) {
      throw new Error(
        `${where}: data [${begin}, ${begin + byteLength}) runs past the end of the file (${fileSize} bytes; truncated?)`,
      );
    }
    tensors[name] = {
      name,
      type: type.name,
      dims,
      shape: [...dims].reverse(),
      count,
      byteLength,
      byteOffset: begin,
    };
    names.push(name);
    spans.push({ name, begin, end: begin + byteLength });
  }
  spans.sort((x, y) => x.begin - y.begin || x.end - y.end);
  for (let i = 1; i < spans.length; i++) {
    if (spans[i].begin < spans[i - 1].end) {
      throw new Error(
        `gguf: ${file}: tensor "${spans[i].name}": data overlaps tensor "${spans[i - 1].name}"`,
      );
    }
  }
  if (tensorCount > 0 && dataStart > fileSize) {
    throw new Error(
      `gguf: ${file}: truncated: tensor data starts at ${dataStart}, past the end of the file (${fileSize})`,
    );
  }
  return { version, metadata, tensors, names, alignment, dataStart };
}

/** Plain value of a metadata entry (`undefined` if absent): number, bigint, boolean, string or array items. */
export function ggufGet(
  metadata: Readonly<Record<string, GgufValue>>,
  key: string,
): GgufValue["value"] | undefined {
  return Object.hasOwn(metadata, key) ? metadata[key].value : undefined;
}

/**
 * A numeric metadata entry as a number (`undefined` if absent), for config mapping: any integer or float type;
 * u64/i64 values must be safe integers.
 * @throws Error naming the file and key when the entry is not a number
 */
export function ggufNumber(
  metadata: Readonly<Record<string, GgufValue>>,
  key: string,
  file = "<gguf>",
): number | undefined {
  if (!Object.hasOwn(metadata, key)) return undefined;
  const v = metadata[key];
  if (typeof v.value === "number") return v.value;
  if (typeof v.value === "bigint") {
    if (v.value > BigInt(Number.MAX_SAFE_INTEGER) || v.value < BigInt(Number.MIN_SAFE_INTEGER)) {
      throw new Error(`gguf: ${file}: metadata "${key}" = ${v.value} is too large for a number`);
    }
    return Number(v.value);
  }
  throw new Error(`gguf: ${file}: metadata "${key}" must be a number, got ${v.type}`);
}

/**
 * A string metadata entry (`undefined` if absent).
 * @throws Error naming the file and key when the entry is not a string
 */
export function ggufString(
  metadata: Readonly<Record<string, GgufValue>>,
  key: string,
  file = "<gguf>",
): string | undefined {
  if (!Object.hasOwn(metadata, key)) return undefined;
  const v = metadata[key];
  if (v.type !== "string")
    throw new Error(`gguf: ${file}: metadata "${key}" must be a string, got ${v.type}`);
  return v.value;
}
