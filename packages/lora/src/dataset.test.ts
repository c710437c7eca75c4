import { describe, expect, it } from "vitest";
import {
  batchIndices,
  collate,
  IGNORE_INDEX,
  permutation,
  splitExamples,
  textDataset,
  textExamples,
  textWindows,
} from "./dataset";
import { charTokenizer } from "./testing/char-tokenizer";

describe("text datasets", () => {
  it("cuts windows with shifted targets", () => {
    const ex = textWindows([0, 1, 2, 3, 4, 5, 6], { seqLen: 3 });
    expect(ex.map((e) => [Array.from(e.input), Array.from(e.target)])).toEqual([
      [
        [0, 1, 2],
        [1, 2, 3],
      ],
      [
        [3, 4, 5],
        [4, 5, 6],
      ],
    ]);
    expect(textWindows([0, 1, 2, 3, 4, 5, 6], { seqLen: 3, stride: 2 })).toHaveLength(2);
    expect(textWindows([0, 1, 2, 3, 4, 5, 6], { seqLen: 3, stride: 1 })).toHaveLength(4);
    expect(() => textWindows([1, 2], { seqLen: 2 })).toThrow(/fewer than one window/);
    expect(() => textWindows([1, 2], { seqLen: 0 })).toThrow(/seqLen must be/);
  });

  it("encodes documents with BOS", () => {
    const tok = charTokenizer();
    const ex = textDataset("ab<|endoftext|>\ncd<|endoftext|>", tok, {
      seqLen: 5,
      separator: "<|endoftext|>",
    });
    expect(Array.from(ex[0].input)).toEqual([1, ...tok.encode("ab"), 1, ...tok.encode("c")]);
  });

  it("counts documents, tokens and the tokens no window reaches", () => {
    const tok = charTokenizer();
    // BOS a b BOS c d e f g: 9 tokens; windows of 3 + 1 at 0 and 3 cover 7, 2 are left out
    const r = textExamples("ab<|endoftext|> <|endoftext|>cdefg", tok, {
      seqLen: 3,
      separator: "<|endoftext|>",
    });
    expect(r.documents).toBe(2);
    expect(r.tokens).toBe(9);
    expect(r.examples).toHaveLength(2);
    expect(r.unusedTokens).toBe(2);
    expect(textExamples("abcdefg", tok, { seqLen: 3, stride: 1 }).unusedTokens).toBe(0);
  });

  it("splits, shuffles and batches deterministically", () => {
    const ex = textWindows(
      Array.from({ length: 101 }, (_, i) => i),
      { seqLen: 4 },
    );
    const { train, heldOut } = splitExamples(ex, 0.2, 3);
    expect(heldOut).toHaveLength(5);
    expect(train).toHaveLength(20);
    expect(new Set([...train, ...heldOut]).size).toBe(25);
    expect(splitExamples(ex, 0.2, 3).heldOut).toEqual(heldOut);
    expect(() => splitExamples(ex, 25)).toThrow(/at least one example/);
    expect(permutation(10, 1).sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    // every epoch visits every example once
    const seen = Array.from({ length: 5 }, (_, i) => batchIndices(10, 2, 7, i)).flat();
    expect([...seen].sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(batchIndices(10, 2, 7, 3)).toEqual(batchIndices(10, 2, 7, 3));
    expect(batchIndices(10, 3, 7, 3)).toHaveLength(3); // crosses into epoch 1
  });

  it("collates with padding and counts trained tokens", () => {
    const b = collate([
      { input: Int32Array.from([5, 6, 7]), target: Int32Array.from([6, 7, 8]) },
      { input: Int32Array.from([9]), target: Int32Array.from([IGNORE_INDEX]) },
    ]);
    expect(b).toMatchObject({ batch: 2, seqLen: 3, tokens: 3, inputTokens: 4 });
    expect(Array.from(b.input)).toEqual([5, 6, 7, 9, 0, 0]);
    expect(Array.from(b.target)).toEqual([6, 7, 8, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX]);
    expect(() => collate([])).toThrow(/empty batch/);
  });
});
