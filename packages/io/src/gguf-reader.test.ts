import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { openGguf, parseGguf } from "./gguf-reader";
import { serializeGguf } from "./gguf-writer";

const dir = mkdtempSync(join(tmpdir(), "int21-io-ggufr-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A little-endian byte builder for hand-made (possibly corrupt) GGUF headers. */
class Bytes {
  private out: number[] = [];
  u32(v: number): this {
    for (let i = 0; i < 4; i++) this.out.push((v >>> (8 * i)) & 255);
    return this;
  }
  u64(v: number | bigint): this {
    let b = BigInt(v);
    for (let i = 0; i < 8; i++, b >>= 8n) this.out.push(Number(b & 255n));
    return this;
  }
  str(s: string): this {
    const e = new TextEncoder().encode(s);
    this.u64(e.length);
    this.out.push(...e);
    return this;
  }
  raw(...b: number[]): this {
    this.out.push(...b);
    return this;
  }
  padTo(n: number): this {
    while (this.out.length % n !== 0) this.out.push(0);
    return this;
  }
  zeros(n: number): this {
    for (let i = 0; i < n; i++) this.out.push(0);
    return this;
  }
  get length(): number {
    return this.out.length;
  }
  bytes(): Uint8Array {
    return Uint8Array.from(this.out);
  }
}

interface Info {
  name: string;
  dims: number[];
  type: number;
  offset: number;
}
/** magic, version, counts, one string kv, the tensor infos, padding to 32, then `data` zero bytes. */
function file(
  tensors: Info[],
  data: number,
  opts: { version?: number; kv?: (b: Bytes) => void; nkv?: number } = {},
) {
  const b = new Bytes()
    .raw(0x47, 0x47, 0x55, 0x46)
    .u32(opts.version ?? 3)
    .u64(tensors.length)
    .u64(opts.nkv ?? 1);
  if (opts.kv) opts.kv(b);
  else b.str("general.architecture").u32(8).str("llama");
  for (const t of tensors) {
    b.str(t.name).u32(t.dims.length);
    for (const d of t.dims) b.u64(d);
    b.u32(t.type).u64(t.offset);
  }
  return b.padTo(32).zeros(data).bytes();
}

/** The same error from the in-memory parser and from the file reader, which must name the path. */
async function expectBoth(bytes: Uint8Array, message: RegExp, label: string): Promise<void> {
  const path = join(dir, `${label}.gguf`);
  expect(() => parseGguf(bytes, path)).toThrow(message);
  writeFileSync(path, bytes);
  await expect(openGguf(path)).rejects.toThrow(message);
  await expect(openGguf(path)).rejects.toThrow(path);
}

const good = serializeGguf({
  metadata: {
    "general.architecture": { type: "string", value: "llama" },
    "tokenizer.ggml.tokens": { type: "array", itemType: "string", value: ["<unk>", "<s>", "</s>", "hello"] },
    "tokenizer.ggml.scores": { type: "array", itemType: "f32", value: new Float32Array([0, 0, 0, -1]) },
  },
  tensors: [
    { name: "a", type: "Q8_0", shape: [2, 32], data: new Float32Array(64).fill(1) },
    { name: "b", type: "F16", shape: [3, 5], data: new Float32Array(15).fill(2) },
  ],
});

describe("GGUF reader validation", () => {
  it("reads the good file", () => {
    const f = parseGguf(good, "good");
    expect(f.names).toEqual(["a", "b"]);
    expect(f.tensors.b).toMatchObject({
      type: "F16",
      dims: [5, 3],
      shape: [3, 5],
      count: 15,
      byteLength: 30,
    });
    expect(f.readTensorF32("b")).toEqual(new Float32Array(15).fill(2));
    expect(() => f.readTensorF32("zz")).toThrow(/good: no tensor named "zz"/);
    expect(() => f.readTensorF32("b", new Float32Array(3))).toThrow(
      /tensor "b": output has 3 elements, needs 15/,
    );
  });

  it("rejects bad magic and unsupported versions, naming the file", async () => {
    const bad = good.slice();
    bad[0] = 0x47;
    bad[3] = 0x47;
    await expectBoth(bad, /bad magic: expected "GGUF" \(47 47 55 46\), got 47 47 55 47/, "magic");
    await expectBoth(file([], 0, { version: 1 }), /GGUF version 1 is not supported \(only 2 and 3\)/, "v1");
    await expectBoth(file([], 0, { version: 99 }), /unsupported GGUF version 99/, "v99");
    await expectBoth(file([], 0, { version: 0x03000000 }), /big-endian GGUF files are not supported/, "be");
    expect(parseGguf(file([], 0, { version: 2 }), "v2").version).toBe(2);
  });

  it("detects truncation at every cut inside the header and the tensor data", async () => {
    const f = parseGguf(good, "good");
    const end = Math.max(...f.names.map((n) => f.tensors[n].byteOffset + f.tensors[n].byteLength));
    const cuts = [0, 3, 4, 7, 12, 20, 30, 47, 60, 90, 120, 150, 180, 200, f.tensors.a.byteOffset, end - 1];
    for (const cut of cuts.filter((c) => c < end)) {
      expect(() => parseGguf(good.subarray(0, cut), `cut${cut}`), `cut at ${cut}`).toThrow(
        new RegExp(`gguf: cut${cut}: .*(truncated|too short|past the end)`),
      );
    }
    await expectBoth(good.subarray(0, 100), /truncated/, "cut100");
    await expectBoth(
      good.subarray(0, end - 1),
      /tensor "b": data \[\d+, \d+\) runs past the end of the file/,
      "cutdata",
    );
  });

  it("rejects corrupt metadata, naming the key", async () => {
    await expectBoth(
      file([], 0, { kv: (b) => b.str("k").u32(13).u32(0) }),
      /metadata "k": unknown value type 13/,
      "vtype",
    );
    await expectBoth(
      file([], 0, { kv: (b) => b.str("k").u32(8).u64(1e9) }),
      /truncated: metadata "k" is 1000000000 bytes at offset \d+, past the end of the file/,
      "strlen",
    );
    await expectBoth(
      file([], 0, { kv: (b) => b.str("k").u32(9).u32(5).u64(1e6) }),
      /metadata "k": array of 1000000 i32 items cannot fit/,
      "arrlen",
    );
    await expectBoth(
      file([], 0, { nkv: 2, kv: (b) => b.str("k").u32(4).u32(1).str("k").u32(4).u32(2) }),
      /duplicate metadata key "k"/,
      "dupkey",
    );
    await expectBoth(
      file([], 0, { kv: (b) => b.str("general.alignment").u32(10).u64(32) }),
      /general.alignment must be a u32 power of two, got u64 32/,
      "align",
    );
    await expectBoth(file([], 0, { nkv: 1e9 }), /1000000000 metadata entries cannot fit/, "nkv");
    await expectBoth(
      file([], 0, { kv: (b) => b.str("k").u32(7).raw(2) }),
      /metadata "k": bool byte 2/,
      "bool",
    );
  });

  it("rejects corrupt tensor infos, naming the tensor", async () => {
    const t = (over: Partial<Info>): Info => ({ name: "w", dims: [32, 2], type: 0, offset: 0, ...over });
    await expectBoth(file([t({ type: 4 })], 256), /tensor "w": unknown ggml type id 4/, "tid");
    await expectBoth(
      file([t({ dims: [1, 1, 1, 1, 1] })], 256),
      /tensor "w": n_dims 5 is not in 1..4/,
      "ndims",
    );
    await expectBoth(
      file([t({ type: 2, dims: [48, 2] })], 256),
      /tensor "w": row length ne\[0\] = 48 is not a multiple of the Q4_0 block size 32/,
      "rowlen",
    );
    await expectBoth(
      file([t({ offset: 8 })], 512),
      /tensor "w": offset 8 is not a multiple of the alignment 32/,
      "misal",
    );
    await expectBoth(
      file([t({}), t({ name: "v", offset: 128 })], 512),
      /tensor "v": data overlaps tensor "w"/,
      "overlap",
    );
    await expectBoth(file([t({}), t({ offset: 256 })], 512), /tensor "w": duplicate tensor name/, "dup");
    await expectBoth(
      file([t({})], 255),
      /tensor "w": data \[\d+, \d+\) runs past the end of the file/,
      "short",
    );
  });

  it("reads raw blocks of types it cannot dequantize and says so for readTensorF32", () => {
    const f = parseGguf(file([{ name: "iq", dims: [256], type: 16, offset: 0 }], 66), "iq");
    expect(f.tensors.iq).toMatchObject({ type: "IQ2_XXS", byteLength: 66 });
    expect(f.readTensorRaw("iq").length).toBe(66);
    expect(() => f.readTensorF32("iq")).toThrow(
      /tensor "iq": dequantizing IQ2_XXS is not supported; read its blocks/,
    );
  });

  it("grows its header read past the first MiB (a large tokenizer)", async () => {
    const tokens = Array.from({ length: 40000 }, (_, i) => `token-${i}-${"x".repeat(24)}`);
    const path = join(dir, "bigheader.gguf");
    writeFileSync(
      path,
      serializeGguf({
        metadata: { "tokenizer.ggml.tokens": { type: "array", itemType: "string", value: tokens } },
        tensors: [{ name: "w", type: "F32", shape: [4], data: new Float32Array([1, 2, 3, 4]) }],
      }),
    );
    const f = await openGguf(path);
    expect(f.tensors.w.byteOffset).toBeGreaterThan(1 << 20);
    expect((f.get("tokenizer.ggml.tokens") as string[])[39999]).toBe(tokens[39999]);
    expect([...(await f.readTensorF32("w"))]).toEqual([1, 2, 3, 4]);
    await f.close();
  });

  it("reads a tensor beyond 4 GiB of a sparse 6 GB file", async () => {
    const { openSync, writeSync, closeSync, ftruncateSync } = await import("node:fs");
    const big = 1_500_000_000; // 6 GB of F32, never read
    const header = file(
      [
        { name: "big", dims: [big], type: 0, offset: 0 },
        { name: "small", dims: [2], type: 0, offset: 4 * big },
      ],
      0,
    );
    const path = join(dir, "sparse.gguf");
    const fd = openSync(path, "w");
    try {
      writeSync(fd, header, 0, header.length, 0);
      ftruncateSync(fd, header.length + 4 * big);
      writeSync(fd, new Uint8Array(new Float32Array([3, -4]).buffer), 0, 8, header.length + 4 * big);
    } finally {
      closeSync(fd);
    }
    const f = await openGguf(path);
    try {
      expect(f.tensors.small.byteOffset).toBe(header.length + 4 * big);
      expect([...(await f.readTensorF32("small"))]).toEqual([3, -4]);
    } finally {
      await f.close();
      rmSync(path);
    }
  });
});

describe("typed metadata accessors", () => {
  it("converts numbers (including safe u64) and strings, naming the key otherwise", async () => {
    const { ggufNumber, ggufString } = await import("./gguf-format");
    const m = parseGguf(
      serializeGguf({
        metadata: {
          "llama.block_count": { type: "u32", value: 22 },
          "llama.rope.freq_base": { type: "f32", value: 10000 },
          "general.parameter_count": { type: "u64", value: 1100048384n },
          huge: { type: "u64", value: 2n ** 60n },
          "general.name": { type: "string", value: "TinyLlama" },
        },
        tensors: [],
      }),
      "m.gguf",
    ).metadata;
    expect(ggufNumber(m, "llama.block_count")).toBe(22);
    expect(ggufNumber(m, "llama.rope.freq_base")).toBe(10000);
    expect(ggufNumber(m, "general.parameter_count")).toBe(1100048384);
    expect(ggufNumber(m, "absent")).toBeUndefined();
    expect(() => ggufNumber(m, "huge", "m.gguf")).toThrow(
      /m.gguf: metadata "huge" = 1152921504606846976 is too large/,
    );
    expect(() => ggufNumber(m, "general.name", "m.gguf")).toThrow(
      /metadata "general.name" must be a number, got string/,
    );
    expect(ggufString(m, "general.name")).toBe("TinyLlama");
    expect(() => ggufString(m, "llama.block_count", "m.gguf")).toThrow(/must be a string, got u32/);
  });
});
