import { readFileSync } from "node:fs";
import { setBackend } from "@int21/autograd";
import {
  evaluateStories,
  Llama2cTokenizer,
  type LlamaWeights,
  loadLlama2c,
  quantizeModel,
} from "@int21/model-llama";
import type { Backend } from "@int21/quant-kernels";
import { createWasmBackend } from "@int21/quant-kernels/wasm";
import { SHARED, sharedPath } from "@int21/shared-data";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { evaluateStudent, storyTokens, teacherReference } from "./evaluate";

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

describe("teacherReference / evaluateStudent", () => {
  it("NLL equals model-llama's evaluateStories on the same stories; the teacher's KL to itself is 0", () => {
    const stories = storyTokens(text, tok, { from: 0, to: 5, ctx: 512 });
    const ref = teacherReference(teacher, stories);
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
    const self = evaluateStudent(ref, teacher);
    expect(self.meanKl).toBeCloseTo(0, 6);
    expect(self.meanNll).toBeCloseTo(ref.meanNll, 6);
    const q = quantizeModel(teacher, { format: "int4-g32-asym-f16", method: "rtn", backend }).weights;
    const e = evaluateStudent(ref, q);
    expect(e.meanKl).toBeGreaterThan(0);
    expect(e.perplexity).toBeCloseTo(Math.exp(e.meanNll), 10);
    expect(e.meanNll).toBeCloseTo(evaluateStories(q, tok, five).meanNll, 4);
  });

  it("storyTokens: BOS first, cut to ctx, a range of stories", () => {
    const s = storyTokens(text, tok, { from: 2, to: 4, ctx: 20 });
    expect(s).toHaveLength(2);
    for (const row of s) {
      expect(row[0]).toBe(tok.bosId);
      expect(row.length).toBeLessThanOrEqual(20);
    }
    expect(() => teacherReference(teacher, [new Array(600).fill(1)])).toThrow(/more than seqLen/);
  });
});
