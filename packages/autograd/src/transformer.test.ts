import { describe, expect, it } from "vitest";
import { gradCheck } from "./gradcheck";
import { embedding } from "./embedding";
import { backward } from "./engine";
import { linear } from "./linear";
import { crossEntropy } from "./loss";
import { rmsNorm } from "./norm";
import { AdamW, clipGradNorm } from "./optim";
import { createRng } from "./random";
import { initLayer, layerParams, llamaLayer } from "./test-llama";
import { parameter, randn, tidy } from "./tensor";
import { useReferenceBackend } from "./test-utils";

useReferenceBackend();

describe("a one-layer LLaMA transformer", () => {
  it("the composed layer (GQA, RoPE, SwiGLU, RMSNorm) passes finite differences for input and weights", () => {
    const cfg = { dim: 8, hidden: 12, nHeads: 4, nKvHeads: 2 };
    const w = initLayer(cfg, 5);
    const x = randn([2, 5, cfg.dim], { seed: 6, requiresGrad: true });
    gradCheck(
      (a, wq, wk, wv, wo, w1, w2, w3, n1, n2) =>
        llamaLayer(a, { wq, wk, wv, wo, w1, w2, w3, attnNorm: n1, ffnNorm: n2 }, cfg),
      [x, w.wq, w.wk, w.wv, w.wo, w.w1, w.w2, w.w3, w.attnNorm, w.ffnNorm],
      { maxPerInput: 12 },
    );
  });

  it("learns a copy task (second half repeats the first) to a low loss", () => {
    const V = 8;
    const half = 6;
    const T = 2 * half;
    const B = 8;
    const cfg = { dim: 32, hidden: 64, nHeads: 4, nKvHeads: 2 };
    const emb = parameter(randn([V, cfg.dim], { seed: 1, std: 1 }).toFloat32Array(), [V, cfg.dim]);
    const layer = initLayer(cfg, 2);
    const norm = parameter(new Float32Array(cfg.dim).fill(1), [cfg.dim]);
    const head = parameter(randn([V, cfg.dim], { seed: 3, std: 0.1 }).toFloat32Array(), [V, cfg.dim]);
    const params = [emb, ...layerParams(layer), norm, head];
    const opt = new AdamW(params, { lr: 1e-2, weightDecay: 0 });
    const rng = createRng(4);
    const losses: number[] = [];
    for (let step = 0; step < 120; step++) {
      const ids: number[] = [];
      const targets: number[] = [];
      for (let b = 0; b < B; b++) {
        const first = Array.from({ length: half }, () => rng.int(V));
        const seq = [...first, ...first];
        ids.push(...seq);
        // predict token t+1 from position t; only the copied half is predictable
        for (let t = 0; t < T; t++) targets.push(t >= half - 1 && t < T - 1 ? seq[t + 1] : -100);
      }
      const loss = tidy(() => {
        const x = embedding(emb, ids, [B, T]);
        const h = rmsNorm(llamaLayer(x, layer, cfg), norm);
        const l = crossEntropy(linear(h, head), targets);
        backward(l);
        clipGradNorm(params, 1);
        opt.step();
        opt.zeroGrad();
        return l.item();
      });
      losses.push(loss);
    }
    const avg = (a: number[]) => a.reduce((s, v) => s + v, 0) / a.length;
    expect(avg(losses.slice(0, 10))).toBeGreaterThan(1.8); // ≈ ln 8 = 2.08 at the start
    expect(avg(losses.slice(-10))).toBeLessThan(0.05);
  }, 60_000);
});
