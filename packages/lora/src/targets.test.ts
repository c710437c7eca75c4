import { describe, expect, it } from "vitest";
import { canonicalTarget, LLAMA_TARGETS, matchesTarget, selectTargets } from "./targets";

const names = [0, 1].flatMap((i) =>
  [
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
  ].map((m) => `model.layers.${i}.${m}`),
);

describe("targets", () => {
  it("maps llama2.c names to Hugging Face names", () => {
    expect(canonicalTarget("wq")).toBe("q_proj");
    expect(canonicalTarget("w1")).toBe("gate_proj");
    expect(canonicalTarget("w2")).toBe("down_proj");
    expect(canonicalTarget("w3")).toBe("up_proj");
    expect(canonicalTarget("layers.3.wv")).toBe("layers.3.v_proj");
    expect(canonicalTarget("q_proj")).toBe("q_proj");
  });

  it("matches by suffix on whole path components, like PEFT", () => {
    expect(matchesTarget("model.layers.0.self_attn.q_proj", "q_proj")).toBe(true);
    expect(matchesTarget("model.layers.0.self_attn.q_proj", "wq")).toBe(true);
    expect(matchesTarget("model.layers.0.self_attn.q_proj", "self_attn.q_proj")).toBe(true);
    expect(matchesTarget("model.layers.0.self_attn.q_proj", "layers.0.self_attn.q_proj")).toBe(true);
    expect(matchesTarget("model.layers.10.self_attn.q_proj", "0.self_attn.q_proj")).toBe(false);
    expect(matchesTarget("model.layers.0.self_attn.q_proj", "proj")).toBe(false);
    expect(matchesTarget("model.layers.0.self_attn.q_proj", "k_proj")).toBe(false);
  });

  it("selects targets with per-module rank and alpha", () => {
    const got = selectTargets(names, {
      targetModules: ["wq", "v_proj"],
      r: 8,
      alpha: 16,
      rankPattern: { "layers.1.self_attn.v_proj": 4 },
      alphaPattern: { q_proj: 32 },
    });
    expect(got).toEqual([
      { module: "model.layers.0.self_attn.q_proj", r: 8, alpha: 32 },
      { module: "model.layers.0.self_attn.v_proj", r: 8, alpha: 16 },
      { module: "model.layers.1.self_attn.q_proj", r: 8, alpha: 32 },
      { module: "model.layers.1.self_attn.v_proj", r: 4, alpha: 16 },
    ]);
    expect(selectTargets(names, { targetModules: LLAMA_TARGETS, r: 2 })).toHaveLength(14);
    expect(selectTargets(names, { targetModules: ["w2"], r: 2 })[0]).toEqual({
      module: "model.layers.0.mlp.down_proj",
      r: 2,
      alpha: 2,
    });
  });

  it("rejects bad specs and targets that match nothing", () => {
    expect(() => selectTargets(names, { targetModules: ["qproj"], r: 8 })).toThrow(/"qproj" match no module/);
    expect(() => selectTargets(names, { targetModules: ["q_proj"], r: 0 })).toThrow(
      /rank r must be a positive integer/,
    );
    expect(() => selectTargets(names, { targetModules: ["q_proj"], r: 2.5 })).toThrow(/rank r/);
    expect(() => selectTargets(names, { targetModules: ["q_proj"], r: 4, alpha: -1 })).toThrow(
      /alpha must be finite/,
    );
    expect(() => selectTargets(names, { targetModules: [], r: 4 })).toThrow(/at least one module/);
    expect(() =>
      selectTargets(names, { targetModules: ["q_proj"], r: 4, rankPattern: { q_proj: 0 } }),
    ).toThrow(/rankPattern\["q_proj"\]/);
  });
});
