// Adapters in the Hugging Face PEFT layout: `adapter_config.json` + `adapter_model.safetensors` with keys
// `base_model.model.<module>.lora_A.weight` ([r, in]) and `…lora_B.weight` ([out, r]).
import {
  type FileProblem,
  parseSafetensors,
  type SafetensorsInfo,
  type SafetensorsWriteTensor,
  serializeSafetensors,
  writeFileAtomic,
} from "@int21/io";
import type { AdapterRecord, LoRAModel } from "./lora-model";
import { canonicalTarget, matchesTarget, type TargetChoice } from "./targets";

/** File names PEFT uses in an adapter directory. */
export const PEFT_CONFIG_FILE = "adapter_config.json";
export const PEFT_WEIGHTS_FILE = "adapter_model.safetensors";

/** The fields of PEFT's `LoraConfig` that int21 reads and writes (others are kept as given). */
export interface PeftLoraConfig {
  peft_type: "LORA";
  task_type: string | null;
  base_model_name_or_path: string | null;
  r: number;
  lora_alpha: number;
  lora_dropout: number;
  /** Module name suffixes (Hugging Face names), or a regular expression a whole module name must match. */
  target_modules: string[] | string;
  rank_pattern: Record<string, number>;
  alpha_pattern: Record<string, number>;
  bias: string;
  fan_in_fan_out: boolean;
  use_rslora: boolean;
  use_dora?: boolean;
  inference_mode: boolean;
  init_lora_weights: boolean;
  modules_to_save: string[] | null;
  layers_to_transform: number[] | number | null;
  layers_pattern: string | null;
  revision: string | null;
  [extra: string]: unknown;
}

/** One adapter as stored: its config and, per module, A `[r × in]` and B `[out × r]`. */
export interface PeftAdapter {
  config: PeftLoraConfig;
  /** Where it was read from (the weights file), named in the errors of {@link attachPeftAdapter}. */
  source?: string;
  /** Module name (e.g. `model.layers.0.self_attn.q_proj`) → matrices. */
  modules: Map<
    string,
    { r: number; inFeatures: number; outFeatures: number; loraA: Float32Array; loraB: Float32Array }
  >;
}

/** Options of {@link serializePeftAdapter} / {@link savePeftAdapter}. */
export interface PeftSaveOptions {
  /** Which adapter of the model (default `default`). */
  name?: string;
  /** `base_model_name_or_path`; default the adapter config's `baseModel`, else null. */
  baseModel?: string;
  /** PEFT `task_type` (default `CAUSAL_LM`). */
  taskType?: string;
  /**
   * Storage dtype of `lora_A` / `lora_B` (default F32, exact). F16 / BF16 round to nearest even and halve
   * the file; every reader (PEFT, int21) widens them back to float32 on load.
   */
  dtype?: "F32" | "F16" | "BF16";
}

const KEY_PREFIX = "base_model.model.";
const KEY_RE = /^base_model\.model\.(.+)\.lora_([AB])(?:\.([A-Za-z0-9_-]+))?\.weight$/;

/** The safetensors key of a module's A or B (`base_model.model.<module>.lora_A.weight`). */
export function peftKey(module: string, which: "A" | "B"): string {
  return `${KEY_PREFIX}${module}.lora_${which}.weight`;
}

function defaults(rec: AdapterRecord): { r: number; alpha: number } {
  return { r: rec.config.r, alpha: rec.config.alpha ?? rec.config.r };
}

/** The PEFT `adapter_config.json` object of adapter `opts.name` of `model`. */
export function peftConfig(model: LoRAModel, opts: PeftSaveOptions = {}): PeftLoraConfig {
  const rec = model.record(opts.name ?? "default");
  const { r, alpha } = defaults(rec);
  const rankPattern: Record<string, number> = {};
  const alphaPattern: Record<string, number> = {};
  for (const t of rec.targets) {
    if (t.r !== r) rankPattern[t.module] = t.r;
    if (t.alpha !== alpha) alphaPattern[t.module] = t.alpha;
  }
  const targets =
    rec.config.targetModules.length > 0 ? rec.config.targetModules : rec.targets.map((t) => t.module);
  return {
    alpha_pattern: alphaPattern,
    base_model_name_or_path: opts.baseModel ?? rec.config.baseModel ?? null,
    bias: "none",
    fan_in_fan_out: false,
    inference_mode: true,
    init_lora_weights: true,
    layers_pattern: null,
    layers_to_transform: null,
    lora_alpha: alpha,
    lora_dropout: rec.config.dropout ?? 0,
    modules_to_save: null,
    peft_type: "LORA",
    r,
    rank_pattern: rankPattern,
    revision: null,
    target_modules: [...new Set(targets.map(canonicalTarget))],
    task_type: opts.taskType ?? "CAUSAL_LM",
    use_dora: false,
    use_rslora: false,
  };
}

/** The safetensors tensors (`opts.dtype`, default F32) of adapter `opts.name`: `lora_A` `[r, in]` and `lora_B` `[out, r]` per module. */
export function peftTensors(
  model: LoRAModel,
  opts: PeftSaveOptions = {},
): Record<string, SafetensorsWriteTensor> {
  const out: Record<string, SafetensorsWriteTensor> = {};
  for (const [module, a] of model.adapters(opts.name ?? "default")) {
    const dtype = opts.dtype ?? "F32";
    out[peftKey(module, "A")] = { dtype, shape: [a.r, a.inFeatures], data: a.loraA };
    out[peftKey(module, "B")] = { dtype, shape: [a.outFeatures, a.r], data: a.loraB };
  }
  return out;
}

/** Both files of a PEFT adapter in memory: the config JSON text and the safetensors bytes. */
export function serializePeftAdapter(
  model: LoRAModel,
  opts: PeftSaveOptions = {},
): { config: string; weights: Uint8Array } {
  return {
    config: `${JSON.stringify(peftConfig(model, opts), null, 2)}\n`,
    weights: serializeSafetensors(peftTensors(model, opts), { format: "pt" }),
  };
}

/** Writes `adapter_config.json` and `adapter_model.safetensors` into `dir` (created if needed). */
export async function savePeftAdapter(
  dir: string,
  model: LoRAModel,
  opts: PeftSaveOptions = {},
): Promise<void> {
  const { mkdir } = await import("node:fs/promises");
  const { join } = await import("node:path");
  const { config, weights } = serializePeftAdapter(model, opts);
  await mkdir(dir, { recursive: true });
  for (const [file, data] of [
    [PEFT_WEIGHTS_FILE, weights],
    [PEFT_CONFIG_FILE, config],
  ] as const) {
    await writeFileAtomic(join(dir, file), data);
  }
}

function bad(where: string, msg: string): never {
  throw new Error(`lora: PEFT adapter ${where}: ${msg}`);
}

function num(v: unknown, where: string, field: string, integer: boolean): number {
  if (typeof v !== "number" || !Number.isFinite(v) || v <= 0 || (integer && !Number.isSafeInteger(v))) {
    bad(where, `${field} must be a positive ${integer ? "integer" : "number"}, got ${JSON.stringify(v)}`);
  }
  return v;
}

/** Parses and checks `adapter_config.json` text: a plain LoRA adapter int21 can apply exactly. */
export function parsePeftConfig(text: string, where = PEFT_CONFIG_FILE): PeftLoraConfig {
  let c: Record<string, unknown>;
  try {
    c = JSON.parse(text) as Record<string, unknown>;
  } catch (e) {
    bad(where, `is not valid JSON (${(e as Error).message})`);
  }
  if (c === null || typeof c !== "object" || Array.isArray(c)) bad(where, "must be a JSON object");
  if (c.peft_type !== "LORA")
    bad(where, `peft_type is ${JSON.stringify(c.peft_type)}, only "LORA" is supported`);
  num(c.r, where, "r", true);
  num(c.lora_alpha, where, "lora_alpha", false);
  const tm = c.target_modules;
  if (
    !(
      typeof tm === "string" ||
      (Array.isArray(tm) && tm.length > 0 && tm.every((t) => typeof t === "string"))
    )
  ) {
    bad(
      where,
      `target_modules must be a non-empty list of names or a regular expression, got ${JSON.stringify(tm)}`,
    );
  }
  if (typeof tm === "string") {
    try {
      new RegExp(`^(?:${tm})$`);
    } catch (e) {
      bad(
        where,
        `target_modules ${JSON.stringify(tm)} is not a valid regular expression (${(e as Error).message})`,
      );
    }
  }
  if (c.use_rslora === true) bad(where, "use_rslora (scaling alpha/√r) is not supported");
  if (c.use_dora === true) bad(where, "use_dora (weight-decomposed LoRA) is not supported");
  if (c.fan_in_fan_out === true)
    bad(where, "fan_in_fan_out (Conv1D-style transposed weights) is not supported");
  if (c.bias !== undefined && c.bias !== "none")
    bad(where, `bias ${JSON.stringify(c.bias)} is not supported (only "none")`);
  const mts = c.modules_to_save;
  if (Array.isArray(mts) && mts.length > 0)
    bad(where, `modules_to_save ${JSON.stringify(mts)} is not supported`);
  for (const field of ["rank_pattern", "alpha_pattern"] as const) {
    const p = c[field] ?? {};
    if (p === null || typeof p !== "object" || Array.isArray(p)) bad(where, `${field} must be an object`);
    for (const [k, v] of Object.entries(p as Record<string, unknown>))
      num(v, where, `${field}["${k}"]`, field === "rank_pattern");
  }
  const dropout = c.lora_dropout ?? 0;
  if (typeof dropout !== "number" || !(dropout >= 0 && dropout < 1))
    bad(where, `lora_dropout must be in [0, 1), got ${JSON.stringify(dropout)}`);
  return {
    task_type: null,
    base_model_name_or_path: null,
    bias: "none",
    fan_in_fan_out: false,
    use_rslora: false,
    inference_mode: true,
    init_lora_weights: true,
    modules_to_save: null,
    layers_to_transform: null,
    layers_pattern: null,
    revision: null,
    ...c,
    lora_dropout: dropout,
    rank_pattern: (c.rank_pattern ?? {}) as Record<string, number>,
    alpha_pattern: (c.alpha_pattern ?? {}) as Record<string, number>,
  } as PeftLoraConfig;
}

function patternFor(pattern: Record<string, number>, module: string): number | undefined {
  for (const [k, v] of Object.entries(pattern)) if (matchesTarget(module, k)) return v;
  return undefined;
}

/** Whether the config's `target_modules` select `module` (a list: name suffixes; a string: full-match regex). */
export function peftTargets(config: PeftLoraConfig, module: string): boolean {
  const tm = config.target_modules;
  if (typeof tm === "string") return new RegExp(`^(?:${tm})$`).test(module);
  return tm.some((t) => matchesTarget(module, t));
}

/**
 * Reads an adapter from its config text and parsed safetensors: checks every key is a LoRA key, every
 * module has both A and B, shapes agree with each other and with `rank_pattern` / `r`, and the module
 * is selected by `target_modules`. `read` converts a tensor to float32 (F32, F16 and BF16 files all work).
 */
export function decodePeftAdapter(
  configText: string,
  info: SafetensorsInfo,
  read: (key: string) => Float32Array,
  where = "adapter",
): PeftAdapter {
  const config = parsePeftConfig(configText, `${where}/${PEFT_CONFIG_FILE}`);
  const w = `${where}/${PEFT_WEIGHTS_FILE}`;
  const parts = new Map<string, { A?: string; B?: string }>();
  for (const key of info.names) {
    const m = KEY_RE.exec(key);
    if (!m)
      bad(
        w,
        `tensor "${key}" is not a LoRA weight (expected base_model.model.<module>.lora_A.weight / lora_B.weight)`,
      );
    const p = parts.get(m[1]) ?? {};
    const which = m[2] as "A" | "B";
    if (p[which] !== undefined)
      bad(w, `module "${m[1]}" has two lora_${which} tensors ("${p[which]}", "${key}")`);
    p[which] = key;
    parts.set(m[1], p);
  }
  if (parts.size === 0) bad(w, "holds no LoRA tensors");
  const modules: PeftAdapter["modules"] = new Map();
  for (const [module, p] of parts) {
    if (p.A === undefined || p.B === undefined)
      bad(w, `module "${module}" has lora_${p.A ? "A" : "B"} but no lora_${p.A ? "B" : "A"}`);
    if (!peftTargets(config, module)) {
      bad(w, `module "${module}" is not selected by target_modules ${JSON.stringify(config.target_modules)}`);
    }
    const sa = info.tensors[p.A].shape;
    const sb = info.tensors[p.B].shape;
    if (sa.length !== 2 || sb.length !== 2)
      bad(w, `module "${module}": lora_A ${JSON.stringify(sa)} and lora_B ${JSON.stringify(sb)} must be 2-D`);
    const [r, inFeatures] = sa;
    const [outFeatures, rb] = sb;
    if (rb !== r)
      bad(w, `module "${module}": lora_A is [${sa}] (r = ${r}) but lora_B is [${sb}] (r = ${rb})`);
    const want = patternFor(config.rank_pattern, module) ?? config.r;
    if (r !== want) bad(w, `module "${module}" has rank ${r}, but the config gives it r = ${want}`);
    const loraA = read(p.A);
    const loraB = read(p.B);
    for (const [arr, key] of [
      [loraA, p.A],
      [loraB, p.B],
    ] as const) {
      for (let i = 0; i < arr.length; i++)
        if (!Number.isFinite(arr[i])) bad(w, `tensor "${key}"[${i}] = ${arr[i]} is not finite`);
    }
    modules.set(module, { r, inFeatures, outFeatures, loraA, loraB });
  }
  return { config, modules, source: w };
}

/** Parses an adapter held in memory (config text + safetensors bytes). */
export function parsePeftAdapter(configText: string, weights: Uint8Array, where = "adapter"): PeftAdapter {
  const st = parseSafetensors(weights, `${where}/${PEFT_WEIGHTS_FILE}`);
  return decodePeftAdapter(configText, st, (k) => st.readF32(k), where);
}

/** Reads `adapter_config.json` + `adapter_model.safetensors` from `dir`. */
export async function readPeftAdapter(dir: string): Promise<PeftAdapter> {
  const { readFile } = await import("node:fs/promises");
  const { join } = await import("node:path");
  const configText = await readFile(join(dir, PEFT_CONFIG_FILE), "utf8").catch((e: Error) =>
    bad(dir, `cannot read ${PEFT_CONFIG_FILE}: ${e.message}`),
  );
  const bytes = await readFile(join(dir, PEFT_WEIGHTS_FILE)).catch((e: Error) =>
    bad(dir, `cannot read ${PEFT_WEIGHTS_FILE}: ${e.message}`),
  );
  return parsePeftAdapter(configText, new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), dir);
}

/**
 * Checks a PEFT adapter directory as {@link readPeftAdapter} reads it — the config (a plain LoRA int21 can
 * apply), every key a LoRA weight, A and B present and consistent with `r` / `rank_pattern`, every value
 * finite — and returns the problem found (at most one: reading stops at the first), each naming the file.
 */
export async function validatePeftAdapter(dir: string): Promise<FileProblem[]> {
  try {
    await readPeftAdapter(dir);
    return [];
  } catch (e) {
    const msg = (e as Error).message;
    return [{ file: dir, message: msg.includes(dir) ? msg : `${dir}: ${msg}` }];
  }
}

/** Options of {@link attachPeftAdapter}. */
export interface PeftAttachOptions {
  /** Name of the adapter on the model (default `default`). */
  name?: string;
  /** Whether it trains further (default false: a loaded adapter is frozen). */
  trainable?: boolean;
}

/**
 * Stacks a decoded PEFT adapter onto `model`. Rejects it (changing nothing) when a module it names is
 * missing from the model, its shapes do not fit the module's, or a module the model has that
 * `target_modules` selects has no weights in the adapter.
 */
export function attachPeftAdapter(
  model: LoRAModel,
  adapter: PeftAdapter,
  opts: PeftAttachOptions = {},
): AdapterRecord {
  const { config } = adapter;
  const src = adapter.source ?? "adapter";
  const targets: TargetChoice[] = [];
  for (const [module, m] of adapter.modules) {
    const layer = model.modules.get(module);
    if (layer === undefined) {
      const some = [...model.modules.keys()].slice(0, 3).join(", ");
      bad(src, `module "${module}" is not in the model (its modules are named like ${some})`);
    }
    if (layer.inFeatures !== m.inFeatures || layer.outFeatures !== m.outFeatures) {
      bad(
        src,
        `module "${module}" is [${layer.outFeatures} × ${layer.inFeatures}] in the model but the adapter has lora_A [${m.r}, ${m.inFeatures}], lora_B [${m.outFeatures}, ${m.r}]`,
      );
    }
    targets.push({ module, r: m.r, alpha: patternFor(config.alpha_pattern, module) ?? config.lora_alpha });
  }
  const missing = [...model.modules.keys()].filter((n) => peftTargets(config, n) && !adapter.modules.has(n));
  if (missing.length > 0 && config.layers_to_transform === null) {
    bad(
      src,
      `target_modules selects ${missing.length} module(s) with no weights in the adapter, e.g. "${missing[0]}"`,
    );
  }
  const order = new Map([...model.modules.keys()].map((m, i) => [m, i]));
  targets.sort((a, b) => order.get(a.module)! - order.get(b.module)!);
  const tm = config.target_modules;
  return model.attachAdapter(
    {
      name: opts.name ?? "default",
      targetModules: typeof tm === "string" ? targets.map((t) => t.module) : tm,
      r: config.r,
      alpha: config.lora_alpha,
      dropout: config.lora_dropout,
      trainable: opts.trainable ?? false,
      ...(config.base_model_name_or_path ? { baseModel: config.base_model_name_or_path } : {}),
    },
    targets,
    (module) => {
      const m = adapter.modules.get(module)!;
      return { loraA: m.loraA, loraB: m.loraB };
    },
  );
}

/** Reads a PEFT adapter directory and stacks it onto `model` ({@link readPeftAdapter} + {@link attachPeftAdapter}). */
export async function loadPeftAdapter(
  dir: string,
  model: LoRAModel,
  opts: PeftAttachOptions = {},
): Promise<AdapterRecord> {
  return attachPeftAdapter(model, await readPeftAdapter(dir), opts);
}
