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

type StoredAdapter = Meta["adapters"][number];

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

function positive(v: unknown, integer: boolean): boolean {
  return typeof v === "number" && Number.isFinite(v) && v > 0 && (!integer || Number.isSafeInteger(v));
}

/** Checks the adapter meta field by field; throws naming `source`, the adapter and the field. */
function checkMeta(meta: unknown, fail: (msg: string) => never): Meta {
  if (!isObject(meta) || meta.format !== "int21-lora" || !Array.isArray(meta.adapters))
    fail("the checkpoint's adapter meta is not int21-lora");
  const names = new Set<string>();
  (meta.adapters as unknown[]).forEach((ad, i) => {
    const where = `adapter #${i}`;
    if (!isObject(ad)) fail(`${where} must be an object`);
    if (typeof ad.name !== "string" || ad.name === "") fail(`${where}: name must be a non-empty string`);
    if (names.has(ad.name)) fail(`two adapters are named "${ad.name}"`);
    names.add(ad.name);
    const w = `adapter "${ad.name}"`;
    if (typeof ad.trainable !== "boolean") fail(`${w}: trainable must be true or false`);
    if (typeof ad.dropout !== "number" || !(ad.dropout >= 0 && ad.dropout < 1))
      fail(`${w}: dropout must be in [0, 1), got ${JSON.stringify(ad.dropout)}`);
    if (!Array.isArray(ad.targetModules) || !ad.targetModules.every((t) => typeof t === "string"))
      fail(`${w}: targetModules must be a list of names`);
    if (!positive(ad.r, true)) fail(`${w}: r must be a positive integer, got ${JSON.stringify(ad.r)}`);
    if (!positive(ad.alpha, false))
      fail(`${w}: alpha must be a positive number, got ${JSON.stringify(ad.alpha)}`);
    if (!Array.isArray(ad.modules)) fail(`${w}: modules must be a list`);
    const seen = new Set<string>();
    for (const m of ad.modules as unknown[]) {
      if (!isObject(m) || typeof m.module !== "string") fail(`${w}: each module entry needs a module name`);
      if (seen.has(m.module)) fail(`${w}: module "${m.module}" is listed twice`);
      seen.add(m.module);
      if (!positive(m.r, true) || !positive(m.alpha, false))
        fail(`${w}: module "${m.module}" needs a positive integer r and a positive alpha`);
    }
  });
  return meta as unknown as Meta;
}

/**
 * Stacks the adapters of a checkpoint (from {@link adaptersToCheckpoint}) onto `model`, in their
 * saved order. Everything is checked before the first adapter is attached — the meta field by field, every
 * module present in the model, every tensor present with the shape the module needs and finite values, no
 * name already used — so a bad checkpoint leaves the model unchanged. Errors name `source` (the checkpoint's
 * file), the adapter and the tensor.
 */
export function adaptersFromCheckpoint(
  model: LoRAModel,
  stored: AdapterTensors,
  source = "checkpoint",
): string[] {
  const fail = (msg: string): never => {
    throw new Error(`lora: adaptersFromCheckpoint: ${source}: ${msg}`);
  };
  const meta = checkMeta(stored.meta, fail);
  const tensors = isObject(stored.tensors) ? stored.tensors : fail("the adapter tensors are missing");
  const existing = new Set(model.adapterNames());
  const get = (ad: StoredAdapter, module: string, which: "A" | "B", shape: number[]): Float32Array => {
    const key = `${ad.name}/${module}.lora_${which}`;
    if (!Object.hasOwn(tensors, key)) fail(`tensor "${key}" is missing`);
    const t = tensors[key];
    if (!Array.isArray(t.shape) || t.shape.length !== 2 || t.shape[0] !== shape[0] || t.shape[1] !== shape[1])
      fail(`tensor "${key}" is [${t.shape}], the model needs [${shape}]`);
    if (!(t.data instanceof Float32Array) || t.data.length !== shape[0] * shape[1])
      fail(`tensor "${key}" holds ${t.data?.length} values, [${shape}] needs ${shape[0] * shape[1]}`);
    return t.data;
  };
  // Validate everything first.
  const plans: { ad: StoredAdapter; data: Map<string, { loraA: Float32Array; loraB: Float32Array }> }[] = [];
  for (const ad of meta.adapters) {
    if (existing.has(ad.name)) fail(`the model already has an adapter named "${ad.name}"`);
    const data = new Map<string, { loraA: Float32Array; loraB: Float32Array }>();
    for (const m of ad.modules) {
      const layer =
        model.modules.get(m.module) ??
        fail(`adapter "${ad.name}" needs module "${m.module}", which the model lacks`);
      const loraA = get(ad, m.module, "A", [m.r, layer.inFeatures]);
      const loraB = get(ad, m.module, "B", [layer.outFeatures, m.r]);
      for (const [arr, which] of [
        [loraA, "A"],
        [loraB, "B"],
      ] as const) {
        for (let i = 0; i < arr.length; i++)
          if (!Number.isFinite(arr[i]))
            fail(`tensor "${ad.name}/${m.module}.lora_${which}"[${i}] = ${arr[i]} is not finite`);
      }
      data.set(m.module, { loraA, loraB });
    }
    plans.push({ ad, data });
  }
  // Then attach (nothing left to fail: names, modules, shapes and values were checked above).
  const out: string[] = [];
  for (const { ad, data } of plans) {
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
      (module) => data.get(module)!,
    );
    out.push(ad.name);
  }
  return out;
}
