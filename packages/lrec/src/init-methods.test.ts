import { readFileSync } from "node:fs";
import { setBackend } from "@int21/autograd";
import { calibrationWindows, type LlamaWeights, quantizeModel } from "@int21/model-llama";
import { Llama2cTokenizer, loadLlama2c } from "@int21/loaders";
import type { Backend } from "@int21/quant-kernels";
import { createWasmBackend } from "@int21/quant-kernels/wasm";
import { SHARED, sharedPath } from "@int21/shared-data";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { addLrecAdapter, llamaModuleMap } from "./adapter";
import { storyTokens } from "./evaluate";
import { allocateRanks, loftqQuantize } from "./init-methods";

let backend: Backend;
let teacher: LlamaWeights;
let calib: Int32Array[];
beforeAll(async () => {
  backend = await createWasmBackend({ threads: 1 });
  setBackend(backend);
  teacher = loadLlama2c(sharedPath(SHARED.stories260K), { backend });
  const tok = Llama2cTokenizer.fromFile(sharedPath(SHARED.tok512));
  const text = readFileSync(sharedPath(SHARED.tinystoriesValid), "utf8");
  calib = calibrationWindows(
    storyTokens(text, tok, { from: 100, to: 200, ctx: 1 << 30 }).flat(),
    4,
    64,
    tok.bosId,
  );
});
afterAll(() => backend?.dispose());
const rtn2 = (w: LlamaWeights) =>
  quantizeModel(w, { format: "int2-g64-asym-f16", method: "rtn", backend }).weights;

describe("allocateRanks", () => {
  it("spends at most the uniform budget, within [minRank, maxRank], and more on larger errors", () => {
    const student = rtn2(teacher);
    const ranks = allocateRanks(teacher, student, { r: 4, calib, backend });
    const mods = llamaModuleMap(student);
    let spent = 0;
    let uniform = 0;
    for (const [m, lin] of mods) {
      const r = ranks[m];
      expect(r).toBeGreaterThanOrEqual(1);
      expect(r).toBeLessThanOrEqual(16);
      spent += r * (lin.outFeatures + lin.inFeatures);
      uniform += 4 * (lin.outFeatures + lin.inFeatures);
    }
    expect(spent).toBeLessThanOrEqual(uniform);
    // nearly all of it: what is left is less than the largest projection's N + K
    expect(uniform - spent).toBeLessThan(64 + 172);
    expect(new Set(Object.values(ranks)).size).toBeGreaterThan(1);
    // the pattern attaches: each module gets its rank, alpha keeps α/r
    const { model } = addLrecAdapter(student, { r: 4, alpha: 8, rankPattern: ranks });
    for (const [m, layer] of model.layers()) {
      expect(layer.adapters[0].r).toBe(ranks[m]);
      expect(layer.adapters[0].scaling).toBeCloseTo(2, 12);
    }
    expect(() => allocateRanks(teacher, student, { r: 4, minRank: 5 })).toThrow(/minRank/);
  }, 120_000);
});

describe("loftqQuantize", () => {
  it("alternating lowers the weighted error left after the rank-r correction", () => {
    const errs: number[] = [];
    const q = loftqQuantize(teacher, {
      quantize: rtn2,
      r: 4,
      iterations: 3,
      calib,
      backend,
      onIteration: (_i, e) => errs.push(e),
    });
    expect(errs).toHaveLength(3);
    expect(errs[0]).toBeLessThan(1);
    expect(errs[2]).toBeLessThan(errs[0]);
    expect(llamaModuleMap(q).size).toBe(7 * teacher.config.nLayers);
    expect(() => loftqQuantize(teacher, { quantize: rtn2, r: 4, iterations: 0 })).toThrow(/iterations/);
  }, 120_000);
});
