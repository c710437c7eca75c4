// LoRA adapters as llama.cpp GGUF adapter files (what `llama-cli --lora` and `llama-export-lora` load), written
// and read back. Keys and shapes as llama.cpp's convert_lora_to_gguf.py writes them and src/llama-adapter.cpp
// checks them: `general.type` = "adapter", `adapter.type` = "lora", `adapter.lora.alpha` (f32, one per file,
// scale = alpha / rank per tensor), the base model's `llama.*` keys, and per adapted weight `<base>.lora_a`
// with ne = [in, r] (row-major [r × in], PEFT's lora_A) and `<base>.lora_b` with ne = [r, out] ([out × r]).
// B's rows follow the base weight's rows; int21 and GGUF both keep q/k rows in the interleaved (Meta) order,
// so no permutation is applied.
import {
  type GgufBytes,
  type GgufFile,
  type GgufValue,
  type GgufWriteTensor,
  ggufNumber,
  ggufString,
  openGguf,
  parseGguf,
  serializeGguf,
  writeGguf,
} from "@int21/io";
import type { LoRAModel, TargetChoice } from "@int21/lora";
import { type LlamaConfig, validateConfig } from "./config";
import { ggufConfigToLlama, ggufTensorName, llamaToGgufMetadata } from "./gguf-model";
import { assertFinite } from "./load-assemble";
import { LINEAR_NAMES, type LinearName } from "./weights";

const HF_TO_SHORT = new Map<string, LinearName>(
  (Object.entries(LINEAR_NAMES) as [LinearName, string][]).map(([short, hf]) => [hf, short]),
);

/**
 * The GGUF base tensor of a PEFT / {@link llamaModules} module name: `model.layers.3.self_attn.q_proj` →
 * `blk.3.attn_q.weight`, `lm_head` → `output.weight`. Throws on any other name.
 */
export function ggufModuleTensor(module: string): string {
  if (module === "lm_head") return "output.weight";
  const m = /^model\.layers\.(\d+)\.(.+)$/.exec(module);
  const short = m ? HF_TO_SHORT.get(m[2]) : undefined;
  if (!m || short === undefined) throw new Error(`gguf lora: module "${module}" is not a LLaMA projection`);
  return ggufTensorName(`layers.${m[1]}.${short}`);
}

/** The module name of a GGUF base tensor (the inverse of {@link ggufModuleTensor}). */
function moduleOfTensor(tensor: string): string | undefined {
  if (tensor === "output.weight") return "lm_head";
  const m = /^blk\.(\d+)\.(\w+)\.weight$/.exec(tensor);
  if (!m) return undefined;
  for (const [short, hf] of Object.entries(LINEAR_NAMES)) {
    if (ggufTensorName(`layers.${m[1]}.${short}`) === tensor) return `model.layers.${m[1]}.${hf}`;
  }
  return undefined;
}

/** Options of {@link saveGgufLora}. */
export interface GgufLoraSaveOptions {
  /** The adapter of `model` to write. Default `default`. */
  adapter?: string;
  /** Storage type of lora_a / lora_b. Default F32. */
  type?: "F32" | "F16";
}

/** What {@link saveGgufLora} wrote. */
export interface GgufLoraReport {
  /** `adapter.lora.alpha`. */
  alpha: number;
  /** Adapted base tensors (`blk.0.attn_q.weight` …). */
  tensors: string[];
  /**
   * Modules whose alpha differs from the file's single alpha: their B was multiplied by `alpha_m / alpha`, so
   * `alpha / r · B'·A` equals the adapter's `alpha_m / r · B·A` (to float32 rounding).
   */
  rescaled: string[];
}

/**
 * The metadata and tensors of a llama.cpp LoRA adapter GGUF for adapter `opts.adapter` of `model` (a
 * `LoRAModel` over {@link llamaModules} names), for a base model of `config`. llama.cpp reads one alpha per
 * file: the first module's alpha; a module with another alpha has its B rescaled (reported). An adapted
 * `lm_head` of a model with a tied classifier is refused (llama.cpp's model has no `output.weight` to adapt).
 */
export function ggufLoraTensors(
  model: LoRAModel,
  config: LlamaConfig,
  opts: GgufLoraSaveOptions = {},
): { metadata: Record<string, GgufValue>; tensors: GgufWriteTensor[]; report: GgufLoraReport } {
  validateConfig(config, "saveGgufLora");
  if (config.family !== undefined && config.family !== "llama" && config.family !== "mistral")
    throw new Error(
      `saveGgufLora: a ${config.family} adapter is not supported (llama.cpp's ${config.family} keeps rotate-half q/k rows or fused projections); fold it into the base with saveGguf's mergeLoRA`,
    );
  const name = opts.adapter ?? "default";
  const type = opts.type ?? "F32";
  if (type !== "F32" && type !== "F16")
    throw new Error(`saveGgufLora: type ${String(type)} is not F32 or F16`);
  const pairs = model.adapters(name);
  if (pairs.length === 0) throw new Error(`saveGgufLora: adapter "${name}" adapts no module`);
  const alpha = pairs[0][1].alpha;
  const tensors: GgufWriteTensor[] = [];
  const report: GgufLoraReport = { alpha, tensors: [], rescaled: [] };
  for (const [module, a] of pairs) {
    if (module === "lm_head" && config.sharedClassifier) {
      throw new Error(
        "saveGgufLora: the adapter targets lm_head but the classifier is tied to the embedding; llama.cpp has no output.weight to adapt",
      );
    }
    const base = ggufModuleTensor(module);
    let loraB = a.loraB;
    if (a.alpha !== alpha) {
      const f = a.alpha / alpha;
      loraB = loraB.map((v) => v * f);
      report.rescaled.push(module);
    }
    tensors.push({ name: `${base}.lora_a`, type, shape: [a.r, a.inFeatures], data: a.loraA });
    tensors.push({ name: `${base}.lora_b`, type, shape: [a.outFeatures, a.r], data: loraB });
    report.tensors.push(base);
  }
  const metadata: Record<string, GgufValue> = {
    ...llamaToGgufMetadata(config, { type, name: `int21 LoRA adapter "${name}"` }),
    "general.type": { type: "string", value: "adapter" },
    "adapter.type": { type: "string", value: "lora" },
    "adapter.lora.alpha": { type: "f32", value: alpha },
  };
  return { metadata, tensors, report };
}

/**
 * Writes adapter `opts.adapter` of `model` as a llama.cpp LoRA adapter GGUF (see {@link ggufLoraTensors}):
 * `llama-cli -m base.gguf --lora adapter.gguf` applies it to the base written by `saveGguf`.
 */
export async function saveGgufLora(
  path: string,
  model: LoRAModel,
  config: LlamaConfig,
  opts: GgufLoraSaveOptions = {},
): Promise<GgufLoraReport> {
  const { metadata, tensors, report } = ggufLoraTensors(model, config, opts);
  await writeGguf(path, { metadata, tensors });
  return report;
}

/** {@link saveGgufLora} into bytes in memory. */
export function serializeGgufLora(
  model: LoRAModel,
  config: LlamaConfig,
  opts: GgufLoraSaveOptions = {},
): { bytes: Uint8Array; report: GgufLoraReport } {
  const { metadata, tensors, report } = ggufLoraTensors(model, config, opts);
  return { bytes: serializeGguf({ metadata, tensors }), report };
}

/** One adapted module of a GGUF LoRA file. */
export interface GgufLoraModule {
  module: string;
  r: number;
  /** `[r × in]`. */
  loraA: Float32Array;
  /** `[out × r]`. */
  loraB: Float32Array;
}

/** A llama.cpp LoRA adapter GGUF, read and checked. */
export interface GgufLora {
  alpha: number;
  /** The base model's config from the file's `llama.*` keys, when present. */
  config?: LlamaConfig;
  modules: GgufLoraModule[];
}

/**
 * Reads a llama.cpp LoRA adapter GGUF (a path or bytes): checks `general.type` = adapter, `adapter.type` =
 * lora, `general.architecture` = llama, `adapter.lora.alpha`, that every `.lora_a` has its `.lora_b`, and
 * llama.cpp's shape rule (a.ne[1] = b.ne[0] = r). Offsets and sizes were checked against the file length by
 * `@int21/io`; errors name the file and tensor.
 */
export async function readGgufLora(src: string | Uint8Array): Promise<GgufLora> {
  const file: GgufFile | GgufBytes = typeof src === "string" ? await openGguf(src) : parseGguf(src);
  const label = file.path;
  try {
    const md = file.metadata;
    const need = (key: string, want: string) => {
      const v = ggufString(md, key, label);
      if (v !== want)
        throw new Error(
          `gguf lora: ${label}: ${key} is ${v === undefined ? "missing" : `"${v}"`}, expected "${want}"`,
        );
    };
    need("general.type", "adapter");
    need("adapter.type", "lora");
    need("general.architecture", "llama");
    const alpha = ggufNumber(md, "adapter.lora.alpha", label);
    if (alpha === undefined || !(alpha > 0))
      throw new Error(`gguf lora: ${label}: adapter.lora.alpha is missing or not positive`);
    const config = Object.hasOwn(md, "llama.embedding_length")
      ? ggufConfigToLlama(md, { file: label, hasOutput: true })
      : undefined;
    const modules: GgufLoraModule[] = [];
    for (const n of file.names) {
      if (n.endsWith(".lora_b")) {
        if (!Object.hasOwn(file.tensors, `${n.slice(0, -2)}_a`))
          throw new Error(`gguf lora: ${label}: "${n}" has no matching .lora_a`);
        continue;
      }
      if (!n.endsWith(".lora_a"))
        throw new Error(`gguf lora: ${label}: tensor "${n}" is not a .lora_a / .lora_b`);
      const base = n.slice(0, -".lora_a".length);
      const bName = `${base}.lora_b`;
      const module = moduleOfTensor(base);
      if (module === undefined) throw new Error(`gguf lora: ${label}: "${base}" is not a LLaMA projection`);
      if (!Object.hasOwn(file.tensors, bName))
        throw new Error(`gguf lora: ${label}: "${n}" has no matching .lora_b`);
      const a = file.tensors[n];
      const b = file.tensors[bName];
      if (a.shape.length !== 2 || b.shape.length !== 2 || a.shape[0] !== b.shape[1]) {
        throw new Error(
          `gguf lora: ${label}: "${base}": lora_a [${a.shape.join("×")}] and lora_b [${b.shape.join("×")}] do not share a rank (lora_a must be [r × in], lora_b [out × r])`,
        );
      }
      if (a.shape[0] < 1)
        throw new Error(
          `gguf lora: ${label}: "${base}": rank ${a.shape[0]} (lora_a [${a.shape.join("×")}]) must be at least 1`,
        );
      const loraA = await file.readTensorF32(n);
      const loraB = await file.readTensorF32(bName);
      assertFinite(loraA, `gguf lora: ${label}`, n);
      assertFinite(loraB, `gguf lora: ${label}`, bName);
      modules.push({ module, r: a.shape[0], loraA, loraB });
    }
    if (modules.length === 0)
      throw new Error(`gguf lora: ${label}: the adapter holds no .lora_a / .lora_b pair`);
    return { alpha, ...(config ? { config } : {}), modules };
  } finally {
    if ("close" in file) await file.close();
  }
}

/**
 * Reads a llama.cpp LoRA adapter GGUF ({@link readGgufLora}) and attaches it to `model` as adapter `name`
 * (default `default`): each module gets its file rank and the file's alpha (all-or-nothing: on a shape
 * mismatch no layer keeps a partial adapter). Put the layers back with `setLlamaModules`.
 */
export async function loadGgufLora(
  src: string | Uint8Array,
  model: LoRAModel,
  opts: { name?: string } = {},
): Promise<GgufLora> {
  const lora = await readGgufLora(src);
  const byModule = new Map(lora.modules.map((m) => [m.module, m]));
  const targets: TargetChoice[] = lora.modules.map((m) => ({ module: m.module, r: m.r, alpha: lora.alpha }));
  const label = typeof src === "string" ? src : "<bytes>";
  try {
    model.attachAdapter(
      {
        name: opts.name ?? "default",
        targetModules: lora.modules.map((m) => m.module),
        r: lora.modules[0]?.r ?? 1,
        alpha: lora.alpha,
      },
      targets,
      (module) => {
        const m = byModule.get(module)!;
        return { loraA: m.loraA, loraB: m.loraB };
      },
    );
  } catch (e) {
    throw new Error(`gguf lora: ${label}: ${(e as Error).message}`);
  }
  return lora;
}
