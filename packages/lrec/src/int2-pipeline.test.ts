import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { currentBackend } from "@int21/autograd";
import { Llama2cTokenizer, loadLlama2c } from "@int21/loaders";
import type { LlamaWeights } from "@int21/model-llama";
import type { Backend } from "@int21/quant-kernels";
import { createWasmBackend } from "@int21/quant-kernels/wasm";
import { SHARED, sharedPath } from "@int21/shared-data";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { INT2_PIPELINE_MIN_STORIES, type Int2PipelineEvent, runInt2Pipeline } from "./int2-pipeline";

let backend: Backend;
let float: LlamaWeights;
let tok: Llama2cTokenizer;
let stories: string[];
const dirs: string[] = [];

beforeAll(async () => {
  backend = await createWasmBackend({ threads: 1 });
  float = loadLlama2c(sharedPath(SHARED.stories260K), { backend });
  tok = Llama2cTokenizer.fromFile(sharedPath(SHARED.tok512));
  stories = readFileSync(sharedPath(SHARED.tinystoriesValid), "utf8")
    .split("<|endoftext|>")
    .map((s) => s.trim())
    .filter((s) => s.length > 0)
    .slice(0, 120);
});
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  backend?.dispose();
});

describe("runInt2Pipeline (stories260K, quick)", () => {
  it("returns the five rows with finite numbers, GPTQ below RTN; reports stages and rows; writes the model files", async () => {
    const out = mkdtempSync(join(tmpdir(), "int2-pipeline-"));
    dirs.push(out);
    const events: Int2PipelineEvent[] = [];
    const r = await runInt2Pipeline(float, tok, stories, {
      backend,
      lrecSteps: 3,
      steps: 3,
      quick: true,
      name: "tiny",
      output: out,
      onProgress: (e) => events.push(e),
    });
    expect(r.rows.map((x) => x.config.split(" (")[0])).toEqual([
      "float32",
      "INT2 RTN",
      "INT2 GPTQ",
      "INT2 GPTQ + LREC",
      "INT2 GPTQ + LREC + EMEF",
    ]);
    for (const row of r.rows) {
      for (const v of [row.bitsPerWeight, row.meanNll, row.perplexity]) expect(Number.isFinite(v)).toBe(true);
      expect(row.perplexity).toBeCloseTo(Math.exp(row.meanNll), 6);
      expect(row.sample.startsWith("Once upon a time")).toBe(true);
    }
    const [fl, rtn, gptq] = r.rows;
    expect(rtn.perplexity).toBeGreaterThan(fl.perplexity);
    expect(gptq.perplexity).toBeLessThan(rtn.perplexity);
    expect(r.checks.find((c) => c.name === "GPTQ beats RTN at INT2")?.passed).toBe(true);
    expect(r.evalStories).toBe(20);
    expect(r.evalTokens).toBeGreaterThan(0);
    expect(r.lrec.steps).toBe(3);
    expect(r.finetune.steps).toBe(3);
    expect(r.curves.lrecKlPerToken.length).toBeGreaterThan(0);
    expect(r.curves.emefTrainLoss).toHaveLength(3);
    // events: start first, then every stage opened and closed in order, a row per configuration
    expect(events[0]).toEqual({ kind: "start", evalStories: 20, ctx: r.ctx });
    const stages = events.filter((e) => e.kind === "stage-start").map((e) => e.stage);
    expect(stages).toEqual([
      "eval float32",
      "quantize INT2 RTN",
      `eval ${r.rows[1].config}`,
      "quantize INT2 GPTQ",
      `eval ${r.rows[2].config}`,
      "LREC",
      `eval ${r.rows[3].config}`,
      "EMEF fine-tune",
      `eval ${r.rows[4].config}`,
    ]);
    expect(events.filter((e) => e.kind === "stage-end").map((e) => e.stage)).toEqual(stages);
    expect(events.filter((e) => e.kind === "row").map((e) => e.row)).toEqual(r.rows);
    for (const f of [
      "tiny-int2-gptq.safetensors",
      "tiny-int2-gptq-lrec.safetensors",
      "emef-adapter/adapter_config.json",
    ])
      expect(existsSync(join(out, f))).toBe(true);
    // the backend given was autograd's for the run only
    expect(currentBackend()).toBeNull();
  });

  it("names what is wrong with its input", async () => {
    const opts = { backend, lrecSteps: 1, steps: 1 };
    await expect(runInt2Pipeline(float, tok, stories.slice(0, 10), opts)).rejects.toThrow(
      `needs at least ${INT2_PIPELINE_MIN_STORIES} stories, has 10`,
    );
    await expect(runInt2Pipeline(float, tok, stories, { ...opts, lrecSteps: 0 })).rejects.toThrow(
      "lrecSteps must be a positive integer, got 0",
    );
    await expect(runInt2Pipeline(float, tok, stories, { ...opts, steps: 1.5 })).rejects.toThrow(
      "steps must be a positive integer, got 1.5",
    );
  });
});
