import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gguf as hfGguf } from "@huggingface/gguf";
import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";
import { dequantizeQ4_0, dequantizeQ4_1, dequantizeQ8_0 } from "./ggml-dequant";
import { quantizeQ4_0, quantizeQ4_1, quantizeQ8_0 } from "./ggml-quantize";
import { GGML_TYPES } from "./ggml-types";
import type { GgufValue } from "./gguf-format";
import { openGguf, parseGguf } from "./gguf-reader";
import { type GgufWriteTensor, serializeGguf, writeGguf } from "./gguf-writer";
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from "./half";

const dir = mkdtempSync(join(tmpdir(), "int21-io-gguf-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const str = (value: string): GgufValue => ({ type: "string", value });

describe("GGUF golden bytes", () => {
  it("writes a one-tensor file byte for byte", () => {
    const bytes = serializeGguf({
      metadata: { "general.architecture": str("llama") },
      tensors: [{ name: "w", type: "F32", shape: [2], data: new Float32Array([1, 2]) }],
    });
    const enc = (s: string) => [...new TextEncoder().encode(s)];
    const u64 = (n: number) => [n, 0, 0, 0, 0, 0, 0, 0];
    const u32 = (n: number) => [n, 0, 0, 0];
    // biome-ignore format: one line per field
    const want = [
      ...enc("GGUF"), ...u32(3), ...u64(1), ...u64(1), // magic, version, tensor_count, kv_count
      ...u64(20), ...enc("general.architecture"), ...u32(8), ...u64(5), ...enc("llama"), // key, type string, value
      ...u64(1), ...enc("w"), ...u32(1), ...u64(2), ...u32(0), ...u64(0), // name, n_dims, ne[0], F32, offset
      ...new Array(128 - 102).fill(0), // pad 102 → 128 (alignment 32)
      0, 0, 0x80, 0x3f, 0, 0, 0, 0x40, // 1.0f, 2.0f
      ...new Array(160 - 136).fill(0), // the tensor is padded to the alignment too
    ];
    expect([...bytes]).toEqual(want);
  });
});

const writable = ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1"] as const;

/** What the reader must return for floats written as `type`: the reference encode→decode. */
function expected(type: (typeof writable)[number], x: Float32Array): Float32Array {
  const n = x.length;
  switch (type) {
    case "F32":
      return x;
    case "F16":
      return f16ToF32(f32ToF16(x, new Uint16Array(n)), new Float32Array(n));
    case "BF16":
      return bf16ToF32(f32ToBf16(x, new Uint16Array(n)), new Float32Array(n));
    case "Q8_0":
      return dequantizeQ8_0(quantizeQ8_0(x, new Uint8Array((n / 32) * 34)), new Float32Array(n), n);
    case "Q4_0":
      return dequantizeQ4_0(quantizeQ4_0(x, new Uint8Array((n / 32) * 18)), new Float32Array(n), n);
    case "Q4_1":
      return dequantizeQ4_1(quantizeQ4_1(x, new Uint8Array((n / 32) * 20)), new Float32Array(n), n);
  }
}

/** Each type's bound on |read - written|, relative to the largest magnitude in the tensor. */
const RELATIVE_BOUND: Record<(typeof writable)[number], number> = {
  F32: 0,
  F16: 2 ** -11,
  BF16: 2 ** -8,
  Q8_0: 0.6 / 127,
  Q4_0: 1.01 / 8,
  Q4_1: 1.01 / 15 + 2 ** -10, // (max - min) / 30 <= amax / 15, plus f16 rounding of d and m
};

const arbTensor = fc
  .record({
    type: fc.constantFrom(...writable),
    outer: fc.array(fc.integer({ min: 1, max: 3 }), { maxLength: 2 }),
    rowBlocks: fc.integer({ min: 1, max: 3 }),
  })
  .chain(({ type, outer, rowBlocks }) => {
    const shape = [...outer, rowBlocks * 32];
    const n = shape.reduce((a, b) => a * b, 1);
    return fc
      .array(fc.float({ min: -100, max: 100, noNaN: true }), { minLength: n, maxLength: n })
      .map((v) => ({ type, shape, data: Float32Array.from(v) }));
  });

describe("GGUF round trips", () => {
  it("write → read gives each type's reference values, within its bound (property)", () => {
    fc.assert(
      fc.property(fc.array(arbTensor, { minLength: 1, maxLength: 4 }), (list) => {
        const tensors: GgufWriteTensor[] = list.map((t, i) => ({ name: `t${i}`, ...t }));
        const file = parseGguf(serializeGguf({ metadata: {}, tensors }), "mem");
        for (const t of tensors) {
          const info = file.tensors[t.name];
          expect(info.type).toBe(t.type);
          expect(info.shape).toEqual(t.shape);
          expect(info.dims).toEqual([...t.shape].reverse());
          expect(info.byteOffset % 32).toBe(0);
          const got = file.readTensorF32(t.name);
          const x = t.data as Float32Array;
          expect(got).toEqual(expected(t.type as (typeof writable)[number], x));
          const amax = Math.max(...x.map(Math.abs));
          const bound = RELATIVE_BOUND[t.type as (typeof writable)[number]] * amax + 1e-6;
          for (let i = 0; i < x.length; i++) expect(Math.abs(got[i] - x[i])).toBeLessThanOrEqual(bound);
        }
      }),
      { seed: 42, numRuns: 60 },
    );
  });

  it("writes files that read back through positioned reads, with every metadata type", async () => {
    const x = Float32Array.from({ length: 2 * 64 }, (_, i) => Math.sin(i) * 3);
    const metadata: Record<string, GgufValue> = {
      "general.architecture": str("llama"),
      "general.alignment": { type: "u32", value: 64 },
      "t.u8": { type: "u8", value: 200 },
      "t.i8": { type: "i8", value: -100 },
      "t.u16": { type: "u16", value: 60000 },
      "t.i16": { type: "i16", value: -30000 },
      "t.u32": { type: "u32", value: 4000000000 },
      "t.i32": { type: "i32", value: -2000000000 },
      "t.f32": { type: "f32", value: 1.5 },
      "t.f64": { type: "f64", value: 0.1 },
      "t.u64": { type: "u64", value: 2n ** 63n },
      "t.i64": { type: "i64", value: -(2n ** 40n) },
      "t.bool": { type: "bool", value: true },
      "t.str": str("héllo ✓"),
      "t.tokens": { type: "array", itemType: "string", value: ["<s>", "</s>", "▁the"] },
      "t.scores": { type: "array", itemType: "f32", value: new Float32Array([0, -1.5, 2]) },
      "t.types": { type: "array", itemType: "i32", value: new Int32Array([1, 3, -2]) },
      "t.flags": { type: "array", itemType: "bool", value: [true, false] },
      "t.big": { type: "array", itemType: "u64", value: new BigUint64Array([1n, 2n ** 64n - 1n]) },
    };
    const tensors: GgufWriteTensor[] = writable.map((type) => ({
      name: `w.${type}`,
      type,
      shape: [2, 64],
      data: x,
    }));
    const q6 = new Uint8Array(210).map((_, i) => (i * 37) & 255);
    q6[208] = 0x00;
    q6[209] = 0x3c; // d = 1
    tensors.push({ name: "raw.q6k", type: "Q6_K", shape: [256], raw: q6 });
    const path = join(dir, "all.gguf");
    await writeGguf(path, { metadata, tensors });
    expect([...readFileSync(path)]).toEqual([...serializeGguf({ metadata, tensors })]);

    const f = await openGguf(path);
    try {
      expect(f.version).toBe(3);
      expect(f.alignment).toBe(64);
      expect(Object.keys(f.metadata)).toEqual(Object.keys(metadata));
      for (const [k, v] of Object.entries(metadata)) expect(f.metadata[k]).toEqual(v);
      expect(f.get("t.str")).toBe("héllo ✓");
      expect(f.get("missing")).toBeUndefined();
      expect(f.names).toEqual(tensors.map((t) => t.name));
      for (const t of tensors) {
        expect(f.tensors[t.name].byteOffset % 64).toBe(0);
        if (t.data)
          expect(await f.readTensorF32(t.name)).toEqual(expected(t.type as (typeof writable)[number], x));
      }
      expect([...(await f.readTensorRaw("raw.q6k"))]).toEqual([...q6]);
      const out = new Float32Array(300);
      await f.readTensorF32("raw.q6k", out);
      expect(out.subarray(0, 256)).toEqual(GGML_TYPES.Q6_K.dequantize?.(q6, new Float32Array(256), 256));
    } finally {
      await f.close();
    }
  });

  it("writes files an independent parser (@huggingface/gguf) reads the same way", async () => {
    const x = Float32Array.from({ length: 3 * 32 }, (_, i) => i / 7 - 5);
    const path = join(dir, "hf.gguf");
    await writeGguf(path, {
      metadata: {
        "general.architecture": str("llama"),
        "llama.context_length": { type: "u32", value: 2048 },
        "llama.rope.freq_base": { type: "f32", value: 10000 },
        "tokenizer.ggml.tokens": { type: "array", itemType: "string", value: ["a", "b"] },
      },
      tensors: [
        { name: "token_embd.weight", type: "Q8_0", shape: [3, 32], data: x },
        { name: "output_norm.weight", type: "F32", shape: [32], data: x.subarray(0, 32) },
        { name: "blk.0.attn_q.weight", type: "Q4_1", shape: [3, 32], data: x },
      ],
    });
    const r = await hfGguf(path, { allowLocalFile: true });
    const m = r.metadata as Record<string, unknown>;
    expect(m.version).toBe(3);
    expect(m["general.architecture"]).toBe("llama");
    expect(m["llama.context_length"]).toBe(2048);
    expect(m["llama.rope.freq_base"]).toBe(10000);
    expect(m["tokenizer.ggml.tokens"]).toEqual(["a", "b"]);
    const ours = await openGguf(path);
    await ours.close();
    expect(
      r.tensorInfos.map((t) => [t.name, t.shape.map(Number), t.dtype, Number(r.tensorDataOffset + t.offset)]),
    ).toEqual(
      ours.names.map((n) => {
        const t = ours.tensors[n];
        return [n, t.dims, GGML_TYPES[t.type].id, t.byteOffset];
      }),
    );
  });
});

describe("GGUF writer errors", () => {
  const data = new Float32Array(64);
  it("names the tensor for bad shapes, types and data", () => {
    const one = (t: GgufWriteTensor) => () => serializeGguf({ metadata: {}, tensors: [t] });
    expect(one({ name: "w", type: "Q4_0", shape: [2, 33], data })).toThrow(
      /tensor "w": row length 33 \(last dimension of shape \[2,33\]\) is not a multiple of the Q4_0 block size 32/,
    );
    // Q4_K … Q6_K, Q5_0/Q5_1 and IQ4_NL/IQ4_XS gained quantizers (ggml-quantize-k.ts); IQ2_XS has none.
    expect(one({ name: "w", type: "IQ2_XS", shape: [256], data: new Float32Array(256) })).toThrow(
      /tensor "w": writing IQ2_XS from floats is not supported/,
    );
    expect(one({ name: "w", type: "F32", shape: [65], data })).toThrow(
      /tensor "w": data must be a Float32Array of 65 values/,
    );
    expect(one({ name: "w", type: "Q6_K", shape: [256], raw: new Uint8Array(200) })).toThrow(
      /tensor "w": raw must be a Uint8Array of 210 bytes/,
    );
    expect(one({ name: "x".repeat(64), type: "F32", shape: [64], data })).toThrow(/longer than 63 bytes/);
    expect(one({ name: "w", type: "F32", shape: [1, 1, 1, 1, 64], data })).toThrow(
      /tensor "w": shape must have 1 to 4/,
    );
    expect(() =>
      serializeGguf({
        metadata: {},
        tensors: [
          { name: "w", type: "F32", shape: [64], data },
          { name: "w", type: "F32", shape: [64], data },
        ],
      }),
    ).toThrow(/tensor "w": duplicate tensor name/);
  });

  it("names the key for bad metadata values", () => {
    const meta = (m: Record<string, GgufValue>) => () => serializeGguf({ metadata: m, tensors: [] });
    expect(meta({ k: { type: "u8", value: 256 } })).toThrow(/metadata "k": 256 is not a valid u8/);
    expect(meta({ k: { type: "i32", value: 1.5 } })).toThrow(/metadata "k": 1.5 is not a valid i32/);
    expect(meta({ k: { type: "array", itemType: "string", value: ["a", 1 as unknown as string] } })).toThrow(
      /metadata "k"\[1\] is not a string/,
    );
    expect(meta({ k: { type: "array", itemType: "array", value: [] } })).toThrow(
      /arrays of arrays are not written/,
    );
    expect(meta({ "general.alignment": { type: "u32", value: 48 } })).toThrow(
      /general.alignment must be a u32 power of two/,
    );
    expect(meta({ k: { type: "nope" } as unknown as GgufValue })).toThrow(/metadata "k": not a typed value/);
  });
});
