// Property-based corruption suite: valid small safetensors and GGUF files damaged at random (truncated, bits
// flipped, header fields replaced by absurd values) must either read as a valid file or fail with a plain Error
// naming the file — never a TypeError/RangeError from deep inside, never a hang.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { ABSURD, mutation, mutate, expectNamedError } from "@int21/fuzz-utils";
import { afterAll, describe, expect, it } from "vitest";
import { GGML_TYPES } from "./ggml-types";
import { readGgufTokenizer } from "./gguf-tokenizer";
import { openGguf, parseGguf } from "./gguf-reader";
import { serializeGguf } from "./gguf-writer";
import { SAFETENSORS_DTYPES } from "./safetensors-format";
import { openSafetensorsIndex, writeSafetensorsSharded } from "./safetensors-index";
import { openSafetensors, parseSafetensors } from "./safetensors-reader";
import { serializeSafetensors } from "./safetensors-writer";
import { validateGguf, validateSafetensors } from "./validate";

const dir = mkdtempSync(join(tmpdir(), "int21-io-corrupt-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Time one case may take (generous: CI machines are shared); a slower case means work that grows with a lie. */
const CASE_MS = 1500;
const SEED = 2114;

function ramp(n: number, scale = 0.01): Float32Array {
  return Float32Array.from({ length: n }, (_, i) => (i - n / 2) * scale);
}

const SAFETENSORS = serializeSafetensors(
  {
    "a.weight": { dtype: "F32", shape: [4, 8], data: ramp(32) },
    "b.half": { dtype: "F16", shape: [3, 5], data: ramp(15) },
    "c.bf": { dtype: "BF16", shape: [6], data: ramp(6) },
    "d.ids": { dtype: "I32", shape: [2, 2], data: Int32Array.from([1, -2, 3, -4]) },
  },
  { format: "pt", note: "corruption suite" },
);

const GGUF = serializeGguf({
  metadata: {
    "general.architecture": { type: "string", value: "llama" },
    "llama.block_count": { type: "u32", value: 1 },
    "llama.rope.freq_base": { type: "f32", value: 10000 },
    "tokenizer.ggml.model": { type: "string", value: "llama" },
    "tokenizer.ggml.tokens": { type: "array", itemType: "string", value: ["<unk>", "<s>", "</s>", "a", "b"] },
    "tokenizer.ggml.scores": { type: "array", itemType: "f32", value: Float32Array.from([0, 0, 0, -1, -2]) },
    "tokenizer.ggml.bos_token_id": { type: "u32", value: 1 },
    "tokenizer.ggml.add_bos_token": { type: "bool", value: true },
  },
  tensors: [
    { name: "token_embd.weight", type: "F32", shape: [4, 32], data: ramp(128) },
    { name: "blk.0.attn_q.weight", type: "Q8_0", shape: [2, 32], data: ramp(64, 0.1) },
    { name: "blk.0.attn_k.weight", type: "Q4_0", shape: [2, 32], data: ramp(64, 0.1) },
    { name: "output_norm.weight", type: "F16", shape: [32], data: ramp(32) },
  ],
});

/** Runs `f` and checks it took less than {@link CASE_MS}. */
function timed<T>(what: string, f: () => T): T {
  const t0 = performance.now();
  const r = f();
  const ms = performance.now() - t0;
  if (ms > CASE_MS) throw new Error(`${what} took ${ms.toFixed(0)} ms`);
  return r;
}

function readAllSafetensors(bytes: Uint8Array, label: string): void {
  let f: ReturnType<typeof parseSafetensors>;
  try {
    f = parseSafetensors(bytes, label);
  } catch (e) {
    expectNamedError(e, label);
    return;
  }
  // A file that parses is whole: every tensor reads without error.
  for (const n of f.names) {
    const info = f.tensors[n];
    if (SAFETENSORS_DTYPES[info.dtype].float)
      expect(f.readF32(n).length).toBe(info.byteLength / SAFETENSORS_DTYPES[info.dtype].bytes);
    else f.readRaw(n);
  }
}

function readAllGguf(bytes: Uint8Array, label: string): void {
  let g: ReturnType<typeof parseGguf>;
  try {
    g = parseGguf(bytes, label);
  } catch (e) {
    expectNamedError(e, label);
    return;
  }
  for (const n of g.names) {
    const info = g.tensors[n];
    if (GGML_TYPES[info.type].dequantize !== undefined) expect(g.readTensorF32(n).length).toBe(info.count);
    else g.readTensorRaw(n);
  }
  if (Object.hasOwn(g.metadata, "tokenizer.ggml.model")) {
    try {
      readGgufTokenizer(g.metadata, label);
    } catch (e) {
      expectNamedError(e, label);
    }
  }
}

function headerLength(bytes: Uint8Array): number {
  return 8 + Number(new DataView(bytes.buffer).getBigUint64(0, true));
}

describe("corrupt safetensors", () => {
  it("the unmodified file reads", () => {
    readAllSafetensors(SAFETENSORS, "st.safetensors");
    expect(parseSafetensors(SAFETENSORS).names.length).toBe(4);
  });

  it("truncations, bit flips and absurd header values: a valid file or an Error naming the file", () => {
    const header = headerLength(SAFETENSORS);
    fc.assert(
      fc.property(mutation, (m) => {
        const bad = mutate(SAFETENSORS, header, m);
        timed(`case ${JSON.stringify(m, (_, v) => (typeof v === "bigint" ? String(v) : v))}`, () =>
          readAllSafetensors(bad, "damaged.safetensors"),
        );
      }),
      { numRuns: 300, seed: SEED },
    );
  });

  it("header JSON lies (numbers replaced by absurd or negative values, strings by huge ones)", () => {
    const n = headerLength(SAFETENSORS) - 8;
    const json = new TextDecoder().decode(SAFETENSORS.subarray(8, 8 + n));
    const numbers = [...json.matchAll(/-?\d+(\.\d+)?/g)];
    const lies = fc.constantFrom(
      "1099511627776",
      "-1",
      "0",
      "1e308",
      "1.5",
      "9007199254740993",
      "null",
      '"x"',
      "[]",
      "{}",
    );
    fc.assert(
      fc.property(fc.nat({ max: numbers.length - 1 }), lies, (i, lie) => {
        const m = numbers[i];
        const text = json.slice(0, m.index) + lie + json.slice((m.index ?? 0) + m[0].length);
        const body = new TextEncoder().encode(text);
        const out = new Uint8Array(8 + body.length + (SAFETENSORS.length - 8 - n));
        new DataView(out.buffer).setBigUint64(0, BigInt(body.length), true);
        out.set(body, 8);
        out.set(SAFETENSORS.subarray(8 + n), 8 + body.length);
        timed(`lie ${lie} at number ${i}`, () => readAllSafetensors(out, "lying.safetensors"));
      }),
      { numRuns: 200, seed: SEED },
    );
  });

  it("from a file: openSafetensors and validateSafetensors name the path, never throw another kind", async () => {
    const header = headerLength(SAFETENSORS);
    await fc.assert(
      fc.asyncProperty(mutation, async (m) => {
        const path = join(dir, "damaged.safetensors");
        writeFileSync(path, mutate(SAFETENSORS, header, m));
        try {
          const f = await openSafetensors(path);
          for (const n of f.names) await f.readRaw(n);
          await f.close();
        } catch (e) {
          expectNamedError(e, path);
        }
        for (const p of await validateSafetensors(path)) expect(p.message).toContain(path);
      }),
      { numRuns: 60, seed: SEED },
    );
  });
});

describe("corrupt GGUF", () => {
  // The header ends where the first tensor's data starts.
  const header = parseGguf(GGUF).tensors["token_embd.weight"].byteOffset;

  it("the unmodified file reads", () => {
    readAllGguf(GGUF, "g.gguf");
    expect(readGgufTokenizer(parseGguf(GGUF).metadata).tokens.length).toBe(5);
  });

  it("truncations, bit flips and absurd counts, lengths, dims, types and offsets", () => {
    fc.assert(
      fc.property(mutation, (m) => {
        const bad = mutate(GGUF, header, m);
        timed(`case ${JSON.stringify(m, (_, v) => (typeof v === "bigint" ? String(v) : v))}`, () =>
          readAllGguf(bad, "damaged.gguf"),
        );
      }),
      { numRuns: 300, seed: SEED },
    );
  });

  it("every u64 field of the header set to an absurd value", () => {
    // Aligned 8-byte positions cover the counts, string lengths, dims and offsets of this file.
    fc.assert(
      fc.property(fc.nat({ max: Math.floor(header / 4) - 2 }), fc.constantFrom(...ABSURD), (slot, value) => {
        const bad = mutate(GGUF, header, {
          kind: "poke",
          at: (slot * 4) / header,
          width: 8,
          value,
          headerOnly: true,
        });
        timed(`u64 ${value} at ${slot * 4}`, () => readAllGguf(bad, "lying.gguf"));
      }),
      { numRuns: 300, seed: SEED },
    );
  });

  it("from a file: openGguf and validateGguf name the path, never throw another kind", async () => {
    await fc.assert(
      fc.asyncProperty(mutation, async (m) => {
        const path = join(dir, "damaged.gguf");
        writeFileSync(path, mutate(GGUF, header, m));
        try {
          const g = await openGguf(path);
          for (const n of g.names) await g.readTensorRaw(n);
          await g.close();
        } catch (e) {
          expectNamedError(e, path);
        }
        for (const p of await validateGguf(path)) expect(p.message).toContain(path);
      }),
      { numRuns: 60, seed: SEED },
    );
  });
});

describe("corrupt sharded safetensors indexes", () => {
  const tensors = {
    "a.weight": { dtype: "F32" as const, shape: [4, 8], data: ramp(32) },
    "b.weight": { dtype: "F32" as const, shape: [4, 8], data: ramp(32, 0.02) },
    "c.weight": { dtype: "F32" as const, shape: [8], data: ramp(8) },
  };
  const lies = fc.constantFrom<unknown>(
    null,
    7,
    "",
    "/etc/passwd",
    "../outside.safetensors",
    "missing.safetensors",
    [],
    {},
    { "a.weight": "model-00002-of-00002.safetensors" },
    "x",
  );

  it("an index with a lying weight_map, shard name or metadata: a valid index or an Error naming it", async () => {
    const sharded = join(dir, "sharded");
    mkdirSync(sharded, { recursive: true });
    await writeSafetensorsSharded(sharded, tensors, { maxShardBytes: 200 });
    const indexPath = join(sharded, "model.safetensors.index.json");
    const good = JSON.parse(readFileSync(indexPath, "utf8"));
    expect(Object.keys(good.weight_map)).toHaveLength(3);
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom("weight_map", "metadata", "a.weight", "c.weight", "root"),
        lies,
        async (where, lie) => {
          const index = structuredClone(good);
          if (where === "root") writeFileSync(indexPath, JSON.stringify(lie));
          else {
            if (where === "weight_map" || where === "metadata") index[where] = lie;
            else index.weight_map[where] = lie;
            writeFileSync(indexPath, JSON.stringify(index));
          }
          try {
            const idx = await openSafetensorsIndex(sharded);
            for (const n of Object.keys(idx.tensors)) await idx.readF32(n);
            await idx.close();
          } catch (e) {
            expectNamedError(e, indexPath);
          }
        },
      ),
      { numRuns: 60, seed: SEED },
    );
  });
});
