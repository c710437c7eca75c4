import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SHARED, sharedPath } from "@int21/shared-data";
import { afterAll, describe, expect, it } from "vitest";
import type { GgufValue } from "./gguf-format";
import { openGguf, parseGguf } from "./gguf-reader";
import { readGgufTokenizer } from "./gguf-tokenizer";
import { serializeGguf, writeGguf } from "./gguf-writer";

const dir = mkdtempSync(join(tmpdir(), "int21-io-tok-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Reads a llama2.c tokenizer.bin: i32 max_token_length, then per token f32 score | i32 length | bytes. */
function readLlama2cTokenizer(path: string, vocab: number): { tokens: string[]; scores: Float32Array } {
  const b = readFileSync(path);
  const dv = new DataView(b.buffer, b.byteOffset, b.length);
  const dec = new TextDecoder("utf-8", { fatal: true });
  const tokens: string[] = [];
  const scores = new Float32Array(vocab);
  let p = 4;
  for (let i = 0; i < vocab; i++) {
    scores[i] = dv.getFloat32(p, true);
    const n = dv.getInt32(p + 4, true);
    tokens.push(dec.decode(b.subarray(p + 8, p + 8 + n)));
    p += 8 + n;
  }
  expect(p).toBe(b.length);
  return { tokens, scores };
}

const meta = (m: Record<string, GgufValue>) =>
  parseGguf(serializeGguf({ metadata: m, tensors: [] }), "tok.gguf").metadata;

describe("readGgufTokenizer", () => {
  it("round-trips the real 32,000-token Llama 2 tokenizer through a GGUF file", async () => {
    const { tokens, scores } = readLlama2cTokenizer(sharedPath(SHARED.llama2Tokenizer), 32000);
    const types = Int32Array.from(tokens, (t, i) =>
      i === 0 ? 2 : i < 3 ? 3 : /^<0x[0-9A-F]{2}>$/.test(t) ? 6 : 1,
    );
    const path = join(dir, "llama2-tok.gguf");
    await writeGguf(path, {
      metadata: {
        "general.architecture": { type: "string", value: "llama" },
        "tokenizer.ggml.model": { type: "string", value: "llama" },
        "tokenizer.ggml.tokens": { type: "array", itemType: "string", value: tokens },
        "tokenizer.ggml.scores": { type: "array", itemType: "f32", value: scores },
        "tokenizer.ggml.token_type": { type: "array", itemType: "i32", value: types },
        "tokenizer.ggml.bos_token_id": { type: "u32", value: 1 },
        "tokenizer.ggml.eos_token_id": { type: "u32", value: 2 },
        "tokenizer.ggml.unknown_token_id": { type: "u32", value: 0 },
        "tokenizer.ggml.add_bos_token": { type: "bool", value: true },
      },
      tensors: [],
    });
    const f = await openGguf(path);
    await f.close();
    const tok = readGgufTokenizer(f.metadata, path);
    expect(tok.model).toBe("llama");
    expect(tok.tokens).toEqual(tokens);
    expect(tok.scores).toEqual(scores);
    expect(tok.tokenTypes?.filter((t) => t === 6).length).toBe(256); // the byte-fallback tokens
    expect([tok.bosId, tok.eosId, tok.unknownId, tok.addBos, tok.addEos]).toEqual([1, 2, 0, true, undefined]);
    expect(tok.tokens[tok.bosId ?? -1]).toBe("\n<s>\n");
  });

  it("names the file and key when the tokenizer is missing or inconsistent", () => {
    const base: Record<string, GgufValue> = {
      "tokenizer.ggml.model": { type: "string", value: "gpt2" },
      "tokenizer.ggml.tokens": { type: "array", itemType: "string", value: ["a", "b"] },
    };
    expect(readGgufTokenizer(meta(base), "tok.gguf").merges).toBeUndefined();
    expect(() => readGgufTokenizer(meta({}), "tok.gguf")).toThrow(
      /gguf: tok.gguf: tokenizer.ggml.model is missing \(the file has no tokenizer\)/,
    );
    expect(() =>
      readGgufTokenizer(
        meta({
          ...base,
          "tokenizer.ggml.scores": { type: "array", itemType: "f32", value: new Float32Array(3) },
        }),
        "tok.gguf",
      ),
    ).toThrow(/tokenizer.ggml.scores has 3 entries but there are 2 tokens/);
    expect(() =>
      readGgufTokenizer(
        meta({ ...base, "tokenizer.ggml.eos_token_id": { type: "u32", value: 2 } }),
        "tok.gguf",
      ),
    ).toThrow(/tokenizer.ggml.eos_token_id 2 is not a token id \(there are 2 tokens\)/);
    expect(() =>
      readGgufTokenizer(
        meta({
          ...base,
          "tokenizer.ggml.tokens": { type: "array", itemType: "i32", value: new Int32Array(2) },
        }),
        "tok.gguf",
      ),
    ).toThrow(/tokenizer.ggml.tokens must be an array of strings/);
  });

  it("reads the BOS / EOS flags as stored (absent stays absent; a non-bool is named)", () => {
    const base: Record<string, GgufValue> = {
      "tokenizer.ggml.model": { type: "string", value: "gpt2" },
      "tokenizer.ggml.tokens": { type: "array", itemType: "string", value: ["a", "b"] },
    };
    const flags = (m: Record<string, GgufValue>) => {
      const t = readGgufTokenizer(meta({ ...base, ...m }), "tok.gguf");
      return [t.addBos, t.addEos];
    };
    expect(flags({})).toEqual([undefined, undefined]);
    expect(
      flags({
        "tokenizer.ggml.add_bos_token": { type: "bool", value: false },
        "tokenizer.ggml.add_eos_token": { type: "bool", value: true },
      }),
    ).toEqual([false, true]);
    expect(() => flags({ "tokenizer.ggml.add_bos_token": { type: "u32", value: 1 } })).toThrow(
      /gguf: tok.gguf: tokenizer.ggml.add_bos_token must be a bool, got u32/,
    );
  });
});
