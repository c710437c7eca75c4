// LoRA adapters as int21 checkpoint adapters: each adapter's PEFT tensors and config, stored beside the model
// by saveInt21Checkpoint (`{ adapters }`).
import { type LoRAModel, type PeftLoraConfig, peftConfig, peftTensors } from "@int21/lora";
import type { CheckpointAdapters } from "./checkpoint";

/**
 * The `meta` that {@link checkpointAdaptersOf} stores with the adapters: per adapter, its name, the prefix
 * of its tensors and its PEFT config. A reader attaches each adapter from the tensors under its prefix.
 */
export interface Int21AdapterMeta {
  int21Adapters: { name: string; prefix: string; config: PeftLoraConfig }[];
}

/**
 * Adapters of `model` (all of them, or those named) as int21 checkpoint adapters, for
 * `saveInt21Checkpoint(path, baseWeightsOf(weights), { adapters })`: each adapter's PEFT tensors under
 * `<name>/<key>`, and its PEFT config in `meta` ({@link Int21AdapterMeta}).
 */
export function checkpointAdaptersOf(model: LoRAModel, names = model.adapterNames()): CheckpointAdapters {
  const tensors: CheckpointAdapters["tensors"] = {};
  const meta: Int21AdapterMeta = { int21Adapters: [] };
  for (const name of names) {
    const prefix = `${name}/`;
    for (const [k, t] of Object.entries(peftTensors(model, { name })))
      tensors[prefix + k] = { shape: [...t.shape], data: t.data as Float32Array };
    meta.int21Adapters.push({ name, prefix, config: peftConfig(model, { name }) });
  }
  return { tensors, meta };
}
