import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Adam, AdamW, crossEntropy, setBackend, tensor } from "@int21/autograd";
import { createQuantLinear, createReferenceBackend, rtnQuantize } from "@int21/quant-kernels";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Batch } from "./dataset";
import { splitExamples, textDataset } from "./dataset";
import type { LoRALinear } from "./lora-linear";
import { linearForward, loraParameters } from "./lora-op";
import { LoRAModel } from "./lora-model";
import { charTokenizer } from "./testing/char-tokenizer";
import { randomArray } from "./testing/dense-linear";
import { formatProgress, lossChartSvg, type Progress, Trainer, type TrainerOptions } from "./trainer";

const backend = createReferenceBackend();
const V = 131;
const dirs: string[] = [];
beforeAll(() => {
  setBackend(backend);
});
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const tok = charTokenizer();
const text = "the cat sat on the mat. a dog sat on a log. ".repeat(12);
const { train, heldOut } = splitExamples(textDataset(text, tok, { seqLen: 16 }), 4, 1);

/** A bigram model: one-hot(token) → frozen INT4 [V × V] layer with a LoRA (dropout 0.1). */
function bigram() {
  const base = createQuantLinear({
    q: rtnQuantize(randomArray(V * V, 3, 0.5), V, V, "int4-g32-asym-f16"),
    backend,
  });
  const modules = new Map([["lm_head", base as never]]);
  const model = new LoRAModel(modules);
  model.addAdapter({ targetModules: ["lm_head"], r: 4, alpha: 8, dropout: 0.1, seed: 5 });
  const layer = modules.get("lm_head") as unknown as LoRALinear;
  const loss = (b: Batch, info: { training: boolean }) => {
    const n = b.batch * b.seqLen;
    const x = new Float32Array(n * V);
    for (let i = 0; i < n; i++) x[i * V + b.input[i]] = 1;
    return crossEntropy(linearForward(layer, tensor(x, [n, V]), { training: info.training }), b.target);
  };
  return { model, layer, loss };
}

function options(over: Partial<TrainerOptions> = {}): TrainerOptions {
  const { model, loss } = bigram();
  return {
    optimizer: new AdamW(loraParameters(model), { lr: 0.05, weightDecay: 0.01 }),
    loss,
    train,
    heldOut,
    steps: 8,
    batchSize: 2,
    gradAccum: 2,
    schedule: { lr: 0.05, warmupSteps: 2 },
    maxGradNorm: 5,
    beforeMicroBatch: (m) => model.setDropoutStep(m),
    seed: 11,
    ...over,
  };
}

describe("Trainer", () => {
  it("lowers training and held-out loss and reports progress", async () => {
    const seen: Progress[] = [];
    const t = new Trainer(options({ steps: 30, evalEvery: 10, onProgress: (p) => seen.push(p) }));
    const before = t.evaluate();
    const res = await t.run();
    expect(res.steps).toBe(30);
    expect(res.history.train).toHaveLength(30);
    expect(res.history.eval.map(([s]) => s)).toEqual([10, 20, 30]);
    const trainStart = res.history.train[0][1];
    const trainEnd = res.history.train[29][1];
    expect(trainEnd).toBeLessThan(trainStart * 0.6);
    expect(res.history.eval[2][1]).toBeLessThan(before * 0.6);
    expect(res.tokens).toBe(30 * 2 * 2 * 16);
    const p = seen[29];
    expect(p).toMatchObject({ step: 30, totalSteps: 30 });
    expect(p.tokensPerSec).toBeGreaterThan(0);
    expect(p.rssBytes).toBeGreaterThan(0);
    expect(p.etaMs).toBe(0);
    expect(seen[9].evalLoss).toBe(res.history.eval[0][1]);
    expect(seen[0].lr).toBeCloseTo(0.025, 10); // warmup 1/2
    expect(formatProgress(seen[9])).toMatch(
      /^step 10\/30 \| loss \d+\.\d{4} \| eval \d+\.\d{4} \| lr .* tok\/s \| ETA .* \| rss \d+ MiB/,
    );
    expect(lossChartSvg(res.history)).toContain("held-out");
  });

  it("a run stopped after a checkpoint and resumed matches an uninterrupted run exactly", async () => {
    const dir = mkdtempSync(join(tmpdir(), "int21-trainer-"));
    dirs.push(dir);
    const full = options();
    const a = new Trainer(full);
    await a.run();
    const want = full.optimizer.params.map((p) => p.toArray());

    const first = options({ checkpointDir: dir, checkpointEvery: 3 });
    let saved = 0;
    first.onCheckpoint = (_d, step) => {
      saved = step;
    };
    await new Trainer(first).run({ until: 5 }); // "killed" after step 5: the last checkpoint is step 3
    expect(saved).toBe(3);
    const second = options({ checkpointDir: dir, checkpointEvery: 3 });
    const b = new Trainer(second);
    expect(await b.resume(dir)).toBe(true);
    expect(b.step).toBe(3);
    await b.run();
    expect(second.optimizer.params.map((p) => p.toArray())).toEqual(want);
    expect(b.history.train).toEqual(a.history.train);
    expect(b.history.eval).toEqual(a.history.eval);
  });

  it("resume refuses a checkpoint of a different run, and finds none in an empty dir", async () => {
    const dir = mkdtempSync(join(tmpdir(), "int21-trainer-"));
    dirs.push(dir);
    const t = new Trainer(options({ checkpointDir: dir, steps: 2 }));
    expect(await t.resume(dir)).toBe(false);
    await t.run();
    await expect(new Trainer(options({ seed: 12 })).resume(dir)).rejects.toThrow(
      /saved with seed 11, this run has 12/,
    );
    const { model, loss } = bigram();
    model.addAdapter({ name: "more", targetModules: ["lm_head"], r: 2 });
    const other = new Trainer({ ...options(), optimizer: new Adam(loraParameters(model)), loss });
    await expect(other.resume(dir)).rejects.toThrow(/holds 2 parameters, this run trains 4/);
  });

  it("rejects bad options", () => {
    expect(() => new Trainer(options({ steps: 0 }))).toThrow(/steps must be a positive integer/);
    expect(() => new Trainer(options({ gradAccum: 1.5 }))).toThrow(/gradAccum/);
    expect(() => new Trainer(options({ train: [] }))).toThrow(/no training examples/);
    expect(() => new Trainer(options({ schedule: { lr: -1 } }))).toThrow(/lr must be finite/);
    const { model } = bigram();
    model.setTrainable("default", false);
    expect(() => new Trainer(options({ optimizer: new Adam([]) }))).toThrow(/no parameters/);
    const bad = options({ loss: () => tensor([Number.NaN], []) });
    expect(() => new Trainer(bad).trainStep()).toThrow(/loss is NaN at step 1/);
  });
});
