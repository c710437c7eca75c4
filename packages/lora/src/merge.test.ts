import {
  createFloatLinear,
  createQuantLinear,
  createReferenceBackend,
  type Linear,
  rtnQuantize,
} from "@int21/quant-kernels";
import { describe, expect, it } from "vitest";
import { LoRALinear } from "./lora-linear";
import { applyLoRA } from "./lora-model";
import {
  mergeAdapters,
  mergeAndUnload,
  mergeAndUnloadModel,
  mergeModel,
  unmergeAdapters,
  unmergeModel,
} from "./merge";
import { DenseLinear, randomArray } from "./testing/dense-linear";

const backend = createReferenceBackend();
const N = 12;
const K = 64;

function run(l: Linear, x: Float32Array, rows: number): Float32Array {
  const y = new Float32Array(rows * l.outFeatures);
  l.forward(x, rows, y);
  return y;
}

function maxDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

function stacked(base: Linear) {
  const l = new LoRALinear(base);
  l.addAdapter({
    name: "lrec",
    r: 4,
    alpha: 8,
    seed: 1,
    loraB: randomArray(N * 4, 2, 0.2),
    trainable: false,
  });
  l.addAdapter({ name: "task", r: 2, alpha: 4, seed: 3, loraB: randomArray(N * 2, 4, 0.2) });
  return l;
}

const x = randomArray(5 * K, 9);

describe("merge", () => {
  it("into a float base is exact (f32 rounding) and unmerges to the very same base", () => {
    const base = createFloatLinear({
      weight: randomArray(N * K, 5, 0.1),
      outFeatures: N,
      inFeatures: K,
      backend,
    });
    const l = stacked(base);
    const before = run(l, x, 5);
    const rep = mergeAdapters(l);
    expect(rep).toMatchObject({ adapters: ["lrec", "task"], requantized: false });
    expect(rep.maxAbsError).toBeLessThan(1e-7);
    expect(rep.deltaRms).toBeGreaterThan(0.01);
    expect(l.base).not.toBe(base);
    expect(l.adapters.every((a) => a.merged && !a.active)).toBe(true);
    expect(maxDiff(run(l, x, 5), before)).toBeLessThan(1e-5);
    expect(() => mergeAdapters(l, { names: ["task"] })).toThrow(/"task" is already merged/);
    unmergeAdapters(l);
    expect(l.base).toBe(base);
    expect(run(l, x, 5)).toEqual(before);
  });

  it("into a packed base is a re-quantization, reported with its error", () => {
    const q = rtnQuantize(randomArray(N * K, 6, 0.1), N, K, "int4-g32-asym-f16");
    const base = createQuantLinear({ q, backend });
    const l = stacked(base);
    const before = run(l, x, 5);
    const rep = mergeAdapters(l);
    expect(rep.requantized).toBe(true);
    expect(rep.format).toBe("int4-g32-asym-f16");
    expect(rep.rmsError).toBeGreaterThan(0);
    expect(rep.relError).toBeGreaterThan(0);
    expect(rep.relError).toBeLessThan(0.2);
    expect(rep.maxAbsError).toBeGreaterThanOrEqual(rep.rmsError);
    // the output error is what the weight error predicts: |Δy| ≤ maxAbsError · Σ|x|
    const after = run(l, x, 5);
    let sumAbs = 0;
    for (let r = 0; r < 5; r++)
      sumAbs = Math.max(
        sumAbs,
        x.slice(r * K, (r + 1) * K).reduce((s, v) => s + Math.abs(v), 0),
      );
    expect(maxDiff(after, before)).toBeGreaterThan(0);
    expect(maxDiff(after, before)).toBeLessThanOrEqual(rep.maxAbsError * sumAbs + 1e-4);
    unmergeAdapters(l);
    expect((l.base as typeof base).q).toBe(q);
    expect(run(l, x, 5)).toEqual(before);
  });

  it("merges a chosen adapter of a stack; the other still applies", () => {
    const base = createFloatLinear({
      weight: randomArray(N * K, 7, 0.1),
      outFeatures: N,
      inFeatures: K,
      backend,
    });
    const l = stacked(base);
    const before = run(l, x, 5);
    mergeAdapters(l, { names: ["lrec"] });
    expect(l.adapter("task").active).toBe(true);
    expect(maxDiff(run(l, x, 5), before)).toBeLessThan(1e-5);
  });

  it("mergeAndUnload returns a plain layer and leaves the LoRA layer as it was", () => {
    const base = createFloatLinear({
      weight: randomArray(N * K, 8, 0.1),
      outFeatures: N,
      inFeatures: K,
      backend,
    });
    const l = stacked(base);
    const before = run(l, x, 5);
    const { linear, report } = mergeAndUnload(l);
    expect(linear).not.toBeInstanceOf(LoRALinear);
    expect(report.adapters).toEqual(["lrec", "task"]);
    expect(maxDiff(run(linear, x, 5), before)).toBeLessThan(1e-5);
    expect(l.base).toBe(base);
    expect(l.adapters.every((a) => a.active)).toBe(true);
  });

  it("works over a whole model", () => {
    const modules = new Map<string, Linear>();
    for (const name of ["l0.q_proj", "l0.v_proj", "l0.o_proj"]) {
      modules.set(
        name,
        createQuantLinear({
          q: rtnQuantize(randomArray(N * K, name.length, 0.1), N, K, "int2-g64-asym-f16"),
          backend,
        }),
      );
    }
    const model = applyLoRA(modules, { targetModules: ["q_proj", "v_proj"], r: 2 });
    for (const [, a] of model.adapters()) a.loraB.set(randomArray(a.loraB.length, 3, 0.1));
    const reports = mergeModel(model);
    expect(reports.map((r) => [r.module, r.requantized, r.format])).toEqual([
      ["l0.q_proj", true, "int2-g64-asym-f16"],
      ["l0.v_proj", true, "int2-g64-asym-f16"],
    ]);
    unmergeModel(model);
    expect([...model.layers().values()].every((l) => l.adapters.every((a) => a.active))).toBe(true);
    const unloaded = mergeAndUnloadModel(model);
    expect(unloaded).toHaveLength(2);
    expect([...modules.values()].some((l) => l instanceof LoRALinear)).toBe(false);
  });

  it("rejects a base it cannot merge into", () => {
    const l = stacked(new DenseLinear(new Float32Array(N * K), N, K));
    expect(() => mergeAdapters(l)).toThrow(/neither a quant-kernels FloatLinear/);
    expect(() => mergeAdapters(l, { names: ["nope"] })).toThrow(/no adapter named "nope"/);
  });
});
