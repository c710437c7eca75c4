import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setBackend } from "@int21/autograd";
import { RunMismatchError } from "@int21/lora";
import { Llama2cTokenizer, loadLlama2c } from "@int21/loaders";
import { type LlamaWeights, quantizeModel } from "@int21/model-llama";
import type { Backend } from "@int21/quant-kernels";
import { createWasmBackend } from "@int21/quant-kernels/wasm";
import { SHARED, sharedPath } from "@int21/shared-data";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { effectiveBits } from "./adapter";
import { LREC_RECIPE, type LrecJobResult, lrecJob, recipeLambda } from "./lrec-job";

let backend: Backend;
let teacher: LlamaWeights;
let tok: Llama2cTokenizer;
let trainText: string;
let heldOutText: string;
const dirs: string[] = [];
const tmp = () => {
  const d = mkdtempSync(join(tmpdir(), "lrec-job-"));
  dirs.push(d);
  return d;
};

beforeAll(async () => {
  backend = await createWasmBackend({ threads: 1 });
  setBackend(backend);
  teacher = loadLlama2c(sharedPath(SHARED.stories260K), { backend });
  tok = Llama2cTokenizer.fromFile(sharedPath(SHARED.tok512));
  const stories = readFileSync(sharedPath(SHARED.tinystoriesValid), "utf8").split("<|endoftext|>");
  // held out: stories 0–3; training: stories 100–139 (disjoint)
  heldOutText = stories.slice(0, 4).join("<|endoftext|>");
  trainText = stories.slice(100, 140).join("<|endoftext|>");
});
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  backend?.dispose();
});

const int2 = () => quantizeModel(teacher, { format: "int2-g32-asym-f16", method: "rtn", backend }).weights;
/** A small job: rank 2, 2 × 32 tokens a step, LoftQ with RTN. */
const small = { rank: 2, seq: 32, batch: 2, lr: 3e-3, evalTokens: 300, loftqMethod: "rtn", calibWindows: 4 };

describe("lrecJob on stories260K INT2", () => {
  it("the default recipe is the methods table's winner; λ by the student's bits", () => {
    expect(LREC_RECIPE).toMatchObject({
      steps: 1000,
      rank: 8,
      lr: 1.5e-3,
      schedule: "cosine",
      seq: 128,
      batch: 4,
      init: "svd-act",
      loftqIterations: 3,
      trainScales: true,
      scaleRate: 10,
    });
    expect([2, 3, 4, 8].map(recipeLambda)).toEqual([120, 40, 10, 10]);
  });

  it("LoftQ + whitened SVD + trained scales: lowers held-out KL, reports the gap, resumes and skips a finished run", async () => {
    const student = int2();
    const statePath = join(tmp(), "state.safetensors");
    const notes: string[] = [];
    const etas: number[] = [];
    const res = (await lrecJob({
      teacher,
      student,
      tokenizer: tok,
      trainText,
      heldOutText,
      ...small,
      steps: 8,
      loftqIterations: 2,
      statePath,
      backend,
      onNote: (m) => notes.push(m),
      onProgress: (p) => etas.push(p.etaMs),
      log: () => {},
    })) as LrecJobResult;
    expect(res.alreadyFinished).toBe(false);
    expect(res.recipe).toMatchObject({ lambda: 120, alpha: 4, init: "svd-act", loftqIterations: 2 });
    expect(res.history).toHaveLength(8);
    expect(etas).toHaveLength(8);
    expect(etas.at(-1)).toBe(0);
    expect(notes.some((n) => /LoftQ iteration 2 of 2/.test(n))).toBe(true);
    // LoftQ's re-quantization is the new base; the given student is left as it was
    expect(res.student).not.toBe(student);
    expect(res.trainScales).toBe(true);
    const h = res.heldOut!;
    expect(h.source).toBe("heldOut");
    expect(h.tokens).toBe(300);
    // evaluateNll's windows of 256 tokens: the first token of each is context only
    expect(h.corrected.tokens).toBe(300 - Math.ceil(300 / 256));
    expect(h.corrected.meanKl).toBeLessThan(h.quantized.meanKl);
    expect(h.corrected.meanNll).toBeLessThan(h.quantized.meanNll);
    expect(h.teacher.meanNll).toBeCloseTo(h.corrected.teacherMeanNll, 10);
    expect(h.gapRecovered).toBeCloseTo(
      (h.quantized.meanNll - h.corrected.meanNll) / (h.quantized.meanNll - h.teacher.meanNll),
      12,
    );
    expect(res.bitsPerWeight).toBeCloseTo(effectiveBits(res.student, { adapterDtype: "f16" }), 12);
    expect(res.bitsPerWeight).toBeGreaterThan(effectiveBits(student));
    expect(res.trainableParameters).toBe(res.model.parameterCount("lrec"));
    expect(res.lossChartSvg).toContain("<svg");
    expect(existsSync(statePath)).toBe(true);
    // the same job again: the state file holds every step
    const again = { teacher, tokenizer: tok, trainText, heldOutText, ...small, steps: 8, loftqIterations: 2 };
    const done = await lrecJob({ ...again, student: int2(), statePath, skipIfFinished: true, backend });
    expect(done).toMatchObject({ alreadyFinished: true, steps: 8 });
    // a different run is refused before any work, each difference listed
    await expect(lrecJob({ ...again, student: int2(), statePath, lr: 1e-2, backend })).rejects.toThrow(
      RunMismatchError,
    );
    // continued with more steps (--resume)
    const more = (await lrecJob({
      ...again,
      student: int2(),
      statePath,
      steps: 9, // the same warmup (min(10, steps / 10) = 0): only steps differs
      forceResume: true,
      backend,
      log: () => {},
    })) as LrecJobResult;
    expect(more.resumed).toBe(true);
    expect(more.resumedDespite.map((d) => d.field)).toEqual(["steps"]);
    expect(more.steps).toBe(9);
    expect(more.history).toHaveLength(9);
  }, 240_000);

  it("without a held-out text the end of the training text is held out; B = 0 and fixed scales", async () => {
    const student = int2();
    const all = tok.encode(trainText.replace(/<\|endoftext\|>/g, "\n"), { bos: true });
    const res = (await lrecJob({
      teacher,
      student,
      tokenizer: tok,
      trainText,
      ...small,
      steps: 3,
      init: "zero",
      trainScales: false,
      lambda: 5,
      log: () => {},
    })) as LrecJobResult;
    expect(res.recipe).toMatchObject({ lambda: 5, loftqIterations: 0, init: "zero" });
    expect(res.student).toBe(student);
    expect(res.trainScales).toBe(false);
    const nEval = Math.min(300, Math.floor(all.length / 5));
    expect(res.heldOut?.source).toBe("train-tail");
    expect(res.heldOut?.tokens).toBe(nEval);
    expect(res.trainTokens).toBe(all.length - nEval);
  }, 120_000);

  it("LoftQ is skipped (with a note) by default, and refused when asked, where the projections have several formats", async () => {
    const mixed = int2();
    const int4 = quantizeModel(teacher, { format: "int4-g32-asym-f16", method: "rtn", backend }).weights;
    mixed.layers[0] = { ...mixed.layers[0], wq: int4.layers[0].wq };
    const notes: string[] = [];
    const base = { teacher, tokenizer: tok, trainText, ...small, steps: 1, evalTokens: 0, log: () => {} };
    const res = (await lrecJob({ ...base, student: mixed, onNote: (m) => notes.push(m) })) as LrecJobResult;
    expect(res.recipe.loftqIterations).toBe(0);
    expect(res.student).toBe(mixed);
    expect(res.heldOut).toBeUndefined();
    expect(notes.join("\n")).toMatch(
      /LoftQ skipped: the student's projections have 2 formats \(int4-g32-asym-f16, int2-g32-asym-f16\)/,
    );
    await expect(lrecJob({ ...base, student: mixed, loftqIterations: 2 })).rejects.toThrow(
      /LoftQ \(loftqIterations 2\): the student's projections have 2 formats/,
    );
  }, 120_000);

  it("bad settings are errors naming the setting or the text", async () => {
    const base = { teacher, student: int2(), tokenizer: tok, trainText, ...small, steps: 1 };
    await expect(lrecJob({ ...base, init: "zero", loftqIterations: 2 })).rejects.toThrow(
      /LoftQ .* needs init svd/,
    );
    await expect(lrecJob({ ...base, seq: 600 })).rejects.toThrow(/seq 600 must be below .*seqLen 512/);
    await expect(
      lrecJob({ ...base, trainText: "Once.", labels: { train: "--data tiny.txt" } }),
    ).rejects.toThrow(/--data tiny.txt: \d+ training tokens, fewer than one window/);
    await expect(lrecJob({ ...base, steps: 0 })).rejects.toThrow(/steps must be an integer ≥ 1/);
    await expect(lrecJob({ ...base, lr: Number.NaN })).rejects.toThrow(/lr must be a finite number/);
    await expect(lrecJob({ ...base, student: teacher })).rejects.toThrow(/no packed projections/);
    const narrow = { ...teacher, config: { ...teacher.config, dim: 32 } };
    await expect(
      lrecJob({ ...base, teacher: narrow, labels: { teacher: "--teacher t.bin" } }),
    ).rejects.toThrow(/^--teacher t.bin: its dim is 32, the student's is 64$/);
  });
});
