// Adapters stored inside an int21 model checkpoint (model-llama's `CheckpointAdapters`: opaque float
// tensors plus JSON meta), so one file carries a packed base and every adapter stacked on it.
import type { LoRAModel } from "./lora-model";

/** The structure model-llama's `saveInt21Checkpoint` stores beside the model (structurally typed here). */
export interface AdapterTensors {
  tensors: Record<string, { shape: number[]; data: Float32Array }>;
  meta?: unknown;
}

interface Meta {
  format: "int21-lora";
  version: 1;
  adapters: {
    name: string;
    trainable: boolean;
    dropout: number;
    targetModules: string[];
    r: number;
    alpha: number;
    modules: { module: string; r: number; alpha: number }[];
  }[];
}

/**
 * Every adapter of `model` as checkpoint tensors: `<adapter>/<module>.lora_A` `[r, in]` and
 * `…lora_B` `[out, r]`, and meta listing each adapter's name, rank / alpha per module, dropout and
 * whether it trains — in stacking order.
 */
export function adaptersToCheckpoint(model: LoRAModel): AdapterTensors {
  const tensors: AdapterTensors["tensors"] = {};
  const meta: Meta = { format: "int21-lora", version: 1, adapters: [] };
  for (const name of model.adapterNames()) {
    const rec = model.record(name);
    const pairs = model.adapters(name);
    for (const [module, a] of pairs) {
      tensors[`${name}/${module}.lora_A`] = { shape: [a.r, a.inFeatures], data: a.loraA };
      tensors[`${name}/${module}.lora_B`] = { shape: [a.outFeatures, a.r], data: a.loraB };
    }
    meta.adapters.push({
      name,
      trainable: pairs.length > 0 && pairs[0][1].trainable,
      dropout: rec.config.dropout ?? 0,
      targetModules: [...rec.config.targetModules],
      r: rec.config.r,
      alpha: rec.config.alpha ?? rec.config.r,
      modules: rec.targets.map((t) => ({ module: t.module, r: t.r, alpha: t.alpha })),
    });
  }
  return { tensors, meta };
}

/**
 * Stacks the adapters of a checkpoint (from {@link adaptersToCheckpoint}) onto `model`, in their
 * saved order. Throws naming the tensor when one is missing or its shape does not fit the module.
 */
export function adaptersFromCheckpoint(model: LoRAModel, stored: AdapterTensors): string[] {
  const meta = stored.meta as Meta | undefined;
  if (meta?.format !== "int21-lora" || !Array.isArray(meta.adapters)) {
    throw new Error("lora: adaptersFromCheckpoint: the checkpoint's adapter meta is not int21-lora");
  }
  const out: string[] = [];
  for (const ad of meta.adapters) {
    const get = (module: string, which: "A" | "B", shape: number[]) => {
      const key = `${ad.name}/${module}.lora_${which}`;
      const t = stored.tensors[key];
      if (!t) throw new Error(`lora: adaptersFromCheckpoint: tensor "${key}" is missing`);
      if (t.shape.length !== 2 || t.shape[0] !== shape[0] || t.shape[1] !== shape[1]) {
        throw new Error(
          `lora: adaptersFromCheckpoint: tensor "${key}" is [${t.shape}], the model needs [${shape}]`,
        );
      }
      return t.data;
    };
    for (const m of ad.modules) {
      const layer = model.modules.get(m.module);
      if (!layer)
        throw new Error(
          `lora: adaptersFromCheckpoint: adapter "${ad.name}" needs module "${m.module}", which the model lacks`,
        );
      get(m.module, "A", [m.r, layer.inFeatures]);
      get(m.module, "B", [layer.outFeatures, m.r]);
    }
    model.attachAdapter(
      {
        name: ad.name,
        targetModules: ad.targetModules,
        r: ad.r,
        alpha: ad.alpha,
        dropout: ad.dropout,
        trainable: ad.trainable,
      },
      ad.modules,
      (module) => {
        const m = ad.modules.find((x) => x.module === module)!;
        const layer = model.modules.get(module)!;
        return {
          loraA: get(module, "A", [m.r, layer.inFeatures]),
          loraB: get(module, "B", [layer.outFeatures, m.r]),
        };
      },
    );
    out.push(ad.name);
  }
  return out;
}
