import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openSafetensors } from "@int21/io";
import { sharedPath } from "@int21/shared-data";
import { describe, expect, it } from "vitest";
import { loadHf } from "./load-hf";
import { addLlamaLoRA, forward, createRunState, type LlamaWeights } from "@int21/model-llama";
import { loadLlamaAdapter, saveLlamaAdapter } from "./peft-adapter";

const DIR = sharedPath("fixtures/hf-families/phi3");
const IDS = (JSON.parse(readFileSync(join(DIR, "reference.json"), "utf8")) as { ids: number[] }).ids.slice(
  0,
  16,
);

function logits(w: LlamaWeights): Float32Array {
  return forward(w, createRunState(w.config, { maxRows: IDS.length }), IDS, 0, "all").slice();
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

describe("Phi-3 PEFT adapters in Hugging Face's fused layout", () => {
  it("q/v/gate/o adapters are written as fused qkv_proj / gate_up_proj LoRAs and read back to the same logits", async () => {
    const w = await loadHf(DIR);
    const base = logits(w);
    const lora = addLlamaLoRA(w, {
      targetModules: ["q_proj", "v_proj", "gate_proj", "o_proj"],
      r: 2,
      alpha: 6,
      seed: 4,
    });
    for (const [, a] of lora.adapters())
      for (let i = 0; i < a.loraB.length; i++) a.loraB[i] = 0.2 * Math.sin(i * 0.7 + a.outFeatures);
    const want = logits(w);
    expect(maxAbsDiff(want, base)).toBeGreaterThan(1e-3);
    const dir = mkdtempSync(join(tmpdir(), "int21-phi3-peft-"));
    await saveLlamaAdapter(dir, lora, w);
    const cfg = JSON.parse(readFileSync(join(dir, "adapter_config.json"), "utf8"));
    expect([...cfg.target_modules].sort()).toEqual(["gate_up_proj", "o_proj", "qkv_proj"]);
    expect(cfg.rank_pattern["model.layers.0.self_attn.qkv_proj"]).toBe(4); // q and v, rank 2 each
    expect(cfg.alpha_pattern["model.layers.0.self_attn.qkv_proj"]).toBe(4);
    expect(cfg.rank_pattern["model.layers.0.mlp.gate_up_proj"]).toBe(2);
    const st = await openSafetensors(join(dir, "adapter_model.safetensors"));
    const names = st.names;
    await st.close();
    expect(names.some((n) => /\.(q|k|v|gate|up)_proj\./.test(n))).toBe(false);
    expect(names).toContain("base_model.model.model.layers.0.self_attn.qkv_proj.lora_B.weight");
    const back = await loadHf(DIR);
    await loadLlamaAdapter(dir, back);
    expect(maxAbsDiff(logits(back), want)).toBeLessThan(1e-4);
  });
});
