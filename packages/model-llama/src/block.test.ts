import { describe, expect, it } from "vitest";
import { type BlockOps, attentionScale, llamaBlock } from "./block";
import type { LlamaConfig } from "./config";
import { syntheticConfig, syntheticWeights } from "./synthetic";
import type { LayerWeights } from "./weights";

/** Ops over formulas: each op returns the expression it would compute, so a block prints what it is. */
function formulaOps(config: LlamaConfig): BlockOps<string> {
  return {
    config,
    norm: (x, _L, name) => `${name}(${x})`,
    linear: (x, _L, name, l) => `${name}${l}(${x})`,
    bias: (y, _L, name) => `(${y}+${name})`,
    headNorm: (t, _L, name, heads) => `${name}/${heads}(${t})`,
    rope: (t, heads) => `rope${heads}(${t})`,
    attention: (q, k, v, at) => `att[w${at.window},c${at.cap},s${at.scale.toFixed(4)}](${q};${k};${v})`,
    gate: (a, b, act) => `${act}(${a})*${b}`,
    residual: (x, y) => `(${x}+${y})`,
  };
}

const base = { ...syntheticConfig("stories260K"), nLayers: 2, vocabSize: 32, seqLen: 16 };

function layerOf(c: LlamaConfig): LayerWeights {
  return syntheticWeights(c, { seed: 2 }).layers[1];
}

describe("llamaBlock", () => {
  it("is LLaMA's layer for a LLaMA config", () => {
    const f = llamaBlock(formulaOps(base), layerOf(base), 1, "x");
    const h = "attnNorm(x)";
    const x1 = `(x+wo1(att[w0,c0,s${(1 / Math.sqrt(8)).toFixed(4)}](rope8(wq1(${h}));rope4(wk1(${h}));wv1(${h}))))`;
    const h2 = `ffnNorm(${x1})`;
    expect(f).toBe(`(${x1}+w21(silu(w11(${h2}))*w31(${h2})))`);
  });

  it("adds each family's parts where its layers and config have them", () => {
    const qwen2 = { ...base, qkvBias: true };
    expect(llamaBlock(formulaOps(qwen2), layerOf(qwen2), 1, "x")).toContain("rope8((wq1(attnNorm(x))+bq))");
    const qwen3 = { ...base, qkNorm: true };
    expect(llamaBlock(formulaOps(qwen3), layerOf(qwen3), 1, "x")).toContain(
      "rope4(kNorm/4(wk1(attnNorm(x))))",
    );
    const gemma2: LlamaConfig = {
      ...base,
      hiddenAct: "gelu_tanh",
      postNorms: true,
      attnLogitSoftcap: 50,
      queryPreAttnScalar: 20,
      slidingWindow: 4,
      slidingLayers: [true, false],
    };
    const g = llamaBlock(formulaOps(gemma2), layerOf(gemma2), 1, "x");
    expect(g).toContain(`att[w0,c50,s${attentionScale(gemma2).toFixed(4)}]`);
    expect(g).toContain("postAttnNorm(wo1(");
    expect(g).toMatch(/^\(.*\+postFfnNorm\(w21\(gelu_tanh\(w11\(/);
    // layer 0 of the same config slides
    expect(llamaBlock(formulaOps(gemma2), layerOf(gemma2), 0, "x")).toContain("att[w4,c50,");
    expect(attentionScale(gemma2)).toBe(1 / Math.sqrt(20));
  });
});
