import { join } from "node:path";
import { parseGguf, readGgufTokenizer, serializeGguf } from "@int21/io";
import { sharedPath } from "@int21/shared-data";
import { describe, expect, it } from "vitest";
import { hfTokenizerToGguf } from "./gguf-hf-tokenizer";
import { HfTokenizer } from "./hf-tokenizer";

const TEXT = "Once upon a time, Lily's dog ran 123 miles!\nThe end. <|endoftext|> 日本 🙂";

/** `tok` written as GGUF metadata for `rows` model rows, then read back as llama.cpp's loader sees it. */
function roundTrip(tok: HfTokenizer, rows: number) {
  const bytes = serializeGguf({ metadata: hfTokenizerToGguf(tok, rows), tensors: [] });
  const back = readGgufTokenizer(parseGguf(bytes, "t.gguf").metadata);
  return { back, hf: HfTokenizer.fromGguf(back, "t.gguf") };
}

describe("hfTokenizerToGguf", () => {
  for (const [family, pre] of [
    ["llama3", "llama-bpe"],
    ["smollm2", "gpt-2"],
    ["qwen2", "qwen2"],
  ] as const) {
    it(`${family}: gpt2 vocabulary with pre "${pre}"; read back it encodes as the tokenizer.json does`, () => {
      const dir = sharedPath(`fixtures/hf-families/${family}`);
      const tok = HfTokenizer.fromFile(join(dir, "tokenizer.json"));
      const { back, hf } = roundTrip(tok, tok.vocabSize);
      expect(back.model).toBe("gpt2");
      expect(back.pre).toBe(pre);
      expect(back.tokens).toHaveLength(tok.vocabSize);
      expect(back.addBos).toBe(tok.addBos);
      expect(hf.encode(TEXT)).toEqual(tok.encode(TEXT));
      expect(hf.encode(TEXT, { special: true })).toEqual(tok.encode(TEXT, { special: true }));
      expect(hf.decodeAll(tok.encode(TEXT))).toBe(tok.decodeAll(tok.encode(TEXT)));
    });
  }

  it("pads a vocabulary shorter than the model with unused [PAD<id>] tokens, as llama.cpp's converter does", () => {
    const tok = HfTokenizer.fromFile(join(sharedPath("fixtures/hf-families/qwen2"), "tokenizer.json"));
    const rows = tok.vocabSize + 45;
    const { back } = roundTrip(tok, rows);
    expect(back.tokens).toHaveLength(rows);
    expect(back.tokens[rows - 1]).toBe(`[PAD${rows - 1}]`);
    expect(back.tokenTypes?.[rows - 1]).toBe(5);
    expect(() => hfTokenizerToGguf(tok, tok.vocabSize - 1)).toThrow(/more than the model's/);
  });

  it("refuses a SentencePiece-style tokenizer.json, naming the decoder", () => {
    const tok = HfTokenizer.fromFile(join(sharedPath("fixtures/hf-families/llama2"), "tokenizer.json"));
    expect(() => hfTokenizerToGguf(tok)).toThrow(/is not ByteLevel .*tokenizer\.model/);
  });
});
