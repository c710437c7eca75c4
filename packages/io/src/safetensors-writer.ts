// Writing safetensors byte-for-byte as the reference (Rust/Python) library does: tensors ordered by dtype
// (larger dtypes first, so every tensor stays aligned) then by name, compact JSON header right-padded with
// spaces to a multiple of 8 bytes, `__metadata__` first (its keys sorted) and omitted when empty.

import { writeFileAtomicStream } from "./atomic-write";
import { f32BitsToBf16, f32BitsToF16 } from "./half";
import { SAFETENSORS_DTYPES, type SafetensorsDtype, shapeSize } from "./safetensors-format";

/** One tensor to write. */
export interface SafetensorsWriteTensor {
  readonly dtype: SafetensorsDtype;
  /** Row-major shape, outermost first. */
  readonly shape: readonly number[];
  /**
   * Values, product(shape) of them. F32/F64: any numbers. F16/BF16: a Float32Array or numbers are rounded to
   * nearest even; a Uint16Array is taken as bit patterns. Integer dtypes: their own typed array is written
   * as is; other arrays must hold integers in range (I64/U64 also accept BigInt64Array/BigUint64Array).
   * BOOL: 0/1 (or booleans). F8 dtypes: raw bytes in a Uint8Array.
   */
  readonly data: ArrayLike<number> | ArrayLike<boolean> | BigInt64Array | BigUint64Array;
}

/** Tensors to write, by name. */
export type SafetensorsWriteInput = Readonly<Record<string, SafetensorsWriteTensor>>;

const INT_RANGE: Partial<Record<SafetensorsDtype, [number, number]>> = {
  U8: [0, 255],
  I8: [-128, 127],
  U16: [0, 65535],
  I16: [-32768, 32767],
  U32: [0, 4294967295],
  I32: [-2147483648, 2147483647],
  I64: [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
  U64: [0, Number.MAX_SAFE_INTEGER],
  BOOL: [0, 1],
};

function encodeTensor(name: string, t: SafetensorsWriteTensor): Uint8Array {
  const where = `safetensors: tensor "${name}"`;
  if (!Object.hasOwn(SAFETENSORS_DTYPES, t.dtype)) {
    throw new Error(`${where}: unknown dtype ${JSON.stringify(t.dtype)}`);
  }
  const info = SAFETENSORS_DTYPES[t.dtype];
  const count = shapeSize(t.shape, where);
  const data = t.data;
  if (data.length !== count) {
    throw new Error(
      `${where}: shape ${JSON.stringify(t.shape)} needs ${count} values, data has ${data.length}`,
    );
  }
  const asBytes = (a: ArrayBufferView) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  switch (t.dtype) {
    case "F32":
      if (data instanceof Float32Array) return asBytes(data);
      return asBytes(Float32Array.from(data as ArrayLike<number>));
    case "F64":
      if (data instanceof Float64Array) return asBytes(data);
      return asBytes(Float64Array.from(data as ArrayLike<number>));
    case "F16":
    case "BF16": {
      if (data instanceof Uint16Array) return asBytes(data);
      const f = data instanceof Float32Array ? data : Float32Array.from(data as ArrayLike<number>);
      const bits = new Uint32Array(f.buffer, f.byteOffset, f.length);
      const out = new Uint16Array(count);
      const round = t.dtype === "F16" ? f32BitsToF16 : f32BitsToBf16;
      for (let i = 0; i < count; i++) out[i] = round(bits[i]);
      return asBytes(out);
    }
    case "F8_E5M2":
    case "F8_E4M3":
    case "F8_E8M0":
      if (data instanceof Uint8Array) return asBytes(data);
      throw new Error(`${where}: ${t.dtype} data must be a Uint8Array of raw bytes`);
    default: {
      if (data instanceof info.array && t.dtype !== "BOOL") return asBytes(data as ArrayBufferView);
      const out = new info.array(new ArrayBuffer(count * info.bytes), 0, count);
      const [lo, hi] = INT_RANGE[t.dtype] as [number, number];
      const big = t.dtype === "I64" || t.dtype === "U64";
      for (let i = 0; i < count; i++) {
        const raw = (data as ArrayLike<unknown>)[i];
        const v =
          typeof raw === "boolean" ? Number(raw) : typeof raw === "bigint" ? Number(raw) : (raw as number);
        if (typeof raw === "bigint" && big) {
          (out as BigInt64Array)[i] = raw;
          continue;
        }
        if (!Number.isInteger(v) || v < lo || v > hi) {
          throw new Error(
            `${where}: value ${String(raw)} at index ${i} is not an integer in [${lo}, ${hi}] for ${t.dtype}`,
          );
        }
        if (big) (out as BigInt64Array)[i] = BigInt(v);
        else (out as Int32Array)[i] = v;
      }
      return asBytes(out);
    }
  }
}

interface Layout {
  header: Uint8Array;
  order: string[];
}

function layout(
  tensors: SafetensorsWriteInput,
  metadata: Readonly<Record<string, string>> | undefined,
): Layout {
  const order = Object.keys(tensors).sort((a, b) => {
    const ra = SAFETENSORS_DTYPES[tensors[a].dtype]?.rank ?? 0;
    const rb = SAFETENSORS_DTYPES[tensors[b].dtype]?.rank ?? 0;
    return rb - ra || (a < b ? -1 : a > b ? 1 : 0);
  });
  const json: Record<string, unknown> = {};
  if (metadata !== undefined && Object.keys(metadata).length > 0) {
    const m: Record<string, string> = {};
    for (const k of Object.keys(metadata).sort()) {
      if (typeof metadata[k] !== "string") throw new Error(`safetensors: metadata["${k}"] must be a string`);
      m[k] = metadata[k];
    }
    json.__metadata__ = m;
  }
  let offset = 0;
  for (const name of order) {
    if (name === "__metadata__") throw new Error(`safetensors: "__metadata__" cannot be a tensor name`);
    const t = tensors[name];
    const where = `safetensors: tensor "${name}"`;
    if (!Object.hasOwn(SAFETENSORS_DTYPES, t.dtype))
      throw new Error(`${where}: unknown dtype ${JSON.stringify(t.dtype)}`);
    const count = shapeSize(t.shape, where);
    if (t.data.length !== count) {
      throw new Error(
        `${where}: shape ${JSON.stringify(t.shape)} needs ${count} values, data has ${t.data.length}`,
      );
    }
    const bytes = count * SAFETENSORS_DTYPES[t.dtype].bytes;
    json[name] = { dtype: t.dtype, shape: [...t.shape], data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  const text = new TextEncoder().encode(JSON.stringify(json));
  const padded = Math.ceil(text.length / 8) * 8;
  const header = new Uint8Array(8 + padded).fill(0x20, 8);
  new DataView(header.buffer).setBigUint64(0, BigInt(padded), true);
  header.set(text, 8);
  return { header, order };
}

/**
 * Serializes tensors (and an optional `__metadata__` string map) to safetensors bytes in memory.
 * Deterministic: the same input always gives the same bytes, identical to the reference library's output.
 */
export function serializeSafetensors(
  tensors: SafetensorsWriteInput,
  metadata?: Readonly<Record<string, string>>,
): Uint8Array {
  const { header, order } = layout(tensors, metadata);
  const parts = order.map((name) => encodeTensor(name, tensors[name]));
  const out = new Uint8Array(header.length + parts.reduce((s, p) => s + p.length, 0));
  out.set(header, 0);
  let at = header.length;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/**
 * Writes tensors to a safetensors file at `path`, one tensor at a time (only one tensor's encoded bytes are
 * held at once). Same bytes as {@link serializeSafetensors}. Written atomically ({@link writeFileAtomicStream}: a
 * temporary file beside `path`, fsynced and renamed into place), so a failed or killed write never leaves a
 * half-written checkpoint; file-system failures throw a `FileWriteError` naming `path`.
 */
export async function writeSafetensors(
  path: string,
  tensors: SafetensorsWriteInput,
  metadata?: Readonly<Record<string, string>>,
): Promise<void> {
  const { header, order } = layout(tensors, metadata);
  await writeFileAtomicStream(path, async (w) => {
    await w.write(header, 0);
    let at = header.length;
    for (const name of order) {
      const bytes = encodeTensor(name, tensors[name]);
      await w.write(bytes, at);
      at += bytes.length;
    }
  });
}
