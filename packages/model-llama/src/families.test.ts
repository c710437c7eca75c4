import { readFileSync } from "node:fs";
import { join } from "node:path";
import { attention, createRng, gradCheck, parameter, tidy } from "@int21/autograd";
import { sharedPath } from "@int21/shared-data";
import { describe, expect, it } from "vitest";
import { finetune } from "./finetune";
import { forward, rmsnorm, softcap } from "./forward";
import { linearParts } from "./linear-parts";
import { hfConfigToLlama, loadHf } from "./load-hf";
import { calibrationHiddenStates, quantizeModel } from "./quantize-model";
import { createRunState } from "./run-state";
import { geglu, ropeScaled, softcapTensor, trainForward, windowAttention } from "./train-forward";
import type { LlamaWeights } from "./weights";

/** The miniature checkpoints of shared/fixtures/hf-families, one per family, with transformers' logits. */
export const FAMILY_FIXTURES = [
  "llama2",
  "llama3",
  "smollm2",
  "qwen2",
  "qwen3",
  "mistral",
  "phi3",
  "gemma2",
] as const;

interface Reference {
  ids: number[];
  rows: number;
  vocab: number;
  greedy_prompt_ids: number[];
  greedy_ids: number[];
}

function fixture(name: string): { dir: string; ref: Reference; logits: Float32Array } {
  const dir = sharedPath(`fixtures/hf-families/${name}`);
  const ref = JSON.parse(readFileSync(join(dir, "reference.json"), "utf8")) as Reference;
  const buf = readFileSync(join(dir, "reference-logits.f32"));
  const logits = new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
  if (logits.length !== ref.rows * ref.vocab)
    throw new Error(`${dir}: reference-logits.f32 has ${logits.length} floats, expected rows × vocab`);
  return { dir, ref, logits };
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

function argmax(v: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < v.length; i++) if (v[i] > v[best]) best = i;
  return best;
}

/** Greedy continuation: prefill the prompt, then one token at a time through the decode path. */
function greedy(w: LlamaWeights, prompt: number[], steps: number, maxRows: number, ctx?: number): number[] {
  const state = createRunState(w.config, { maxRows, ...(ctx !== undefined ? { ctx } : {}) });
  let logits = forward(w, state, prompt, 0, "last");
  const out: number[] = [];
  for (let i = 0; i < steps; i++) {
    const next = argmax(logits);
    out.push(next);
    logits = forward(w, state, [next], prompt.length + i, "last");
  }
  return out;
}

describe.each(FAMILY_FIXTURES)("family %s matches transformers", (name) => {
  const { dir, ref, logits: expected } = fixture(name);
  const load = (() => {
    let w: Promise<LlamaWeights> | undefined;
    return () => {
      w ??= loadHf(dir);
      return w;
    };
  })();

  it("logits of all 48 positions within 1e-3 (one prefill)", async () => {
    const w = await load();
    const state = createRunState(w.config, { maxRows: ref.rows });
    const got = forward(w, state, ref.ids, 0, "all");
    expect(maxAbsDiff(got, expected)).toBeLessThan(1e-3);
  });

  it("logits within 1e-3 through small chunks, a growing cache and (windowed) ring buffers", async () => {
    const w = await load();
    const state = createRunState(w.config, { maxRows: 5, ctx: 8 });
    const V = ref.vocab;
    let worst = 0;
    for (let p = 0; p < ref.rows; p += 5) {
      const n = Math.min(5, ref.rows - p);
      const got = forward(w, state, ref.ids.slice(p, p + n), p, "all");
      worst = Math.max(worst, maxAbsDiff(got, expected.subarray(p * V, (p + n) * V)));
    }
    expect(worst).toBeLessThan(1e-3);
    expect(state.ctx).toBeGreaterThanOrEqual(ref.rows);
  });

  it("greedy ids identical to transformers' generate", async () => {
    const w = await load();
    expect(greedy(w, ref.greedy_prompt_ids, ref.greedy_ids.length, 8)).toEqual(ref.greedy_ids);
  });
});

describe.each(FAMILY_FIXTURES)("family %s: training and calibration forwards", (name) => {
  const { dir, ref } = fixture(name);
  const ids = ref.ids.slice(0, 24);
  let weights: Promise<LlamaWeights> | undefined;
  const load = () => {
    weights ??= loadHf(dir);
    return weights;
  };
  const inference = async (w: LlamaWeights) =>
    forward(w, createRunState(w.config, { maxRows: ids.length }), ids, 0, "all").slice();

  it("trainForward's logits equal the inference forward's", async () => {
    const w = await load();
    const want = await inference(w);
    const got = tidy(() => trainForward(w, ids).toArray());
    expect(maxAbsDiff(got, want)).toBeLessThan(2e-4);
  });

  it("the GPTQ calibration forward reaches the same logits", async () => {
    const w = await load();
    const want = await inference(w);
    const c = w.config;
    const x = calibrationHiddenStates(w, [ids]);
    const xn = new Float32Array(ids.length * c.dim);
    rmsnorm(xn, x, w.finalNorm, ids.length, c.dim, c.normEps);
    const got = new Float32Array(ids.length * c.vocabSize);
    w.classifier.forward(xn, ids.length, got);
    if (c.finalLogitSoftcap !== undefined) softcap(got, got.length, c.finalLogitSoftcap);
    expect(maxAbsDiff(got, want)).toBeLessThan(1e-4);
  });

  it("quantizes with GPTQ (8-bit: logits stay close) and fine-tunes a LoRA adapter for two steps", async () => {
    const w = await loadHf(dir);
    const want = await inference(w);
    const { weights: q } = quantizeModel(w, {
      format: "int8-g32-asym-f16",
      method: "gptq",
      calib: [Int32Array.from(ref.ids)],
    });
    for (const L of q.layers) expect(linearParts(L.wq, "wq").kind).toBe("quant");
    const got = await inference(q);
    expect(maxAbsDiff(got, want)).toBeLessThan(
      0.05 * Math.max(1, maxAbsDiff(want, new Float32Array(want.length))),
    );
    const input = Int32Array.from(ref.ids.slice(0, 16));
    const target = Int32Array.from(ref.ids.slice(1, 17));
    const res = await finetune(
      q,
      { train: [{ input, target }] },
      {
        lora: { targetModules: ["q_proj", "v_proj", "down_proj"], r: 4, alpha: 8 },
        steps: 2,
        lr: 1e-2,
        seed: 1,
      },
    );
    expect(res.steps).toBe(2);
    const losses = res.history.train.map(([, l]) => l);
    expect(losses.every(Number.isFinite)).toBe(true);
  }, 120_000);
});

describe("family ops: gradients", () => {
  const rng = createRng(7);
  const leaf = (shape: number[], s = 1) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const v = new Float32Array(n);
    for (let i = 0; i < n; i++) v[i] = s * rng.normal();
    return parameter(v, shape);
  };

  it("windowed, soft-capped GQA attention", () => {
    const [q, k, v] = [leaf([2, 7, 4 * 4]), leaf([2, 7, 2 * 4]), leaf([2, 7, 2 * 4])];
    const r = gradCheck(
      (a, b, c) =>
        windowAttention(a, b, c, { nHeads: 4, nKvHeads: 2, headSize: 4, scale: 0.7, cap: 2, window: 3 }),
      [q, k, v],
    );
    expect(r.worst).toBeLessThanOrEqual(1);
  });

  it("equals autograd's fused attention without window and cap", () => {
    const [q, k, v] = [leaf([1, 6, 2 * 4]), leaf([1, 6, 1 * 4]), leaf([1, 6, 1 * 4])];
    const a = tidy(() => attention(q, k, v, { nHeads: 2, nKvHeads: 1 }).toArray());
    const b = tidy(() =>
      windowAttention(q, k, v, {
        nHeads: 2,
        nKvHeads: 1,
        headSize: 4,
        scale: 0.5,
        cap: 0,
        window: 0,
      }).toArray(),
    );
    expect(maxAbsDiff(a, b)).toBeLessThan(1e-5);
  });

  it("GeGLU, soft-capping and scaled RoPE", () => {
    expect(gradCheck((a, b) => geglu(a, b), [leaf([3, 5]), leaf([3, 5])]).worst).toBeLessThanOrEqual(1);
    expect(gradCheck((a) => softcapTensor(a, 1.5), [leaf([4, 6], 2)]).worst).toBeLessThanOrEqual(1);
    const c = hfConfigToLlama(
      JSON.parse(readFileSync(join(sharedPath("fixtures/hf-families/llama3"), "config.json"), "utf8")),
    );
    expect(gradCheck((a) => ropeScaled(a, c), [leaf([2, 5, 64])]).worst).toBeLessThanOrEqual(1);
  });
});
