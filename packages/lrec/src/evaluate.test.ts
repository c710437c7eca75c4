import { readFileSync } from "node:fs";
import { setBackend } from "@int21/autograd";
import { evaluateNll, evaluateStories, type LlamaWeights, quantizeModel } from "@int21/model-llama";
import { Llama2cTokenizer, loadLlama2c } from "@int21/loaders";
import type { Backend } from "@int21/quant-kernels";
import { createWasmBackend } from "@int21/quant-kernels/wasm";
import { SHARED, sharedPath } from "@int21/shared-data";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { storyTokens } from "./evaluate";

let backend: Backend;
let teacher: LlamaWeights;
let tok: Llama2cTokenizer;
let text: string;
beforeAll(async () => {
  backend = await createWasmBackend({ threads: 1 });
  setBackend(backend);
  teacher = loadLlama2c(sharedPath(SHARED.stories260K), { backend });
  tok = Llama2cTokenizer.fromFile(sharedPath(SHARED.tok512));
  text = readFileSync(sharedPath(SHARED.tinystoriesValid), "utf8");
});
afterAll(() => backend?.dispose());

describe("storyTokens scored by model-llama's evaluateNll (rows, with the teacher)", () => {
  it("NLL equals model-llama's evaluateStories on the same stories; the teacher's KL to itself is 0", () => {
    const stories = storyTokens(text, tok, { from: 0, to: 5, ctx: 512 });
    const ref = evaluateNll(teacher, stories, { teacher });
    const sep = "<|endoftext|>";
    const five = text
      .split(sep)
      .map((s) => s.trim())
      .filter(Boolean)
      .slice(0, 5)
      .join(sep);
    const want = evaluateStories(teacher, tok, five);
    expect(ref.tokens).toBe(want.tokens);
    expect(ref.meanNll).toBeCloseTo(want.meanNll, 5);
    expect(ref.teacherMeanNll).toBeCloseTo(ref.meanNll, 6);
    expect(ref.meanKl).toBeCloseTo(0, 6);
    const q = quantizeModel(teacher, { format: "int4-g32-asym-f16", method: "rtn", backend }).weights;
    const e = evaluateNll(q, stories, { teacher });
    expect(e.meanKl).toBeGreaterThan(0);
    expect(e.teacherMeanNll).toBeCloseTo(ref.meanNll, 6);
    expect(e.perplexity).toBeCloseTo(Math.exp(e.meanNll), 10);
    expect(e.meanNll).toBeCloseTo(evaluateStories(q, tok, five).meanNll, 4);
    // rows are independent sequences: the token-weighted mean of each row scored alone
    let sum = 0;
    let kl = 0;
    for (const row of stories) {
      const one = evaluateNll(q, row, { ctx: row.length, teacher });
      sum += one.meanNll * one.tokens;
      kl += one.meanKl * one.tokens;
    }
    expect(e.meanNll).toBeCloseTo(sum / e.tokens, 6);
    expect(e.meanKl).toBeCloseTo(kl / e.tokens, 6);
  });

  it("storyTokens: BOS first, cut to ctx, a range of stories; a row longer than ctx is an error", () => {
    const s = storyTokens(text, tok, { from: 2, to: 4, ctx: 20 });
    expect(s).toHaveLength(2);
    for (const row of s) {
      expect(row[0]).toBe(tok.bosId);
      expect(row.length).toBeLessThanOrEqual(20);
    }
    expect(() => evaluateNll(teacher, [new Array(600).fill(1)], { teacher })).toThrow(
      /row 0 has 600 tokens, more than ctx 512/,
    );
    expect(() => evaluateNll(teacher, [[1, 2, 3]], { stride: 1 })).toThrow(/stride/);
  });
});
