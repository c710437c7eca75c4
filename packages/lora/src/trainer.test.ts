import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Adam, AdamW, scale, setBackend, tensor } from "@int21/autograd";
import { createReferenceBackend } from "@int21/quant-kernels";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Batch } from "./dataset";
import { batchIndices, collate, splitExamples, textDataset } from "./dataset";
import { loraParameters } from "./lora-op";
import { RunMismatchError, TrainingDivergedError } from "./run-identity";
import { charTokenizer } from "./testing/char-tokenizer";
import { bigramLoRA } from "./testing/bigram";
import {
  formatProgress,
  lossChartSvg,
  type Progress,
  TRAINER_CHECKPOINT_FILE,
  Trainer,
  type TrainerOptions,
  trainerCheckpointInfo,
} from "./trainer";

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
const bigram = () => bigramLoRA(backend, V);

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
    await expect(new Trainer(options({ seed: 12 })).resume(dir)).rejects.toThrow(/seed: 11 → 12/);
    const { model, loss } = bigram();
    model.addAdapter({ name: "more", targetModules: ["lm_head"], r: 2 });
    const other = new Trainer({ ...options(), optimizer: new Adam(loraParameters(model)), loss });
    await expect(other.resume(dir)).rejects.toThrow(/parameters: \["4x131","131x4"\] → \[/);
    // forcing cannot make parameters of other shapes fit
    await expect(other.resume(dir, { force: true })).rejects.toThrow(/holds 2 parameters, this run trains 4/);
  });

  it("rejects bad options", () => {
    expect(() => new Trainer(options({ steps: 0 }))).toThrow(/steps must be a positive integer/);
    expect(() => new Trainer(options({ gradAccum: 1.5 }))).toThrow(/gradAccum/);
    expect(() => new Trainer(options({ train: [] }))).toThrow(/no training examples/);
    expect(() => new Trainer(options({ schedule: { lr: -1 } }))).toThrow(/lr must be finite/);
    const { model } = bigram();
    model.setTrainable("default", false);
    expect(() => new Trainer(options({ optimizer: new Adam([]) }))).toThrow(/no parameters/);
    expect(() => new Trainer(options({ divergence: { factor: 1 } }))).toThrow(/divergence factor must be/);
    expect(() => new Trainer(options({ divergence: { steps: 0 } }))).toThrow(/divergence steps must be/);
  });

  it("a run's identity covers the data and every hyper-parameter; each difference is listed", async () => {
    const dir = mkdtempSync(join(tmpdir(), "int21-trainer-"));
    dirs.push(dir);
    await new Trainer(
      options({ checkpointDir: dir, steps: 2, identity: { model: "sha256:aa", r: 4 } }),
    ).run();
    const other = (over: Partial<TrainerOptions>) =>
      new Trainer(options({ steps: 2, identity: { model: "sha256:aa", r: 4 }, ...over }));
    const err = await other({
      steps: 3,
      schedule: { lr: 0.5, warmupSteps: 2 },
      train: train.slice(1),
      identity: { model: "sha256:bb", r: 4 },
    })
      .resume(dir)
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RunMismatchError);
    const e = err as RunMismatchError;
    expect(e.step).toBe(2);
    expect(e.differences.map((d) => d.field).sort()).toEqual(
      ["lr", "model", "schedule", "steps", "trainExamples"].sort(),
    );
    expect(e.message).toMatch(/steps: 2 → 3/);
    expect(e.message).toMatch(/lr: 0\.05 → 0\.5/);
    expect(e.message).toMatch(/model: sha256:aa… → sha256:bb…/);
    // the held-out examples, the batch size, the clipping and extra identity fields count too
    for (const [over, field] of [
      [{ heldOut: heldOut.slice(1) }, "heldOutExamples"],
      [{ batchSize: 3 }, "batchSize"],
      [{ maxGradNorm: 1 }, "maxGradNorm"],
      [{ identity: { model: "sha256:aa", r: 8 } }, "r"],
    ] as const) {
      const d = await other(over)
        .resume(dir)
        .catch((x: RunMismatchError) => x.differences.map((y) => y.field));
      expect(d).toEqual([field]);
    }
    // the same run again: resumed, finished, nothing to do
    expect(await other({}).resume(dir)).toBe(true);
  });

  it("an identical rerun of a finished run does nothing and rewrites nothing", async () => {
    const dir = mkdtempSync(join(tmpdir(), "int21-trainer-"));
    dirs.push(dir);
    let saves = 0;
    await new Trainer(options({ checkpointDir: dir, steps: 3, checkpointEvery: 1 })).run();
    const file = join(dir, TRAINER_CHECKPOINT_FILE);
    const mtime = statSync(file).mtimeMs;
    const again = options({
      checkpointDir: dir,
      steps: 3,
      checkpointEvery: 1,
      onCheckpoint: () => void saves++,
    });
    const t = new Trainer(again);
    const before = again.optimizer.params.map((p) => p.toArray());
    expect(await t.resume(dir)).toBe(true);
    expect(t.finished).toBe(true);
    const res = await t.run();
    expect(res.steps).toBe(3);
    expect(res.tokens).toBe(0);
    expect(saves).toBe(0);
    expect(statSync(file).mtimeMs).toBe(mtime);
    expect(again.optimizer.params.map((p) => p.toArray())).not.toEqual(before); // restored, trained values
  });

  it("a forced resume continues a different run with its new hyper-parameters", async () => {
    const dir = mkdtempSync(join(tmpdir(), "int21-trainer-"));
    dirs.push(dir);
    await new Trainer(options({ checkpointDir: dir, steps: 4, schedule: undefined })).run();
    const o = options({ checkpointDir: dir, steps: 6, schedule: undefined });
    o.optimizer.lr = 0.01;
    const t = new Trainer(o);
    await expect(t.resume(dir)).rejects.toThrow(/steps: 4 → 6/);
    expect(await t.resume(dir, { force: true })).toBe(true);
    expect(t.resumedDespite.map((d) => d.field).sort()).toEqual(["lr", "steps"]);
    expect(t.step).toBe(4);
    expect(o.optimizer.lr).toBe(0.01);
    const lrs: number[] = [];
    o.onProgress = (p) => lrs.push(p.lr);
    const res = await t.run();
    expect(res.steps).toBe(6);
    expect(lrs).toEqual([0.01, 0.01]);
    // the checkpoint now carries the new run's identity: a plain resume of the new run finds it finished
    const same = options({ checkpointDir: dir, steps: 6, schedule: undefined });
    same.optimizer.lr = 0.01;
    const u = new Trainer(same);
    expect(await u.resume(dir)).toBe(true);
    expect(u.finished).toBe(true);
  });

  it("a step with a non-finite loss or gradient is skipped and counted, and the run goes on", async () => {
    const o = options({ steps: 6, gradAccum: 1 });
    const base = o.loss;
    const snapshots: number[][][] = [];
    o.loss = (b, info) => (info.step === 2 ? tensor([Number.NaN], []) : base(b, info));
    const seen: Progress[] = [];
    o.onProgress = (p) => {
      seen.push(p);
      snapshots.push(o.optimizer.params.map((x) => Array.from(x.toFloat32Array())));
    };
    const t = new Trainer(o);
    const res = await t.run();
    expect(res.steps).toBe(6);
    expect(res.skippedSteps).toBe(1);
    expect(res.history.skipped).toEqual([3]);
    expect(res.history.train.map(([s]) => s)).toEqual([1, 2, 4, 5, 6]);
    expect(seen.map((p) => p.skipped)).toEqual([false, false, true, false, false, false]);
    expect(seen[5].skippedSteps).toBe(1);
    expect(formatProgress(seen[2])).toMatch(/^step 3\/6 \| loss skipped \(not finite\) \|/);
    expect(snapshots[2]).toEqual(snapshots[1]); // no update on the skipped step
    expect(snapshots[3]).not.toEqual(snapshots[2]);
    // a non-finite gradient (finite losses) is skipped too: the second micro-batch of step 1 finds the
    // first one's gradient poisoned
    const g = options({ steps: 2, gradAccum: 2, maxGradNorm: undefined });
    const gl = g.loss;
    g.loss = (b, info) => {
      const grad = g.optimizer.params[0].grad;
      if (info.micro === 1 && grad) grad.data[0] = Number.NaN;
      return gl(b, info);
    };
    const r2 = await new Trainer(g).run();
    expect(r2.history.skipped).toEqual([1]);
    expect(r2.history.train.map(([s]) => s)).toEqual([2]);
    for (const p of g.optimizer.params) expect(p.toFloat32Array().every(Number.isFinite)).toBe(true);
  });

  it("an absurd learning rate stops the run as diverged and keeps the last good checkpoint", async () => {
    const dir = mkdtempSync(join(tmpdir(), "int21-trainer-"));
    dirs.push(dir);
    const checkpoints: number[] = [];
    const o = options({
      steps: 40,
      checkpointDir: dir,
      checkpointEvery: 2,
      onCheckpoint: (_d, s) => void checkpoints.push(s),
      divergence: { steps: 4 },
    });
    // sane for 6 steps, then lr 1e3
    o.schedule = undefined;
    o.optimizer.lr = 0.05;
    o.beforeMicroBatch = (m) => {
      if (m >= 6 * 2) o.optimizer.lr = 1e3;
    };
    const t = new Trainer(o);
    const err = await t.run().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TrainingDivergedError);
    const e = err as TrainingDivergedError;
    expect(e.message).toMatch(
      /training diverged at step \d+: .*running minimum.*last good checkpoint \(step 6\)/,
    );
    expect(e.lastGoodStep).toBe(6);
    expect(checkpoints.at(-1)).toBe(6);
    expect(e.step).toBe(6 + 1 + 4); // step 7's update is the first bad one; 4 bad losses in a row (steps 8–11)
    // the checkpoint holds the step-6 state: resuming it and training on at a sane lr works
    const again = options({ steps: 40, checkpointDir: dir, divergence: { steps: 4 }, schedule: undefined });
    const r = new Trainer(again);
    expect(await r.resume(dir)).toBe(true);
    expect(r.step).toBe(6);
    for (const p of again.optimizer.params) expect(p.toFloat32Array().every(Number.isFinite)).toBe(true);
  });

  it("takes a batch source, a loss with terms, a checkpoint file, extra state and a backend", async () => {
    const dir = mkdtempSync(join(tmpdir(), "int21-trainer-"));
    dirs.push(dir);
    const file = join(dir, "run.safetensors");
    // a backend that counts its sgemm calls: every step and evaluation runs on it
    let calls = 0;
    const counting = new Proxy(backend, {
      get: (t, k) => {
        if (k === "sgemm") calls++;
        return Reflect.get(t, k);
      },
    });
    const make = (over: { until?: number } = {}) => {
      const { model, loss } = bigram();
      const seen: Progress[] = [];
      const perStep: number[] = [];
      const t = new Trainer<Batch>({
        optimizer: new AdamW(loraParameters(model), { lr: 0.05 }),
        loss: (b, info) => {
          const l = loss(b, info);
          return { loss: l, terms: { double: scale(l, 2), rows: b.batch } };
        },
        batches: (micro) =>
          collate(
            batchIndices(train.length, 2, 7, micro).map((i) => train[i]),
            0,
          ),
        batchTokens: (b) => b.batch * b.seqLen,
        steps: 6,
        schedule: { lr: 0.05, warmupSteps: 2 },
        checkpointFile: file,
        checkpointEvery: 2,
        extraState: { save: () => perStep, load: (x) => perStep.push(...(x as number[])) },
        backend: counting,
        name: "test: loop",
        onProgress: (p) => {
          seen.push(p);
          perStep.push(p.step);
        },
        beforeMicroBatch: (m) => model.setDropoutStep(m),
      });
      return { t, seen, perStep, model, until: over.until };
    };
    const full = make();
    const prev = setBackend(null);
    try {
      await full.t.run();
    } finally {
      setBackend(prev);
    }
    expect(calls).toBeGreaterThan(0);
    const p = full.seen[5];
    expect(p.terms?.double).toBeCloseTo(2 * p.loss, 5);
    expect(p.terms?.rows).toBe(2);
    expect(p.tokensPerSec).toBeGreaterThan(0);
    const info = await trainerCheckpointInfo(file);
    expect(info?.step).toBe(6);
    expect(info?.extraState).toEqual([1, 2, 3, 4, 5, 6]);
    // the identity has no example hashes or batch fields (the Trainer does not know the data)
    expect(Object.keys(info?.identity ?? {})).not.toContain("trainExamples");
    expect(Object.keys(info?.identity ?? {})).not.toContain("batchSize");
    // killed after step 3 (checkpoint at 2), resumed: the same run, the extra state restored
    const { rmSync: rm } = await import("node:fs");
    rm(file);
    const a = make();
    await a.t.run({ until: 3 });
    const b = make();
    expect(await b.t.resume()).toBe(true);
    expect(b.t.step).toBe(2);
    expect(b.perStep).toEqual([1, 2]);
    await b.t.run();
    expect(b.perStep).toEqual([1, 2, 3, 4, 5, 6]);
    expect(b.t.history.train).toEqual(full.t.history.train);
    expect(() => new Trainer({ ...options(), batches: () => ({}) as Batch })).toThrow(
      /training examples or batches, not both/,
    );
  });
});
