// Writing GGUF version 3 files that llama.cpp reads: typed metadata in the order given, tensor infos with
// ne = shape reversed, data aligned to `general.alignment` (default 32) with every tensor padded to it.

import { writeFileAtomicStream } from "./atomic-write";
import { GGML_TYPES, type GgmlTypeName } from "./ggml-types";
import {
  GGML_MAX_DIMS,
  GGUF_DEFAULT_ALIGNMENT,
  GGUF_VALUE_TYPES,
  type GgufArray,
  type GgufValue,
} from "./gguf-format";

/** One tensor to write. */
export interface GgufWriteTensor {
  /** At most 63 bytes of UTF-8 (llama.cpp's limit). */
  readonly name: string;
  /**
   * The ggml type to store. With `data` it must be one this package quantizes: F32, F16, BF16, Q8_0, Q4_0, Q4_1.
   * With `raw`, any registry type (the blocks are written as given).
   */
  readonly type: GgmlTypeName;
  /** Row-major shape, outermost first (`[out, in]` for a weight); stored as ne = shape reversed. */
  readonly shape: readonly number[];
  /** Float values, product(shape) of them, quantized to `type` with the reference round-to-nearest quantizer. */
  readonly data?: Float32Array;
  /** Already-encoded ggml blocks (exactly the type's byte size for `shape`). */
  readonly raw?: Uint8Array;
}

/** What {@link writeGguf} writes. */
export interface GgufWriteInput {
  /** Typed metadata, written in insertion order (put `general.architecture` first, as llama.cpp's writer does). */
  readonly metadata: Readonly<Record<string, GgufValue>>;
  readonly tensors: readonly GgufWriteTensor[];
}

const enc = new TextEncoder();

class ByteWriter {
  private buf = new Uint8Array(1024);
  private view = new DataView(this.buf.buffer);
  length = 0;
  private grow(n: number): void {
    if (this.length + n <= this.buf.length) return;
    const next = new Uint8Array(Math.max(this.buf.length * 2, this.length + n));
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }
  bytes(b: Uint8Array): void {
    this.grow(b.length);
    this.buf.set(b, this.length);
    this.length += b.length;
  }
  u32(v: number): void {
    this.grow(4);
    this.view.setUint32(this.length, v, true);
    this.length += 4;
  }
  u64(v: number | bigint): void {
    this.grow(8);
    this.view.setBigUint64(this.length, BigInt(v), true);
    this.length += 8;
  }
  string(s: string): void {
    const b = enc.encode(s);
    this.u64(b.length);
    this.bytes(b);
  }
  pad(alignment: number): void {
    const n = (alignment - (this.length % alignment)) % alignment;
    this.grow(n);
    this.buf.fill(0, this.length, this.length + n);
    this.length += n;
  }
  scalar(type: GgufValue["type"], v: unknown, what: string): void {
    const bad = () => new Error(`gguf: metadata ${what}: ${String(v)} is not a valid ${type}`);
    const int = (lo: number, hi: number) => {
      if (typeof v !== "number" || !Number.isInteger(v) || v < lo || v > hi) throw bad();
    };
    this.grow(8);
    const p = this.length;
    const dv = this.view;
    switch (type) {
      case "u8":
        int(0, 255);
        dv.setUint8(p, v as number);
        this.length += 1;
        return;
      case "i8":
        int(-128, 127);
        dv.setInt8(p, v as number);
        this.length += 1;
        return;
      case "u16":
        int(0, 65535);
        dv.setUint16(p, v as number, true);
        this.length += 2;
        return;
      case "i16":
        int(-32768, 32767);
        dv.setInt16(p, v as number, true);
        this.length += 2;
        return;
      case "u32":
        int(0, 4294967295);
        dv.setUint32(p, v as number, true);
        this.length += 4;
        return;
      case "i32":
        int(-2147483648, 2147483647);
        dv.setInt32(p, v as number, true);
        this.length += 4;
        return;
      case "f32":
        if (typeof v !== "number") throw bad();
        dv.setFloat32(p, v, true);
        this.length += 4;
        return;
      case "f64":
        if (typeof v !== "number") throw bad();
        dv.setFloat64(p, v, true);
        this.length += 8;
        return;
      case "u64":
      case "i64": {
        const b =
          typeof v === "bigint"
            ? v
            : typeof v === "number" && Number.isSafeInteger(v)
              ? BigInt(v)
              : undefined;
        if (b === undefined) throw bad();
        if (type === "u64" ? b < 0n || b >= 1n << 64n : b < -(1n << 63n) || b >= 1n << 63n) throw bad();
        if (type === "u64") dv.setBigUint64(p, b, true);
        else dv.setBigInt64(p, b, true);
        this.length += 8;
        return;
      }
      case "bool":
        if (typeof v !== "boolean") throw bad();
        dv.setUint8(p, v ? 1 : 0);
        this.length += 1;
        return;
      default:
        throw bad();
    }
  }
  array(a: GgufArray, what: string): void {
    if (!Object.hasOwn(GGUF_VALUE_TYPES, a.itemType))
      throw new Error(`gguf: metadata ${what}: unknown item type ${a.itemType}`);
    if (a.itemType === "array") {
      throw new Error(
        `gguf: metadata ${what}: arrays of arrays are not written (llama.cpp does not read them)`,
      );
    }
    this.u32(GGUF_VALUE_TYPES[a.itemType]);
    const items = a.value as ArrayLike<unknown>;
    this.u64(items.length);
    for (let i = 0; i < items.length; i++) {
      const item = items[i];
      if (a.itemType === "string") {
        if (typeof item !== "string") throw new Error(`gguf: metadata ${what}[${i}] is not a string`);
        this.string(item);
      } else {
        this.scalar(a.itemType, item, `${what}[${i}]`);
      }
    }
  }
  value(v: GgufValue, what: string): void {
    if (v === null || typeof v !== "object" || !Object.hasOwn(GGUF_VALUE_TYPES, v.type)) {
      throw new Error(`gguf: metadata ${what}: not a typed value ({ type, value })`);
    }
    this.u32(GGUF_VALUE_TYPES[v.type]);
    if (v.type === "string") {
      if (typeof v.value !== "string") throw new Error(`gguf: metadata ${what}: value is not a string`);
      this.string(v.value);
    } else if (v.type === "array") this.array(v, what);
    else this.scalar(v.type, v.value, what);
  }
  result(): Uint8Array {
    return this.buf.subarray(0, this.length);
  }
}

interface Planned {
  tensor: GgufWriteTensor;
  byteLength: number;
  offset: number;
}

function plan(input: GgufWriteInput): {
  header: Uint8Array;
  planned: Planned[];
  alignment: number;
  total: number;
} {
  const a = input.metadata["general.alignment"];
  let alignment = GGUF_DEFAULT_ALIGNMENT;
  if (a !== undefined) {
    if (a.type !== "u32" || a.value === 0 || (a.value & (a.value - 1)) !== 0) {
      throw new Error(`gguf: metadata general.alignment must be a u32 power of two`);
    }
    alignment = a.value;
  }
  const w = new ByteWriter();
  w.bytes(enc.encode("GGUF"));
  w.u32(3);
  w.u64(input.tensors.length);
  const keys = Object.keys(input.metadata);
  w.u64(keys.length);
  for (const key of keys) {
    w.string(key);
    w.value(input.metadata[key], `"${key}"`);
  }
  const planned: Planned[] = [];
  const seen = new Set<string>();
  let offset = 0;
  for (const t of input.tensors) {
    const where = `gguf: tensor "${t.name}"`;
    if (seen.has(t.name)) throw new Error(`${where}: duplicate tensor name`);
    seen.add(t.name);
    if (enc.encode(t.name).length > 63)
      throw new Error(`${where}: name is longer than 63 bytes (llama.cpp's limit)`);
    if (!Object.hasOwn(GGML_TYPES, t.type))
      throw new Error(`${where}: unknown ggml type ${JSON.stringify(t.type)}`);
    const type = GGML_TYPES[t.type];
    if (!Array.isArray(t.shape) || t.shape.length < 1 || t.shape.length > GGML_MAX_DIMS) {
      throw new Error(`${where}: shape must have 1 to ${GGML_MAX_DIMS} dimensions`);
    }
    let count = 1;
    for (const d of t.shape) {
      if (!Number.isSafeInteger(d) || d < 0)
        throw new Error(`${where}: shape ${JSON.stringify(t.shape)} is not valid`);
      count *= d;
    }
    const rowLength = t.shape[t.shape.length - 1];
    if (rowLength % type.blockSize !== 0) {
      throw new Error(
        `${where}: row length ${rowLength} (last dimension of shape ${JSON.stringify(t.shape)}) is not a multiple of the ${t.type} block size ${type.blockSize}`,
      );
    }
    const byteLength = (count / type.blockSize) * type.blockBytes;
    if ((t.data === undefined) === (t.raw === undefined))
      throw new Error(`${where}: give exactly one of data and raw`);
    if (t.data !== undefined) {
      if (type.quantize === undefined) {
        throw new Error(
          `${where}: writing ${t.type} from floats is not supported (F32, F16, BF16, Q8_0, Q4_0, Q4_1 are)`,
        );
      }
      if (!(t.data instanceof Float32Array) || t.data.length !== count) {
        throw new Error(
          `${where}: data must be a Float32Array of ${count} values (shape ${JSON.stringify(t.shape)})`,
        );
      }
    } else if (!(t.raw instanceof Uint8Array) || t.raw.length !== byteLength) {
      throw new Error(
        `${where}: raw must be a Uint8Array of ${byteLength} bytes for ${t.type} ${JSON.stringify(t.shape)}`,
      );
    }
    w.string(t.name);
    w.u32(t.shape.length);
    for (let d = t.shape.length - 1; d >= 0; d--) w.u64(t.shape[d]);
    w.u32(type.id);
    w.u64(offset);
    planned.push({ tensor: t, byteLength, offset });
    offset += Math.ceil(byteLength / alignment) * alignment;
  }
  w.pad(alignment);
  const header = w.result();
  return { header, planned, alignment, total: header.length + offset };
}

function encode(p: Planned): Uint8Array {
  const t = p.tensor;
  if (t.raw !== undefined) return t.raw;
  const out = new Uint8Array(p.byteLength);
  return (GGML_TYPES[t.type].quantize as NonNullable<(typeof GGML_TYPES)["F32"]["quantize"]>)(
    t.data as Float32Array,
    out,
  );
}

/** Serializes a GGUF v3 file to bytes in memory (same bytes as {@link writeGguf}). */
export function serializeGguf(input: GgufWriteInput): Uint8Array {
  const { header, planned, total } = plan(input);
  const out = new Uint8Array(total);
  out.set(header, 0);
  for (const p of planned) out.set(encode(p), header.length + p.offset);
  return out;
}

/**
 * Writes a GGUF v3 file, quantizing one tensor at a time (only one tensor's blocks are held at once). Written
 * atomically ({@link writeFileAtomicStream}: a temporary file beside `path`, fsynced and renamed into place);
 * file-system failures throw a `FileWriteError` naming `path`.
 */
export async function writeGguf(path: string, input: GgufWriteInput): Promise<void> {
  const { header, planned, total } = plan(input);
  await writeFileAtomicStream(path, async (w) => {
    await w.write(header, 0);
    for (const p of planned) await w.write(encode(p), header.length + p.offset);
    await w.truncate(total); // zero padding after the last tensor
  });
}
