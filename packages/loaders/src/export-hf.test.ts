import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openSafetensors } from "@int21/io";
import { SHARED, sharedPath } from "@int21/shared-data";
import { describe, expect, it } from "vitest";
import { exportHf, floatWeightOf, hfExportTensors } from "./export-hf";
import { loadHf, permuteHfRows } from "./load-hf";
import { loadLlama2c } from "./load-llama2c";
import { Llama2cTokenizer } from "./tokenizer";
import { addLlamaLoRA, forward, linearParts, createRunState, type LlamaWeights } from "@int21/model-llama";

const tmp = mkdtempSync(join(tmpdir(), "int21-hf-export-"));
const tok = Llama2cTokenizer.fromFile(sharedPath(SHARED.tok512));
const PROMPT = tok.encode("One day, Tim found a big red ball in the park.", { bos: true });
const load = (opts = {}) => loadLlama2c(sharedPath(SHARED.stories260K), opts);

function logits(w: LlamaWeights): Float32Array {
  return forward(w, createRunState(w.config, { maxRows: PROMPT.length }), PROMPT, 0, "all").slice();
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

describe("exportHf (stories260K)", () => {
  it("float model → config.json + model.safetensors (HF names, q/k permuted) → loadHf: identical logits", async () => {
    const w = load();
    const dir = join(tmp, "f32");
    const r = await exportHf(dir, w);
    expect(r.files).toEqual(["config.json", "model.safetensors"]);
    const cfg = JSON.parse(readFileSync(join(dir, "config.json"), "utf8"));
    expect(cfg).toMatchObject({
      architectures: ["LlamaForCausalLM"],
      model_type: "llama",
      hidden_size: 64,
      num_key_value_heads: 4,
      tie_word_embeddings: true,
      torch_dtype: "float32",
    });
    const f = await openSafetensors(join(dir, "model.safetensors"));
    expect(f.names).not.toContain("lm_head.weight");
    const q = await f.readF32("model.layers.1.self_attn.q_proj.weight");
    const k = await f.readF32("model.layers.1.self_attn.k_proj.weight");
    await f.close();
    const wq = linearParts(w.layers[1].wq, "wq");
    const wk = linearParts(w.layers[1].wk, "wk");
    if (wq.kind !== "float" || wk.kind !== "float") throw new Error("expected float projections");
    expect(q).toEqual(permuteHfRows(wq.weight, 8, 64, 64));
    expect(k).toEqual(permuteHfRows(wk.weight, 4, 32, 64));
    expect(q).not.toEqual(wq.weight);
    const back = await loadHf(dir);
    expect(back.config).toEqual(w.config);
    expect(maxAbsDiff(logits(back), logits(w))).toBe(0);
  });

  it("an INT4 model with a LoRA adapter merges in float: loadHf reproduces the adapted model's logits", async () => {
    const w = load({ quantize: { format: "int4-g32-asym-f16" } });
    const model = addLlamaLoRA(w, {
      targetModules: ["q_proj", "v_proj", "down_proj", "lm_head"],
      r: 4,
      seed: 1,
    });
    for (const [, a] of model.adapters())
      for (let i = 0; i < a.loraB.length; i++) a.loraB[i] = 0.05 * Math.sin(i + a.outFeatures);
    const want = logits(w);
    const dir = join(tmp, "int4-lora");
    const r = await exportHf(dir, w, { maxShardBytes: 200_000 });
    expect(r.files).toContain("model.safetensors.index.json");
    expect(r.config.tie_word_embeddings).toBe(false); // the adapted classifier is no longer the embedding
    const wq = r.linears.find((l) => l.name === "layers.0.wq")!;
    expect(wq).toEqual({ name: "layers.0.wq", source: "dequantized", adapters: ["default"] });
    const back = await loadHf(dir);
    const diff = maxAbsDiff(logits(back), want);
    console.log(`INT4 + LoRA → HF (merged in float) → loadHf: max |Δlogit| = ${diff.toExponential(3)}`);
    expect(diff).toBeLessThan(1e-4);
    expect(
      maxAbsDiff(logits(back), logits(load({ quantize: { format: "int4-g32-asym-f16" } }))),
    ).toBeGreaterThan(1e-3); // the adapter changed the outputs, and the export kept the change
    expect(() => hfExportTensors(w, { mergeLoRA: false })).toThrow(/layers\.0\.wq is LoRA-wrapped/);
  });

  it("BF16 export loads with bf16 rounding only; floatWeightOf leaves a float layer's weight as is", async () => {
    const w = load();
    const dir = join(tmp, "bf16");
    await exportHf(dir, w, { dtype: "BF16" });
    expect(existsSync(join(dir, "model.safetensors"))).toBe(true);
    const back = await loadHf(dir);
    const d = maxAbsDiff(logits(back), logits(w));
    expect(d).toBeGreaterThan(0);
    expect(d).toBeLessThan(1);
    const f = floatWeightOf(w.layers[0].w2, "w2");
    expect(f.source).toBe("float");
    const lp = linearParts(w.layers[0].w2, "w2");
    expect(lp.kind === "float" && f.weight === lp.weight).toBe(true);
  });
});
