// llama2.c tokenizer → SentencePiece tokenizer.model, read back by int21's own protobuf reader.
import { readFileSync } from "node:fs";
import { SHARED, sharedPath } from "@int21/shared-data";
import { describe, expect, it } from "vitest";
import { llama2cSentencePieceModel } from "./llama2c-sentencepiece";
import { parseSentencePieceModel, sentencePieceToLlama2c } from "./sentencepiece-model";
import { Llama2cTokenizer } from "./tokenizer";

const tok = Llama2cTokenizer.fromFile(sharedPath(SHARED.tok512));

// Checked once against the real peers (throwaway Python venv, never needed by CI): sentencepiece 0.2.2's
// SentencePieceProcessor(model_file=<this file>).encode(story) gives int21's ids for all 1,000 stories of
// tinystories_valid_first1000.txt; llama.cpp's convert_hf_to_gguf.py (February 2025) takes the `int21 export hf`
// folder of stories260K through its SentencePiece path, and llama-cli tokenizes "Once upon a time, there was a
// little girl named Lily." to int21's 16 ids and writes int21's greedy text (with only tokenizer.json, that
// converter writes every score as -1000 and llama.cpp splits " little" into " li t t le").
describe("llama2cSentencePieceModel (tok512.bin)", () => {
  it("a Llama-2-style BPE model: pieces, scores and types, read back to a tokenizer with the same ids", () => {
    const bytes = llama2cSentencePieceModel(tok);
    const m = parseSentencePieceModel(bytes, "converted.model");
    expect(m).toMatchObject({
      modelType: 2,
      byteFallback: true,
      normalizerName: "identity",
      addDummyPrefix: true,
      removeExtraWhitespaces: false,
    });
    expect(m.pieces).toHaveLength(512);
    expect(m.pieces.slice(0, 4)).toEqual([
      { piece: "<unk>", score: 0, type: 2 },
      { piece: "<s>", score: 0, type: 3 },
      { piece: "</s>", score: 0, type: 3 },
      { piece: "<0x00>", score: 0, type: 6 },
    ]);
    expect(m.pieces[265]).toEqual({ piece: "▁the", score: tok.scores[265], type: 1 });
    const back = sentencePieceToLlama2c(m, "converted.model");
    expect(back.scores).toEqual(tok.scores);
    const stories = readFileSync(sharedPath(SHARED.tinystoriesValid), "utf8")
      .split("<|endoftext|>")
      .slice(0, 50);
    for (const s of stories) expect(back.encode(s.trim())).toEqual(tok.encode(s.trim()));
    expect(back.encode("  two  spaces  Ω🙂")).toEqual(tok.encode("  two  spaces  Ω🙂"));
  });
});
