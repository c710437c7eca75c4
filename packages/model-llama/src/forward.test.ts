import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { denseTokenEmbedding } from "./embedding";
import type { LlamaConfig } from "./config";
import { forward, rope } from "./forward";
import { createRunState } from "./run-state";
import { DenseLinear, stories260K } from "./testing/stories260k";
import type { LlamaWeights } from "./weights";

/** A random model (seeded LCG) with grouped-query attention and a separate classifier. */
function randomModel(c: LlamaConfig, seed: number): LlamaWeights {
  let s = seed >>> 0;
  const rnd = (n: number, scale: number) => {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
      a[i] = ((s / 2 ** 32) * 2 - 1) * scale;
    }
    return a;
  };
  const kv = (c.dim * c.nKvHeads) / c.nHeads;
  const lin = (n: number, k: number) => new DenseLinear(rnd(n * k, 1 / Math.sqrt(k)), n, k);
  const norm = () => rnd(c.dim, 0.5).map((v) => 1 + v);
  return {
    config: c,
    tokenEmbedding: rnd(c.vocabSize * c.dim, 1),
    layers: Array.from({ length: c.nLayers }, () => ({
      attnNorm: norm(),
      wq: lin(c.dim, c.dim),
      wk: lin(kv, c.dim),
      wv: lin(kv, c.dim),
      wo: lin(c.dim, c.dim),
      ffnNorm: norm(),
      w1: lin(c.hiddenDim, c.dim),
      w2: lin(c.dim, c.hiddenDim),
      w3: lin(c.hiddenDim, c.dim),
    })),
    finalNorm: norm(),
    classifier: lin(c.vocabSize, c.dim),
  };
}

/**
 * The transformer written out plainly in float64 over the whole sequence (no cache, no chunking,
 * RoPE angles computed in place): the reference the cached forward is checked against.
 */
function naiveLogits(w: LlamaWeights, tokens: number[]): number[][] {
  const c = w.config;
  const { dim, nHeads, nKvHeads, hiddenDim } = c;
  const hs = dim / nHeads;
  const mat = (lin: unknown, x: number[]): number[] => {
    const L = lin as DenseLinear;
    const y: number[] = [];
    for (let n = 0; n < L.outFeatures; n++) {
      let acc = 0;
      for (let k = 0; k < L.inFeatures; k++) acc += L.weight[n * L.inFeatures + k] * x[k];
      y.push(acc);
    }
    return y;
  };
  const norm = (x: number[], g: Float32Array) => {
    const ms = x.reduce((a, v) => a + v * v, 0) / x.length;
    return x.map((v, j) => (g[j] * v) / Math.sqrt(ms + c.normEps));
  };
  const rot = (v: number[], p: number) => {
    const o = v.slice();
    for (let i = 0; i < v.length; i += 2) {
      const ang = p / c.ropeTheta ** ((i % hs) / hs);
      o[i] = v[i] * Math.cos(ang) - v[i + 1] * Math.sin(ang);
      o[i + 1] = v[i] * Math.sin(ang) + v[i + 1] * Math.cos(ang);
    }
    return o;
  };
  let xs = tokens.map((t) =>
    Array.from(denseTokenEmbedding(w.tokenEmbedding).subarray(t * dim, (t + 1) * dim)),
  );
  for (const L of w.layers) {
    const h = xs.map((x) => norm(x, L.attnNorm));
    const q = h.map((x, p) => rot(mat(L.wq, x), p));
    const k = h.map((x, p) => rot(mat(L.wk, x), p));
    const v = h.map((x) => mat(L.wv, x));
    const att = xs.map((_, p) => {
      const out = new Array(dim).fill(0);
      for (let hd = 0; hd < nHeads; hd++) {
        const g = Math.floor(hd / (nHeads / nKvHeads));
        const sc: number[] = [];
        for (let t = 0; t <= p; t++) {
          let d = 0;
          for (let i = 0; i < hs; i++) d += q[p][hd * hs + i] * k[t][g * hs + i];
          sc.push(d / Math.sqrt(hs));
        }
        const m = Math.max(...sc);
        const e = sc.map((s) => Math.exp(s - m));
        const z = e.reduce((a, b) => a + b, 0);
        for (let t = 0; t <= p; t++)
          for (let i = 0; i < hs; i++) out[hd * hs + i] += (e[t] / z) * v[t][g * hs + i];
      }
      return out;
    });
    xs = xs.map((x, p) => {
      const a = mat(L.wo, att[p]);
      const x1 = x.map((vv, j) => vv + a[j]);
      const hn = norm(x1, L.ffnNorm);
      const g1 = mat(L.w1, hn);
      const u = mat(L.w3, hn);
      const m = g1.map((gg, j) => (gg / (1 + Math.exp(-gg))) * u[j]);
      expect(m.length).toBe(hiddenDim);
      const d = mat(L.w2, m);
      return x1.map((vv, j) => vv + d[j]);
    });
  }
  return xs.map((x) => mat(w.classifier, norm(x, w.finalNorm)));
}

const small: LlamaConfig = {
  dim: 16,
  hiddenDim: 24,
  nLayers: 2,
  nHeads: 4,
  nKvHeads: 2,
  vocabSize: 11,
  seqLen: 12,
  ropeTheta: 10000,
  normEps: 1e-5,
  sharedClassifier: false,
};

describe("forward", () => {
  it("matches a plain float64 full-sequence transformer (GQA, any chunking)", () => {
    const w = randomModel(small, 1);
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 10 }), { minLength: 1, maxLength: 12 }),
        fc.integer({ min: 1, max: 12 }),
        (tokens, maxRows) => {
          const ref = naiveLogits(w, tokens);
          const st = createRunState(small, { maxRows });
          // feed in chunks of maxRows, reading the logits of every position
          for (let p = 0; p < tokens.length; p += maxRows) {
            const chunk = tokens.slice(p, p + maxRows);
            const lg = forward(w, st, chunk, p, "all");
            for (let r = 0; r < chunk.length; r++)
              for (let v = 0; v < small.vocabSize; v++) expect(lg[r * 11 + v]).toBeCloseTo(ref[p + r][v], 4);
          }
          // the whole sequence at once with "last" logits
          const st2 = createRunState(small, { maxRows });
          const last = forward(w, st2, tokens, 0, "last");
          for (let v = 0; v < 11; v++) expect(last[v]).toBeCloseTo(ref[tokens.length - 1][v], 4);
        },
      ),
      { seed: 42, numRuns: 40 },
    );
  });

  it("prefill through the GEMM path equals decoding token by token on stories260K", () => {
    const w = stories260K();
    const tokens = [1, 403, 407, 261, 378, 432, 383, 273, 261, 376, 370, 317, 426];
    const a = createRunState(w.config, { maxRows: 16 });
    const all = forward(w, a, tokens, 0, "all").slice();
    const b = createRunState(w.config, { maxRows: 1 });
    for (let p = 0; p < tokens.length; p++) {
      const lg = forward(w, b, [tokens[p]], p);
      let err = 0;
      for (let v = 0; v < 512; v++) err = Math.max(err, Math.abs(lg[v] - all[p * 512 + v]));
      expect(err).toBeLessThan(1e-4);
    }
    // the KV caches agree too
    let err = 0;
    for (let i = 0; i < a.keyCache.length; i++) err = Math.max(err, Math.abs(a.keyCache[i] - b.keyCache[i]));
    expect(err).toBeLessThan(1e-5);
  });

  it("rope rotates adjacent pairs by pos·θ^(−i/hs) (hand-computed)", () => {
    const st = createRunState(small, { maxRows: 1 });
    // head size 4: pairs (0,1) at freq 1, (2,3) at freq 10000^(-1/2) = 0.01; position 3
    const v = new Float32Array(16);
    v.set([1, 0, 0, 1]);
    rope(v, 1, 16, 4, 3, st);
    expect(v[0]).toBeCloseTo(Math.cos(3), 6);
    expect(v[1]).toBeCloseTo(Math.sin(3), 6);
    expect(v[2]).toBeCloseTo(-Math.sin(0.03), 6);
    expect(v[3]).toBeCloseTo(Math.cos(0.03), 6);
  });

  it("rejects bad tokens, positions, logits requests and mismatched states", () => {
    const w = randomModel(small, 2);
    const st = createRunState(small, { maxRows: 4 });
    expect(() => forward(w, st, [11], 0)).toThrow(/token 11 at index 0 is outside \[0, 11\)/);
    expect(() => forward(w, st, [1.5], 0)).toThrow(/token 1.5/);
    expect(() => forward(w, st, [1, 2], 11)).toThrow(/positions 11..12 are outside the context \[0, 12\)/);
    expect(() => forward(w, st, [], 0)).toThrow(/no tokens/);
    expect(() => forward(w, st, [1, 2, 3, 4, 5], 0, "all")).toThrow(/maxRows ≥ 5/);
    const other = createRunState({ ...small, seqLen: 8 });
    expect(() => forward(w, other, [1], 0)).toThrow(/run state was made for config/);
    expect(() => createRunState(small, { maxRows: 0 })).toThrow(/maxRows must be a positive integer/);
  });
});
