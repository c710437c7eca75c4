import { readFileSync } from "node:fs";
import { SHARED, sharedPath } from "@int21/shared-data";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  parseSentencePieceModel,
  readSentencePieceTokenizer,
  sentencePieceToLlama2c,
} from "./sentencepiece-model";
import { Llama2cTokenizer } from "./tokenizer";

const MODEL = sharedPath(SHARED.llama2SentencePiece);
const bytes = new Uint8Array(readFileSync(MODEL));

describe("SentencePiece tokenizer.model", () => {
  it("reads Llama 2's model: the pieces and scores llama2.c's tokenizer.bin was exported from", () => {
    const m = parseSentencePieceModel(bytes, MODEL);
    expect(m.pieces.length).toBe(32000);
    expect(m.modelType).toBe(2);
    expect(m.byteFallback).toBe(true);
    expect(m.pieces[1]).toEqual({ piece: "<s>", score: 0, type: 3 });
    expect(m.pieces[3].type).toBe(6); // <0x00>
    const fromModel = readSentencePieceTokenizer(MODEL);
    const bin = Llama2cTokenizer.fromFile(sharedPath(SHARED.llama2Tokenizer));
    expect(fromModel.vocabSize).toBe(bin.vocabSize);
    expect(Array.from(fromModel.scores)).toEqual(Array.from(bin.scores));
    for (let i = 0; i < bin.vocabSize; i += 97) expect(fromModel.pieces[i]).toEqual(bin.pieces[i]);
    // ids the Hugging Face tokenizers library gives for this vocabulary (see hf-tokenizer-peer.test.ts)
    expect(fromModel.encode("Once upon a time, there was a little girl named Lily.")).toEqual([
      9038, 2501, 263, 931, 29892, 727, 471, 263, 2217, 7826, 4257, 365, 2354, 29889,
    ]);
    expect(fromModel.encode("Unicode: café 🙂", { bos: true })).toEqual(
      bin.encode("Unicode: café 🙂", { bos: true }),
    );
  });

  it("refuses models it would tokenize wrongly, naming the file", () => {
    const m = parseSentencePieceModel(bytes, "x.model");
    expect(() => sentencePieceToLlama2c({ ...m, modelType: 1 }, "x.model")).toThrow(
      /^x.model: a Unigram SentencePiece model; int21 reads Llama-2-style/,
    );
    expect(() => sentencePieceToLlama2c({ ...m, removeExtraWhitespaces: true }, "x.model")).toThrow(
      /collapses whitespace/,
    );
    expect(() => sentencePieceToLlama2c({ ...m, normalizerName: "nmt_nfkc" }, "x.model")).toThrow(
      /"nmt_nfkc" normalizer/,
    );
    expect(() => sentencePieceToLlama2c({ ...m, pieces: m.pieces.slice(0, 100) }, "x.model")).toThrow(
      /^x.model: /,
    );
    expect(() => parseSentencePieceModel(new Uint8Array(0), "e.model")).toThrow(
      /e.model: not a valid SentencePiece model: it holds no pieces/,
    );
    expect(() => parseSentencePieceModel(readFileSync(sharedPath(SHARED.tok512)), "t.model")).toThrow(
      /^t.model: not a valid SentencePiece model/,
    );
  });

  it("a damaged file (bytes changed, truncated) is a named error or a tokenizer, never a crash or hang", () => {
    const head = bytes.subarray(0, 60_000); // the pieces come first: damage lands in them
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(head.length - 1), fc.nat(255)), { minLength: 1, maxLength: 4 }),
        fc.option(fc.nat(bytes.length), { nil: undefined }),
        (edits, cut) => {
          const b = bytes.slice(0, cut ?? bytes.length);
          for (const [at, v] of edits) if (at < b.length) b[at] = v;
          try {
            const m = parseSentencePieceModel(b, "d.model");
            const t = sentencePieceToLlama2c(m, "d.model");
            for (const id of t.encode("Hello world 🙂")) expect(id).toBeLessThan(t.vocabSize);
          } catch (e) {
            expect((e as Error).message).toMatch(/^d\.model: /);
          }
        },
      ),
      { seed: 3, numRuns: 60 },
    );
  }, 60_000);
});
