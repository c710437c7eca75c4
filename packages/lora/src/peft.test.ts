import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseSafetensors, serializeSafetensors } from "@int21/io";
import { afterAll, describe, expect, it } from "vitest";
import type { LoRALinear } from "./lora-linear";
import { applyLoRA, LoRAModel } from "./lora-model";
import {
  attachPeftAdapter,
  loadPeftAdapter,
  parsePeftAdapter,
  parsePeftConfig,
  peftConfig,
  savePeftAdapter,
  serializePeftAdapter,
} from "./peft";
import { randomArray, toyModules } from "./testing/dense-linear";

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** A trained-looking adapter: random A and B on q and v, layer 1's v at rank 4, q's alpha 32. */
function trainedModel() {
  const modules = toyModules();
  const model = applyLoRA(modules, {
    targetModules: ["q_proj", "v_proj"],
    r: 2,
    alpha: 16,
    rankPattern: { "layers.1.self_attn.v_proj": 4 },
    alphaPattern: { q_proj: 32 },
    baseModel: "toy",
  });
  let s = 100;
  for (const [, a] of model.adapters()) a.loraB.set(randomArray(a.loraB.length, s++));
  return { modules, model };
}

function outputs(
  modules: Map<
    string,
    { forward(x: Float32Array, r: number, y: Float32Array): void; inFeatures: number; outFeatures: number }
  >,
) {
  const out: Float32Array[] = [];
  for (const l of modules.values()) {
    const x = randomArray(2 * l.inFeatures, 7);
    const y = new Float32Array(2 * l.outFeatures);
    l.forward(x, 2, y);
    out.push(y);
  }
  return out;
}

describe("PEFT format", () => {
  it("writes PEFT's keys, shapes and config fields", () => {
    const { model } = trainedModel();
    const { config, weights } = serializePeftAdapter(model);
    const c = JSON.parse(config);
    expect(c).toMatchObject({
      peft_type: "LORA",
      task_type: "CAUSAL_LM",
      r: 2,
      lora_alpha: 16,
      target_modules: ["q_proj", "v_proj"],
      base_model_name_or_path: "toy",
      bias: "none",
      fan_in_fan_out: false,
      use_rslora: false,
      rank_pattern: { "model.layers.1.self_attn.v_proj": 4 },
      alpha_pattern: {
        "model.layers.0.self_attn.q_proj": 32,
        "model.layers.1.self_attn.q_proj": 32,
      },
    });
    const st = parseSafetensors(weights);
    expect(st.metadata).toEqual({ format: "pt" });
    expect(st.names).toHaveLength(8);
    expect(st.tensors["base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"]).toMatchObject({
      dtype: "F32",
      shape: [2, 8],
    });
    expect(st.tensors["base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"]).toMatchObject({
      dtype: "F32",
      shape: [8, 2],
    });
    expect(st.tensors["base_model.model.model.layers.1.self_attn.v_proj.lora_A.weight"]).toMatchObject({
      shape: [4, 8],
    });
    expect(st.tensors["base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight"]).toMatchObject({
      shape: [4, 4],
    });
  });

  it("round-trips through files: the reloaded adapter gives the same outputs", async () => {
    const { modules, model } = trainedModel();
    const dir = mkdtempSync(join(tmpdir(), "int21-lora-"));
    dirs.push(dir);
    await savePeftAdapter(dir, model);
    const fresh = toyModules();
    const reloaded = new LoRAModel(fresh);
    const rec = await loadPeftAdapter(dir, reloaded);
    expect(rec.targets).toEqual(model.record().targets);
    expect(outputs(fresh)).toEqual(outputs(modules));
    expect((fresh.get("model.layers.0.self_attn.q_proj") as LoRALinear).adapter("default").trainable).toBe(
      false,
    );
    // and it is written again byte for byte
    const again = serializePeftAdapter(reloaded);
    expect(again.weights).toEqual(new Uint8Array(readFileSync(join(dir, "adapter_model.safetensors"))));
  });

  it("reads F16 / BF16 weights and keys with an adapter name, as Python may write them", () => {
    const { model } = trainedModel();
    const { config } = serializePeftAdapter(model);
    const tensors: Record<string, { dtype: "F16" | "BF16"; shape: number[]; data: Float32Array }> = {};
    for (const [module, a] of model.adapters()) {
      tensors[`base_model.model.${module}.lora_A.default.weight`] = {
        dtype: "F16",
        shape: [a.r, a.inFeatures],
        data: a.loraA,
      };
      tensors[`base_model.model.${module}.lora_B.default.weight`] = {
        dtype: "BF16",
        shape: [a.outFeatures, a.r],
        data: a.loraB,
      };
    }
    const got = parsePeftAdapter(config, serializeSafetensors(tensors));
    const [module, a] = model.adapters()[0];
    const m = got.modules.get(module)!;
    for (let i = 0; i < a.loraA.length; i++) expect(m.loraA[i]).toBeCloseTo(a.loraA[i], 3);
    for (let i = 0; i < a.loraB.length; i++) expect(Math.abs(m.loraB[i] - a.loraB[i])).toBeLessThan(1e-2);
  });

  it("rejects adapters whose shapes or targets do not fit the model", () => {
    const { model } = trainedModel();
    const { config, weights } = serializePeftAdapter(model);
    const adapter = parsePeftAdapter(config, weights);
    // different model shape
    const small = new Map([...toyModules()].filter(([n]) => !n.includes("layers.1")));
    expect(() => attachPeftAdapter(new LoRAModel(small), adapter)).toThrow(
      /module "model.layers.1.self_attn.q_proj" is not in the model/,
    );
    const wrongShape = toyModules();
    const q = wrongShape.get("model.layers.0.self_attn.q_proj")!;
    wrongShape.set("model.layers.0.self_attn.q_proj", {
      ...q,
      forward: q.forward.bind(q),
      bytes: q.bytes.bind(q),
      inFeatures: 9,
    });
    expect(() => attachPeftAdapter(new LoRAModel(wrongShape), adapter)).toThrow(
      /is \[8 × 9\] in the model but the adapter has lora_A \[2, 8\]/,
    );
    // a target the file lacks
    const c2 = JSON.parse(config);
    c2.target_modules = ["q_proj", "v_proj", "k_proj"];
    const a2 = parsePeftAdapter(JSON.stringify(c2), weights);
    expect(() => attachPeftAdapter(new LoRAModel(toyModules()), a2)).toThrow(
      /selects 2 module\(s\) with no weights.*k_proj/,
    );
    // keys outside target_modules
    c2.target_modules = ["q_proj"];
    expect(() => parsePeftAdapter(JSON.stringify(c2), weights)).toThrow(
      /"model.layers.0.self_attn.v_proj" is not selected by target_modules/,
    );
    // a rank that disagrees with the config
    c2.target_modules = ["q_proj", "v_proj"];
    c2.rank_pattern = {};
    expect(() => parsePeftAdapter(JSON.stringify(c2), weights)).toThrow(
      /"model.layers.1.self_attn.v_proj" has rank 4, but the config gives it r = 2/,
    );
    // a lone A
    const st = parseSafetensors(weights);
    const lone = serializeSafetensors({
      "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": {
        dtype: "F32",
        shape: [2, 8],
        data: st.readF32(st.names[0]),
      },
    });
    expect(() => parsePeftAdapter(config, lone)).toThrow(/has lora_A but no lora_B/);
    const stray = serializeSafetensors({
      "base_model.model.lm_head.weight": { dtype: "F32", shape: [1], data: [1] },
    });
    expect(() => parsePeftAdapter(config, stray)).toThrow(
      /"base_model.model.lm_head.weight" is not a LoRA weight/,
    );
    // nothing was half-applied by the failed attaches
    const clean = toyModules();
    const lm = new LoRAModel(clean);
    expect(() => attachPeftAdapter(lm, a2)).toThrow();
    expect(lm.layers().size).toBe(0);
  });

  it("rejects configs int21 cannot apply exactly", () => {
    const base = { peft_type: "LORA", r: 8, lora_alpha: 16, target_modules: ["q_proj"] };
    expect(parsePeftConfig(JSON.stringify(base)).lora_dropout).toBe(0);
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ peft_type: "IA3" }, /only "LORA"/],
      [{ r: 0 }, /r must be a positive integer/],
      [{ lora_alpha: "x" }, /lora_alpha must be a positive number/],
      [{ target_modules: [] }, /target_modules must be/],
      [{ use_rslora: true }, /use_rslora/],
      [{ use_dora: true }, /use_dora/],
      [{ fan_in_fan_out: true }, /fan_in_fan_out/],
      [{ bias: "all" }, /bias "all"/],
      [{ modules_to_save: ["lm_head"] }, /modules_to_save/],
      [{ rank_pattern: { q_proj: 1.5 } }, /rank_pattern\["q_proj"\]/],
    ];
    for (const [patch, re] of cases)
      expect(() => parsePeftConfig(JSON.stringify({ ...base, ...patch }))).toThrow(re);
    expect(() => parsePeftConfig("{")).toThrow(/not valid JSON/);
  });

  it("accepts a regular-expression target_modules", () => {
    const { model } = trainedModel();
    const { config, weights } = serializePeftAdapter(model);
    const c = JSON.parse(config);
    c.target_modules = ".*\\.(q_proj|v_proj)";
    const got = attachPeftAdapter(new LoRAModel(toyModules()), parsePeftAdapter(JSON.stringify(c), weights));
    expect(got.targets).toHaveLength(4);
  });

  it("reports a missing file clearly", async () => {
    const dir = mkdtempSync(join(tmpdir(), "int21-lora-"));
    dirs.push(dir);
    writeFileSync(join(dir, "adapter_config.json"), JSON.stringify(peftConfig(trainedModel().model)));
    await expect(loadPeftAdapter(dir, new LoRAModel(toyModules()))).rejects.toThrow(
      /cannot read adapter_model.safetensors/,
    );
  });
});
