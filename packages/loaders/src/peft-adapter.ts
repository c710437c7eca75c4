// PEFT adapter folders of a LLaMA model in Hugging Face's layout: q/k `lora_B` rows permuted per head as
// `convert_llama_weights_to_hf` permutes q_proj / k_proj, Phi-3's fused modules; and the folder as a
// `finetune` adapter sink.
import {
  type AdapterRecord,
  attachPeftAdapter,
  LoRAModel,
  PEFT_CONFIG_FILE,
  PEFT_WEIGHTS_FILE,
  type PeftAttachOptions,
  type PeftSaveOptions,
  peftConfig,
  peftTensors,
  readPeftAdapter,
} from "@int21/lora";
import { writeFileAtomic, writeSafetensors } from "@int21/io";
import {
  type AdapterSink,
  type LlamaWeights,
  headSize,
  llamaModules,
  setLlamaModules,
} from "@int21/model-llama";
import { existsSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { permuteHfRows, unpermuteHfRows } from "./load-hf";
import { fusePhi3Adapter, splitPhi3Adapter } from "./phi3-adapter";

/** Heads of a q_proj / k_proj module name (HF's q/k rows are permuted per head), else 0. */
function qkHeads(weights: LlamaWeights, module: string): number {
  if (module.endsWith(".self_attn.q_proj")) return weights.config.nHeads;
  if (module.endsWith(".self_attn.k_proj")) return weights.config.nKvHeads;
  return 0;
}

/**
 * Saves adapter `opts.name` of a LLaMA model as a PEFT adapter **for the Hugging Face model**: int21 keeps
 * q/k rows in llama2.c's interleaved-RoPE order, HF's `q_proj` / `k_proj` weights have their rows
 * permuted per head (`convert_llama_weights_to_hf`), so `lora_B` of q_proj / k_proj is permuted the
 * same way (A, whose columns are the hidden state, is unchanged). Load it back with {@link loadLlamaAdapter}.
 */
export async function saveLlamaAdapter(
  dir: string,
  model: LoRAModel,
  weights: LlamaWeights,
  opts: PeftSaveOptions = {},
): Promise<void> {
  const hs = headSize(weights.config);
  const tensors = peftTensors(model, opts);
  for (const [key, t] of Object.entries(tensors)) {
    const m = /^base_model\.model\.(.+)\.lora_B\.weight$/.exec(key);
    const heads = m ? qkHeads(weights, m[1]) : 0;
    if (heads > 0) {
      const [rows, r] = t.shape;
      if (rows !== heads * hs)
        throw new Error(`saveLlamaAdapter: ${key} has ${rows} rows, expected ${heads}×${hs}`);
      tensors[key] = { ...t, data: permuteHfRows(t.data as Float32Array, heads, rows, r) };
    }
  }
  const config = peftConfig(model, opts);
  if (weights.config.family === "phi3") {
    // Hugging Face's Phi-3 has only the fused qkv_proj / gate_up_proj: write one LoRA per fused module
    const targets = new Map(
      model.record(opts.name ?? "default").targets.map((t) => [t.module, t.alpha / t.r]),
    );
    fusePhi3Adapter(weights, tensors, config, (module) => targets.get(module) ?? 1);
  }
  await mkdir(dir, { recursive: true });
  await writeSafetensors(join(dir, PEFT_WEIGHTS_FILE), tensors, { format: "pt" });
  await writeFileAtomic(join(dir, PEFT_CONFIG_FILE), `${JSON.stringify(config, null, 2)}\n`);
}

/**
 * Loads a PEFT adapter trained on (or saved for) the Hugging Face LLaMA layout onto `weights`: reads and
 * validates it, un-permutes `lora_B` rows of q_proj / k_proj into int21's order, stacks it on the model
 * (frozen unless `trainable`) and puts the wrapped layers into `weights`. Returns the model and the record.
 */
export async function loadLlamaAdapter(
  dir: string,
  weights: LlamaWeights,
  opts: PeftAttachOptions = {},
): Promise<{ model: LoRAModel; record: AdapterRecord }> {
  const adapter = await readPeftAdapter(dir);
  if (weights.config.family === "phi3") splitPhi3Adapter(weights, adapter);
  const hs = headSize(weights.config);
  for (const [module, m] of adapter.modules) {
    const heads = qkHeads(weights, module);
    if (heads > 0 && m.outFeatures === heads * hs)
      m.loraB = unpermuteHfRows(m.loraB, heads, m.outFeatures, m.r);
  }
  const model = new LoRAModel(llamaModules(weights));
  const record = attachPeftAdapter(model, adapter, opts);
  setLlamaModules(weights, model.modules);
  return { model, record };
}

/**
 * A `finetune` adapter sink writing a PEFT folder `dir` with {@link saveLlamaAdapter} (at every checkpoint
 * and at the end); a run found already finished rewrites it only when `adapter_config.json` or the weights
 * are missing.
 */
export function peftAdapterSink(dir: string, weights: LlamaWeights): AdapterSink {
  return {
    save: (model, name) => saveLlamaAdapter(dir, model, weights, { name }),
    has: async () => [PEFT_CONFIG_FILE, PEFT_WEIGHTS_FILE].every((f) => existsSync(join(dir, f))),
  };
}
