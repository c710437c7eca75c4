import { Llama2cTokenizer, evaluateNll, loadLlama2c } from "@int21/model-llama";
import { SHARED, sharedPath } from "@int21/shared-data";
import { readFileSync } from "node:fs";
import { createWasmBackend } from "@int21/quant-kernels";
import { afterAll, describe, expect, it } from "vitest";
import { evaluateAgainstTeacher } from "./evaluation";

const backend = await createWasmBackend({ threads: 1 });
afterAll(() => backend.dispose());
const float = loadLlama2c(sharedPath(SHARED.stories260K), { backend });
const tok = Llama2cTokenizer.fromFile(sharedPath(SHARED.tok512), 512);
const tokens = tok.encode(readFileSync(sharedPath(SHARED.tinystoriesValid), "utf8").slice(0, 1500), {
  bos: true,
});

describe("evaluateAgainstTeacher", () => {
  it("scores the same tokens as evaluateNll with the same NLL, and zero KL against itself", () => {
    for (const [ctx, stride] of [
      [64, 64],
      [64, 24],
    ]) {
      const ref = evaluateNll(float, tokens, { ctx, stride });
      const r = evaluateAgainstTeacher(float, float, tokens, { ctx, stride });
      expect(r.tokens).toBe(ref.tokens);
      expect(r.windows).toBe(ref.windows);
      expect(r.meanNll).toBeCloseTo(ref.meanNll, 5);
      expect(r.teacherMeanNll).toBeCloseTo(r.meanNll, 10);
      expect(Math.abs(r.meanKl)).toBeLessThan(1e-9);
    }
  }, 30_000);

  it("KL grows as the student gets coarser (INT8 < INT4 < INT2)", () => {
    const kl = (format: string) =>
      evaluateAgainstTeacher(
        loadLlama2c(sharedPath(SHARED.stories260K), { backend, quantize: { format } }),
        float,
        tokens,
        { ctx: 128, stride: 128 },
      ).meanKl;
    const k8 = kl("int8-g64-asym-f16");
    const k4 = kl("int4-g64-asym-f16");
    const k2 = kl("int2-g64-asym-f16");
    expect(k8).toBeGreaterThan(0);
    expect(k8).toBeLessThan(k4);
    expect(k4).toBeLessThan(k2);
  }, 30_000);

  it("rejects a teacher with another vocabulary", () => {
    const other = { ...float, config: { ...float.config, vocabSize: 1000 } };
    expect(() => evaluateAgainstTeacher(float, other, tokens, { ctx: 32, stride: 32 })).toThrow(
      "the teacher's vocabulary has 1000 tokens",
    );
  });
});
