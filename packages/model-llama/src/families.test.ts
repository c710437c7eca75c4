import { readFileSync } from "node:fs";
import { join } from "node:path";
import { sharedPath } from "@int21/shared-data";
import { describe, expect, it } from "vitest";
import { forward } from "./forward";
import { loadHf } from "./load-hf";
import { createRunState } from "./run-state";
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
