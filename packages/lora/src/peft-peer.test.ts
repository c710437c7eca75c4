// int21's adapter_config.json against the one PEFT itself writes. PEFT_0_21 below is verbatim what
// PEFT 0.21.0 (transformers 5.18, torch 2.13 CPU) saved for
//   get_peft_model(llama, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
//                                    lora_dropout=0.0, task_type="CAUSAL_LM")).save_pretrained(dir)
// on int21's Hugging Face export of stories260K (base_model_name_or_path is that folder). PEFT fills every
// field int21 leaves out with these same defaults when it loads an adapter.
import { describe, expect, it } from "vitest";
import { applyLoRA } from "./lora-model";
import { peftConfig } from "./peft";
import { DenseLinear } from "./testing/dense-linear";

const PEFT_0_21: Record<string, unknown> = {
  alora_invocation_tokens: null,
  alpha_pattern: {},
  arrow_config: null,
  auto_mapping: null,
  base_model_name_or_path: "/tmp/peercheck/hf",
  bias: "none",
  corda_config: null,
  ensure_weight_tying: false,
  eva_config: null,
  exclude_modules: null,
  fan_in_fan_out: false,
  inference_mode: true,
  init_lora_weights: true,
  kasa_config: null,
  layer_replication: null,
  layers_pattern: null,
  layers_to_transform: null,
  loftq_config: {},
  lora_alpha: 8,
  lora_bias: false,
  lora_dropout: 0.0,
  lora_ga_config: null,
  megatron_config: null,
  megatron_core: "megatron.core",
  modules_to_save: null,
  monteclora_config: null,
  peft_type: "LORA",
  peft_version: "0.21.0",
  qalora_group_size: 16,
  r: 4,
  rank_pattern: {},
  revision: null,
  target_modules: ["v_proj", "q_proj"],
  target_parameters: null,
  task_type: "CAUSAL_LM",
  trainable_token_indices: null,
  use_bdlora: null,
  use_dora: false,
  use_qalora: false,
  use_rslora: false,
  velora_config: null,
};

/** The fields whose values decide what PEFT computes (the rest are PEFT's own defaults or bookkeeping). */
const SEMANTIC = [
  "alpha_pattern",
  "base_model_name_or_path",
  "bias",
  "fan_in_fan_out",
  "inference_mode",
  "init_lora_weights",
  "layers_pattern",
  "layers_to_transform",
  "lora_alpha",
  "lora_dropout",
  "modules_to_save",
  "peft_type",
  "r",
  "rank_pattern",
  "revision",
  "target_modules",
  "task_type",
  "use_dora",
  "use_rslora",
];

function int21Config() {
  const modules = new Map();
  for (let l = 0; l < 2; l++)
    for (const p of ["q_proj", "k_proj", "v_proj", "o_proj"])
      modules.set(`model.layers.${l}.self_attn.${p}`, new DenseLinear(new Float32Array(64), 8, 8));
  const model = applyLoRA(modules, { targetModules: ["q_proj", "v_proj"], r: 4, alpha: 8 });
  return peftConfig(model, { baseModel: "/tmp/peercheck/hf" }) as unknown as Record<string, unknown>;
}

describe("adapter_config.json against PEFT 0.21's own", () => {
  it("every field int21 writes is a PEFT field of the same JSON type", () => {
    const ours = int21Config();
    for (const [k, v] of Object.entries(ours)) {
      expect(Object.keys(PEFT_0_21), `PEFT has no field ${k}`).toContain(k);
      const theirs = PEFT_0_21[k];
      if (theirs !== null && v !== null) expect(typeof v, k).toBe(typeof theirs);
    }
  });

  it("every field that decides PEFT's computation is written, with PEFT's value for the same adapter", () => {
    const ours = int21Config();
    for (const k of SEMANTIC) {
      expect(Object.keys(ours), `int21 does not write ${k}`).toContain(k);
      if (k === "target_modules")
        expect([...(ours[k] as string[])].sort()).toEqual([...(PEFT_0_21[k] as string[])].sort());
      else expect(ours[k], k).toEqual(PEFT_0_21[k]);
    }
  });
});
