import { createReferenceBackend, decodeKernels } from "@int21/quant-kernels";
import { type WasmBackend, createWasmBackend } from "@int21/quant-kernels/wasm";
import { trainKernels } from "@int21/quant-kernels";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import type { LlamaConfig } from "./config";
import { forward } from "./forward";
import { createRunState } from "./run-state";
import { argmax } from "./sampler";
import { syntheticConfig, syntheticWeights } from "./synthetic";

const CONFIGS: [string, LlamaConfig][] = [
  ["stories260K (GQA 8/4)", syntheticConfig("stories260K")],
  ["a sliding window of 5 (ring caches)", { ...syntheticConfig("stories260K"), slidingWindow: 5 }],
];

function greedy(w: ReturnType<typeof syntheticWeights>, prompt: number[], n: number, ctx: number): number[] {
  const s = createRunState(w.config, { maxRows: 4, ctx });
  let logits = forward(w, s, prompt, 0);
  const out: number[] = [];
  for (let p = prompt.length; out.length < n; p++) {
    const t = argmax(logits, w.config.vocabSize);
    out.push(t);
    logits = forward(w, s, [t], p);
  }
  return out;
}

describe.each([1, 2])("forward with the KV cache in wasm memory (%i thread(s))", (threads) => {
  let be: WasmBackend;
  beforeAll(async () => {
    be = await createWasmBackend({ threads });
  });
  afterAll(() => be.dispose());

  it.each(CONFIGS)("%s: logits and greedy ids equal the reference backend's", (_, config) => {
    const ref = syntheticWeights(config, { seed: 3, backend: createReferenceBackend() });
    const wasm = syntheticWeights(config, { seed: 3, backend: be });
    const tokens = Array.from({ length: 19 }, (_, i) => (i * 131 + 7) % config.vocabSize);
    // a small first context makes the cache grow (and move into wasm memory again) mid-prompt
    const a = createRunState(config, { maxRows: 4, ctx: 3 });
    const b = createRunState(config, { maxRows: 4, ctx: 3 });
    let worst = 0;
    for (let p = 0; p < tokens.length; p += 4) {
      const chunk = tokens.slice(p, p + 4);
      const la = forward(ref, a, chunk, p, "all");
      const lb = forward(wasm, b, chunk, p, "all");
      for (let i = 0; i < la.length; i++) worst = Math.max(worst, Math.abs(la[i] - lb[i]));
    }
    expect(worst).toBeLessThan(1e-4);
    const k = decodeKernels(be);
    expect(k?.owns(b.keyCache)).toBe(true);
    expect(k?.owns(b.valueCache)).toBe(true);
    expect(k?.owns(a.keyCache)).toBe(false);
    // the activation buffers moved there too (the kernels read and write them in place)
    for (const f of ["x", "xb", "xb2", "hb", "hb2", "q", "k", "v"] as const) {
      expect(k?.owns(b[f])).toBe(true);
      expect(k?.owns(a[f])).toBe(false);
    }
    expect(greedy(wasm, tokens.slice(0, 5), 24, 6)).toEqual(greedy(ref, tokens.slice(0, 5), 24, 6));
  });
});

describe.each([1, 2])("prefill through the blocked attention kernel (%i thread(s))", (threads) => {
  let be: WasmBackend;
  beforeAll(async () => {
    be = await createWasmBackend({ threads });
  });
  afterAll(() => be.dispose());

  it.each([
    ["stories260K (GQA 8/4)", syntheticConfig("stories260K"), true],
    // a window wider than the prompt changes nothing: the blocked kernel still applies
    ["a sliding window of 200", { ...syntheticConfig("stories260K"), slidingWindow: 200 }, true],
    // a window narrower than the chunk does not: the decode kernel (per-row windows) runs
    ["a sliding window of 5", { ...syntheticConfig("stories260K"), slidingWindow: 5 }, false],
  ] as const)("%s: prompt chunks' logits equal the reference backend's", (_, config, blocked) => {
    const ref = syntheticWeights(config, { seed: 4, backend: createReferenceBackend() });
    const wasm = syntheticWeights(config, { seed: 4, backend: be });
    const tokens = Array.from({ length: 100 }, (_, i) => (i * 37 + 11) % config.vocabSize);
    const tk = trainKernels(be);
    if (tk === undefined) throw new Error("no train kernels");
    const spy = vi.spyOn(tk, "attentionForward");
    try {
      // chunks of 70 then 30 rows: the second reads the first's keys (S = pos + rows > rows)
      const run = (w: typeof ref) => {
        const st = createRunState(config, { maxRows: 70 });
        const first = forward(w, st, tokens.slice(0, 70), 0, "all").slice();
        return [first, forward(w, st, tokens.slice(70), 70, "all").slice()];
      };
      const want = run(ref);
      expect(spy).not.toHaveBeenCalled();
      const got = run(wasm);
      let worst = 0;
      for (let c = 0; c < 2; c++)
        for (let i = 0; i < want[c].length; i++) worst = Math.max(worst, Math.abs(want[c][i] - got[c][i]));
      expect(worst).toBeLessThan(1e-4);
      if (blocked) expect(spy).toHaveBeenCalledTimes(2 * config.nLayers);
      else expect(spy).not.toHaveBeenCalled();
    } finally {
      spy.mockRestore();
    }
  });
});

describe("decoding a packed model through the wasm decode matvec (int16 activations)", () => {
  let be: WasmBackend;
  beforeAll(async () => {
    be = await createWasmBackend({ threads: 1 });
  });
  afterAll(() => be.dispose());

  it.each(["int4-g64-asym-f16", "int2-g64-asym-f16", "int4-pc-sym-f16", "int8-g64-asym-f16"])(
    "%s: greedy ids equal the reference backend's, logits within the int16 rounding",
    (format) => {
      const config = syntheticConfig("stories260K");
      const opts = { seed: 5, format, embeddingFormat: format };
      const ref = syntheticWeights(config, { ...opts, backend: createReferenceBackend() });
      const wasm = syntheticWeights(config, { ...opts, backend: be });
      const prompt = [1, 403, 407, 261, 378];
      expect(greedy(wasm, prompt, 32, 40)).toEqual(greedy(ref, prompt, 32, 40));
      const a = createRunState(config, { maxRows: 1 });
      const b = createRunState(config, { maxRows: 1 });
      let worst = 0;
      let mag = 0;
      for (let p = 0; p < prompt.length; p++) {
        const la = forward(ref, a, [prompt[p]], p);
        const lb = forward(wasm, b, [prompt[p]], p);
        for (let i = 0; i < la.length; i++) {
          worst = Math.max(worst, Math.abs(la[i] - lb[i]));
          mag = Math.max(mag, Math.abs(la[i]));
        }
      }
      expect(worst).toBeLessThan(1e-3 * mag);
    },
  );
});
