import { mkdtempSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { noGrad, setBackend, tensor, tidy } from "@int21/autograd";
import { klDiv } from "@int21/autograd";
import { type LlamaWeights, quantizeModel, trainForward } from "@int21/model-llama";
import { Llama2cTokenizer, loadLlama2c } from "@int21/loaders";
import type { Backend } from "@int21/quant-kernels";
import { createWasmBackend } from "@int21/quant-kernels/wasm";
import { SHARED, sharedPath } from "@int21/shared-data";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { windowData } from "./data";
import { storyTokens } from "./evaluate";
import { topKFromLogits, topKKl } from "./loss";
import { runLrec } from "./run-lrec";
import { TeacherCache } from "./teacher-cache";

let backend: Backend;
let teacher: LlamaWeights;
let train: number[];
let dir: string;
beforeAll(async () => {
  backend = await createWasmBackend({ threads: 1 });
  setBackend(backend);
  teacher = loadLlama2c(sharedPath(SHARED.stories260K), { backend });
  const tok = Llama2cTokenizer.fromFile(sharedPath(SHARED.tok512));
  const text = readFileSync(sharedPath(SHARED.tinystoriesValid), "utf8");
  train = storyTokens(text, tok, { from: 100, to: 300, ctx: 1 << 30 }).flat();
  dir = mkdtempSync(join(tmpdir(), "lrec-cache-"));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
  backend?.dispose();
});

const int2 = () => quantizeModel(teacher, { format: "int2-g32-asym-f16", method: "rtn", backend }).weights;

describe("TeacherCache", () => {
  it("round-trips batches and top-k through safetensors; its size is S·B·T·(8k + 12) bytes plus a header", async () => {
    const data = windowData(train, { batch: 2, seq: 16, seed: 1 });
    const path = join(dir, "c.safetensors");
    const built = await TeacherCache.build(path, teacher, data, { steps: 3, k: 8 });
    const size = statSync(path).size;
    expect(size - 3 * 2 * 16 * (8 * 8 + 12)).toBeGreaterThan(0);
    expect(size - 3 * 2 * 16 * (8 * 8 + 12)).toBeLessThan(2048);
    const c = await TeacherCache.open(path);
    for (let s = 0; s < 3; s++) {
      expect(c.data(s)).toEqual(data(s));
      expect(c.topk(s)).toEqual(built.topk(s));
    }
    // the cached top-k is the teacher's own
    const b = data(2);
    const full = noGrad(() =>
      tidy(() => trainForward(teacher, b.input, { checkpoint: false }).toFloat32Array()),
    );
    expect(c.topk(2)).toEqual(topKFromLogits(full, 32, 512, 8));
    expect(() => c.topk(3)).toThrow(/not cached/);
  });

  it("detects a truncated or foreign file before reading data", async () => {
    const path = join(dir, "t.safetensors");
    await TeacherCache.build(path, teacher, windowData(train, { batch: 1, seq: 8 }), { steps: 1, k: 4 });
    truncateSync(path, statSync(path).size - 10);
    await expect(TeacherCache.open(path)).rejects.toThrow();
    const other = join(dir, "o.safetensors");
    writeFileSync(other, Buffer.from([2, 0, 0, 0, 0, 0, 0, 0, 123, 125]));
    await expect(TeacherCache.open(other)).rejects.toThrow(/not an LREC teacher cache/);
  });

  it("top-k KL error against the full KL on real stories260K logits (INT2 and INT4 students), k = 8 / 32 / 64 of 512", () => {
    const b = windowData(train, { batch: 2, seq: 64, seed: 5 })(0);
    const rows = 128;
    for (const format of ["int2-g32-asym-f16", "int4-g32-asym-f16"]) {
      const student = quantizeModel(teacher, { format, method: "rtn", backend }).weights;
      const [tl, sl] = noGrad(() =>
        tidy(() => [
          trainForward(teacher, b.input).toFloat32Array(),
          trainForward(student, b.input).toFloat32Array(),
        ]),
      );
      const full = klDiv(tensor(tl, [rows, 512]), tensor(sl, [rows, 512])).item();
      const rel: number[] = [];
      for (const k of [8, 32, 64]) {
        const approx = topKKl(topKFromLogits(tl, rows, 512, k), tensor(sl, [rows, 512])).item();
        expect(approx).toBeLessThanOrEqual(full + 1e-5);
        rel.push((full - approx) / full);
      }
      console.log(
        `${format}: top-k KL relative error (k = 8, 32, 64): ${rel.map((r) => r.toFixed(4)).join(", ")} (full KL ${full.toFixed(4)} nats/token)`,
      );
      expect(rel[1]).toBeLessThan(rel[0]);
      expect(rel[1]).toBeLessThan(0.15);
      expect(rel[2]).toBeLessThanOrEqual(rel[1] + 1e-6);
    }
  });

  it("runLrec trains from the cache alone (no teacher forward) and lowers the training KL", async () => {
    const path = join(dir, "r.safetensors");
    const cache = await TeacherCache.build(path, teacher, windowData(train, { batch: 2, seq: 32, seed: 2 }), {
      steps: 12,
      k: 32,
    });
    const chart = join(dir, "loss.svg");
    const res = await runLrec(await TeacherCache.open(path), int2(), undefined, {
      steps: 12,
      r: 2,
      alpha: 8,
      lr: 3e-3,
      lossChart: chart,
    });
    expect(res.history[11].klPerToken).toBeLessThan(res.history[0].klPerToken);
    expect(readFileSync(chart, "utf8")).toMatch(/^<svg[\s\S]*LREC \(12 steps\)/);
    await expect(runLrec(cache, int2(), cache.data, { steps: 2, r: 2 })).rejects.toThrow(/data = undefined/);
    await expect(runLrec(cache, int2(), undefined, { steps: 20, r: 2 })).rejects.toThrow(/holds 12 steps/);
  });
});
