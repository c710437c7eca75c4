import { setBackend } from "@int21/autograd";
import { Llama2cTokenizer, loadLlama2c } from "@int21/loaders";
import type { Backend } from "@int21/quant-kernels";
import { createWasmBackend } from "@int21/quant-kernels/wasm";
import { SHARED, sharedPath } from "@int21/shared-data";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { teacherSample, windowData } from "./data";

let backend: Backend;
beforeAll(async () => {
  backend = await createWasmBackend({ threads: 1 });
  setBackend(backend);
});
afterAll(() => backend?.dispose());

describe("windowData", () => {
  const ids = Array.from({ length: 100 }, (_, i) => i);
  it("windows of seq + 1 tokens, targets shifted by one, a pure function of the step", () => {
    const d = windowData(ids, { batch: 3, seq: 8, seed: 4 });
    const b = d(5);
    expect(b.input).toHaveLength(3);
    b.input.forEach((row, i) => {
      expect(row).toHaveLength(8);
      for (let t = 0; t < 8; t++) {
        expect(row[t]).toBe(row[0] + t);
        expect(b.target[i * 8 + t]).toBe(row[t] + 1);
      }
      expect(row[0] + 8).toBeLessThan(100);
    });
    expect(d(5)).toEqual(b);
    expect(d(6)).not.toEqual(b);
    expect(windowData(ids, { batch: 3, seq: 8, seed: 5 })(5)).not.toEqual(b);
  });
  it("names bad options", () => {
    expect(() => windowData(ids, { batch: 0, seq: 8 })).toThrow(/batch/);
    expect(() => windowData(ids.slice(0, 5), { batch: 1, seq: 8 })).toThrow(/fewer than one window/);
  });
});

describe("teacherSample", () => {
  it("n sequences of seq + 1 tokens from BOS, deterministic for a seed, mostly English", () => {
    const teacher = loadLlama2c(sharedPath(SHARED.stories260K), { backend });
    const tok = Llama2cTokenizer.fromFile(sharedPath(SHARED.tok512));
    const a = teacherSample(teacher, tok, 2, 40, 7);
    expect(a).toHaveLength(2);
    for (const s of a) {
      expect(s).toHaveLength(41);
      expect(s[0]).toBe(tok.bosId);
    }
    expect(teacherSample(teacher, tok, 2, 40, 7)).toEqual(a);
    expect(teacherSample(teacher, tok, 2, 40, 8)).not.toEqual(a);
    const text = tok.decodeAll(a[0]);
    expect(text.split(/\s+/).filter((w) => /^[A-Za-z]+[.,!?"]*$/.test(w)).length).toBeGreaterThan(4);
    expect(() => teacherSample(teacher, tok, 1, 600, 1)).toThrow(/seq must be/);
  });
});
