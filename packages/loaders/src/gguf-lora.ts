// LoRA adapters as llama.cpp GGUF adapter files (what `llama-cli --lora` and `llama-export-lora` load), written
// and read back. Keys and shapes as llama.cpp's convert_lora_to_gguf.py writes them and src/llama-adapter.cpp
// checks them: `general.type` = "adapter", `adapter.type` = "lora", `adapter.lora.alpha` (f32, one per file,
// scale = alpha / rank per tensor), `general.architecture` = the base's (llama.cpp refuses a mismatch), the
// base model's `<arch>.*` keys, and per adapted weight `<base>.lora_a` with ne = [in, r] (row-major [r × in],
// PEFT's lora_A) and `<base>.lora_b` with ne = [r, out] ([out × r]). B's rows follow the base weight's rows:
// `llama` GGUFs keep q/k rows in the interleaved (Meta) order int21 uses, so they are written as they are;
// the NEOX architectures (qwen2, qwen3, phi3, gemma2) keep Hugging Face's rotate-half rows, so the q/k B rows
// are permuted like the base's (and un-permuted on read). Phi-3's fused attn_qkv (q|k|v) and ffn_up (gate|up)
// take ONE LoRA each, as llama.cpp applies it to the fused tensor: A stacks the parts' A rows, B is
// block-diagonal (a part without an adapter has zero rows), rank = the sum of the parts' ranks.
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
import { ggufConfigToLlama, ggufTensorLocation, ggufTensorName, llamaToGgufMetadata } from "./gguf-model";
import { permuteHfRows, unpermuteHfRows } from "./load-hf";
import {
  type LlamaConfig,
  headSize,
  validateConfig,
  assertFinite,
  LINEAR_NAMES,
  type LinearName,
} from "@int21/model-llama";

const HF_TO_SHORT = new Map<string, LinearName>(
  (Object.entries(LINEAR_NAMES) as [LinearName, string][]).map(([short, hf]) => [hf, short]),
);

/** llama.cpp's architectures whose GGUF keeps Hugging Face's rotate-half q/k rows. */
const NEOX_ARCHS = new Set(["qwen2", "qwen3", "phi3", "gemma2"]);
/** The `general.architecture` values a LoRA GGUF may name. */
const LORA_ARCHS = new Set(["llama", ...NEOX_ARCHS]);

/** Where a module's LoRA lands: the GGUF tensor, and its rows of a fused Phi-3 tensor. */
interface ModuleLocation {
  module: string;
  short: LinearName | "lm_head";
  tensor: string;
  rowStart?: number;
  rowEnd?: number;
}

function moduleLocation(module: string, config?: LlamaConfig): ModuleLocation {
  if (module === "lm_head") return { module, short: "lm_head", tensor: "output.weight" };
  const m = /^model\.layers\.(\d+)\.(.+)$/.exec(module);
  const short = m ? HF_TO_SHORT.get(m[2]) : undefined;
  if (!m || short === undefined) throw new Error(`gguf lora: module "${module}" is not a LLaMA projection`);
  const name = `layers.${m[1]}.${short}`;
  const loc = config ? ggufTensorLocation(name, config) : { tensor: ggufTensorName(name) };
  return { module, short, ...loc };
}

/**
 * The GGUF base tensor of a PEFT / {@link llamaModules} module name: `model.layers.3.self_attn.q_proj` →
 * `blk.3.attn_q.weight`, `lm_head` → `output.weight`; with a Phi-3 `config`, q/k/v → `attn_qkv` and
 * gate/up → `ffn_up` (the fused tensors). Throws on any other name.
 */
export function ggufModuleTensor(module: string, config?: LlamaConfig): string {
  return moduleLocation(module, config).tensor;
}

/** The module name of a GGUF base tensor of a `llama` file without a config (the inverse of {@link ggufModuleTensor}). */
function moduleOfTensor(tensor: string): string | undefined {
  if (tensor === "output.weight") return "lm_head";
  const m = /^blk\.(\d+)\.(\w+)\.weight$/.exec(tensor);
  if (!m) return undefined;
  for (const [short, hf] of Object.entries(LINEAR_NAMES)) {
    if (ggufTensorName(`layers.${m[1]}.${short}`) === tensor) return `model.layers.${m[1]}.${hf}`;
  }
  return undefined;
}

/** Every module of `config` by its GGUF tensor (several for Phi-3's fused tensors, in row order). */
function modulesByTensor(config: LlamaConfig): Map<string, ModuleLocation[]> {
  const out = new Map<string, ModuleLocation[]>();
  const put = (loc: ModuleLocation) => {
    const list = out.get(loc.tensor) ?? [];
    list.push(loc);
    list.sort((a, b) => (a.rowStart ?? 0) - (b.rowStart ?? 0));
    out.set(loc.tensor, list);
  };
  for (let l = 0; l < config.nLayers; l++)
    for (const hf of Object.values(LINEAR_NAMES)) put(moduleLocation(`model.layers.${l}.${hf}`, config));
  if (!config.sharedClassifier) put(moduleLocation("lm_head", config));
  return out;
}

/** Heads of a q / k projection whose rows a NEOX GGUF keeps in rotate-half order, else 0. */
function neoxHeads(config: LlamaConfig, short: string): number {
  if (!NEOX_ARCHS.has(config.family ?? "llama")) return 0;
  if (short === "wq") return config.nHeads;
  if (short === "wk") return config.nKvHeads;
  return 0;
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
   * Modules whose scaling differs from the file's: their B was multiplied by `(alpha_m / r_m) / (alpha / R)`
   * (R the rank of the written tensor: r_m, or the sum of the parts' ranks of a fused Phi-3 tensor), so
   * llama.cpp's `alpha / R · B'·A` equals the adapter's `alpha_m / r_m · B·A` (to float32 rounding).
   */
  rescaled: string[];
}

/**
 * The metadata and tensors of a llama.cpp LoRA adapter GGUF for adapter `opts.adapter` of `model` (a
 * `LoRAModel` over {@link llamaModules} names), for a base model of `config` (any family `saveGguf` writes:
 * `general.architecture` is the base's). llama.cpp reads one alpha per file: the first module's alpha; a
 * module with another scaling has its B rescaled (reported). NEOX families' q/k B rows are permuted to the
 * base's rotate-half order; Phi-3's q/k/v and gate/up adapters become one LoRA on `attn_qkv` / `ffn_up`
 * (stacked A, block-diagonal B). An adapted `lm_head` of a model with a tied classifier is refused
 * (llama.cpp's model has no `output.weight` to adapt).
 */
export function ggufLoraTensors(
  model: LoRAModel,
  config: LlamaConfig,
  opts: GgufLoraSaveOptions = {},
): { metadata: Record<string, GgufValue>; tensors: GgufWriteTensor[]; report: GgufLoraReport } {
  validateConfig(config, "saveGgufLora");
  const name = opts.adapter ?? "default";
  const type = opts.type ?? "F32";
  if (type !== "F32" && type !== "F16")
    throw new Error(`saveGgufLora: type ${String(type)} is not F32 or F16`);
  const pairs = model.adapters(name);
  if (pairs.length === 0) throw new Error(`saveGgufLora: adapter "${name}" adapts no module`);
  const alpha = pairs[0][1].alpha;
  const tensors: GgufWriteTensor[] = [];
  const report: GgufLoraReport = { alpha, tensors: [], rescaled: [] };
  // the modules of each GGUF tensor (Phi-3's fused ones take several), in first-seen order
  const groups = new Map<string, { loc: ModuleLocation; a: (typeof pairs)[number][1] }[]>();
  for (const [module, a] of pairs) {
    if (module === "lm_head" && config.sharedClassifier) {
      throw new Error(
        "saveGgufLora: the adapter targets lm_head but the classifier is tied to the embedding; llama.cpp has no output.weight to adapt",
      );
    }
    const loc = moduleLocation(module, config);
    groups.set(loc.tensor, [...(groups.get(loc.tensor) ?? []), { loc, a }]);
  }
  /** B of a part in the GGUF's row order, times `f`. */
  const bRows = (loc: ModuleLocation, b: Float32Array, out: number, r: number, f: number) => {
    const scaled = f === 1 ? b : b.map((v) => v * f);
    const heads = neoxHeads(config, loc.short);
    return heads > 0 ? permuteHfRows(scaled, heads, out, r) : scaled;
  };
  for (const [base, parts] of groups) {
    const fused = parts[0].loc.rowStart !== undefined;
    if (!fused) {
      const { loc, a } = parts[0];
      if (a.alpha !== alpha) report.rescaled.push(loc.module);
      const loraB = bRows(loc, a.loraB, a.outFeatures, a.r, a.alpha / alpha);
      tensors.push({ name: `${base}.lora_a`, type, shape: [a.r, a.inFeatures], data: a.loraA });
      tensors.push({ name: `${base}.lora_b`, type, shape: [a.outFeatures, a.r], data: loraB });
      report.tensors.push(base);
      continue;
    }
    // one LoRA on the fused tensor: stacked A, block-diagonal B scaled so that llama.cpp's alpha / R
    // gives each part its own alpha_m / r_m
    const layer = /^model\.layers\.(\d+)\./.exec(parts[0].loc.module)![1];
    const last = ggufTensorLocation(`layers.${layer}.${base.includes("attn_qkv") ? "wv" : "w3"}`, config);
    const rows = last.rowEnd!;
    const inF = parts[0].a.inFeatures;
    const R = parts.reduce((n, p) => n + p.a.r, 0);
    const A = new Float32Array(R * inF);
    const B = new Float32Array(rows * R);
    let col = 0;
    for (const { loc, a } of parts) {
      const f = a.alpha / a.r / (alpha / R);
      if (f !== 1) report.rescaled.push(loc.module);
      A.set(a.loraA, col * inF);
      const b = bRows(loc, a.loraB, a.outFeatures, a.r, f);
      for (let i = 0; i < a.outFeatures; i++)
        for (let j = 0; j < a.r; j++) B[(loc.rowStart! + i) * R + col + j] = b[i * a.r + j];
      col += a.r;
    }
    tensors.push({ name: `${base}.lora_a`, type, shape: [R, inF], data: A });
    tensors.push({ name: `${base}.lora_b`, type, shape: [rows, R], data: B });
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
  /** The module's alpha: `scaling · r` with the file's scaling `adapter.lora.alpha / R` of its tensor. */
  alpha: number;
  /** `[r × in]`. */
  loraA: Float32Array;
  /** `[out × r]`, rows in int21's order. */
  loraB: Float32Array;
}

/** A llama.cpp LoRA adapter GGUF, read and checked. */
export interface GgufLora {
  alpha: number;
  /** `general.architecture`. */
  architecture: string;
  /** The base model's config from the file's `<arch>.*` keys, when present. */
  config?: LlamaConfig;
  modules: GgufLoraModule[];
}

/** Options of {@link readGgufLora} / {@link loadGgufLora}. */
export interface GgufLoraReadOptions {
  /**
   * The base model's config, for a file without `<arch>.*` keys (llama.cpp's convert_lora_to_gguf.py writes
   * none): needed to un-permute a NEOX family's q/k rows and to split Phi-3's fused tensors.
   */
  config?: LlamaConfig;
}

/**
 * Splits the LoRA of a fused Phi-3 tensor into its parts. Part m's rows of `B` compute its delta with all of
 * A; the rank columns where its rows are all zero contribute nothing, so each part keeps only its non-zero
 * columns (an int21-written block-diagonal file comes back with the parts' own ranks). A part with no
 * non-zero column is dropped unless every part is zero (then each keeps the whole rank, so the targets
 * survive). Every module's scaling stays the file's `alpha / R`.
 */
function splitFused(
  parts: ModuleLocation[],
  A: Float32Array,
  B: Float32Array,
  R: number,
  inF: number,
  scaling: number,
): { loc: ModuleLocation; r: number; loraA: Float32Array; loraB: Float32Array; alpha: number }[] {
  const cols = parts.map((p) => {
    const keep: number[] = [];
    for (let j = 0; j < R; j++) {
      let nz = false;
      for (let i = p.rowStart!; i < p.rowEnd! && !nz; i++) nz = B[i * R + j] !== 0;
      if (nz) keep.push(j);
    }
    return keep;
  });
  const allZero = cols.every((c) => c.length === 0);
  const out = [];
  for (let m = 0; m < parts.length; m++) {
    const p = parts[m];
    const keep = allZero ? [...Array(R).keys()] : cols[m];
    if (keep.length === 0) continue;
    const r = keep.length;
    const rows = p.rowEnd! - p.rowStart!;
    const loraA = new Float32Array(r * inF);
    const loraB = new Float32Array(rows * r);
    keep.forEach((j, c) => {
      loraA.set(A.subarray(j * inF, (j + 1) * inF), c * inF);
      for (let i = 0; i < rows; i++) loraB[i * r + c] = B[(p.rowStart! + i) * R + j];
    });
    out.push({ loc: p, r, loraA, loraB, alpha: scaling * r });
  }
  return out;
}

/**
 * Reads a llama.cpp LoRA adapter GGUF (a path or bytes): checks `general.type` = adapter, `adapter.type` =
 * lora, `general.architecture` (llama, qwen2, qwen3, phi3, gemma2), `adapter.lora.alpha`, that every
 * `.lora_a` has its `.lora_b`, and llama.cpp's shape rule (a.ne[1] = b.ne[0] = r). B rows come back in
 * int21's order (a NEOX family's q/k rows un-permuted) and a Phi-3 fused tensor is split into its parts
 * (see {@link GgufLoraReadOptions.config} for files without the base's keys). Offsets and sizes were checked
 * against the file length by `@int21/io`; errors name the file and tensor.
 */
export async function readGgufLora(
  src: string | Uint8Array,
  opts: GgufLoraReadOptions = {},
): Promise<GgufLora> {
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
    const arch = ggufString(md, "general.architecture", label);
    if (arch === undefined || !LORA_ARCHS.has(arch))
      throw new Error(
        `gguf lora: ${label}: general.architecture is ${arch === undefined ? "missing" : `"${arch}"`}, expected one of ${[...LORA_ARCHS].join(", ")}`,
      );
    const alpha = ggufNumber(md, "adapter.lora.alpha", label);
    if (alpha === undefined || !(alpha > 0))
      throw new Error(`gguf lora: ${label}: adapter.lora.alpha is missing or not positive`);
    const config = Object.hasOwn(md, `${arch}.embedding_length`)
      ? ggufConfigToLlama(md, { file: label, hasOutput: true })
      : undefined;
    const base = config ?? opts.config;
    const baseArch =
      base === undefined ? undefined : NEOX_ARCHS.has(base.family ?? "") ? base.family : "llama";
    if (baseArch !== undefined && baseArch !== arch)
      throw new Error(
        `gguf lora: ${label}: the adapter is for a ${arch} model, the config given is ${base?.family ?? "llama"}`,
      );
    if (base === undefined && arch !== "llama")
      throw new Error(
        `gguf lora: ${label}: a ${arch} adapter without the base's ${arch}.* keys needs the base model's config (opts.config) to place its q/k rows${arch === "phi3" ? " and split the fused tensors" : ""}`,
      );
    const locations = base ? modulesByTensor(base) : undefined;
    const modules: GgufLoraModule[] = [];
    for (const n of file.names) {
      if (n.endsWith(".lora_b")) {
        if (!Object.hasOwn(file.tensors, `${n.slice(0, -2)}_a`))
          throw new Error(`gguf lora: ${label}: "${n}" has no matching .lora_a`);
        continue;
      }
      if (!n.endsWith(".lora_a"))
        throw new Error(`gguf lora: ${label}: tensor "${n}" is not a .lora_a / .lora_b`);
      const baseName = n.slice(0, -".lora_a".length);
      const bName = `${baseName}.lora_b`;
      const parts: ModuleLocation[] | undefined = locations
        ? locations.get(baseName)
        : ((m) => (m === undefined ? undefined : [moduleLocation(m)]))(moduleOfTensor(baseName));
      if (parts === undefined)
        throw new Error(`gguf lora: ${label}: "${baseName}" is not a LLaMA projection`);
      if (!Object.hasOwn(file.tensors, bName))
        throw new Error(`gguf lora: ${label}: "${n}" has no matching .lora_b`);
      const a = file.tensors[n];
      const b = file.tensors[bName];
      if (a.shape.length !== 2 || b.shape.length !== 2 || a.shape[0] !== b.shape[1]) {
        throw new Error(
          `gguf lora: ${label}: "${baseName}": lora_a [${a.shape.join("×")}] and lora_b [${b.shape.join("×")}] do not share a rank (lora_a must be [r × in], lora_b [out × r])`,
        );
      }
      const R = a.shape[0];
      if (R < 1)
        throw new Error(
          `gguf lora: ${label}: "${baseName}": rank ${R} (lora_a [${a.shape.join("×")}]) must be at least 1`,
        );
      const rows = parts[parts.length - 1].rowEnd;
      if (base !== undefined) {
        const want = rows ?? (parts[0].short === "lm_head" ? base.vocabSize : undefined);
        if (want !== undefined && b.shape[0] !== want)
          throw new Error(
            `gguf lora: ${label}: "${baseName}": lora_b has ${b.shape[0]} rows, the base tensor ${want}`,
          );
      }
      const loraA = await file.readTensorF32(n);
      const loraB = await file.readTensorF32(bName);
      assertFinite(loraA, `gguf lora: ${label}`, n);
      assertFinite(loraB, `gguf lora: ${label}`, bName);
      const pieces =
        parts[0].rowStart === undefined
          ? [{ loc: parts[0], r: R, loraA, loraB, alpha }]
          : splitFused(parts, loraA, loraB, R, a.shape[1], alpha / R);
      for (const p of pieces) {
        const out = p.loraB.length / p.r;
        const heads = base ? neoxHeads(base, p.loc.short) : 0;
        let pb = p.loraB;
        if (heads > 0) {
          if (out % heads !== 0 || (out / heads) % 2 !== 0 || (base && out / heads !== headSize(base)))
            throw new Error(
              `gguf lora: ${label}: "${baseName}": lora_b has ${out} rows, not ${heads} heads of the base's head size`,
            );
          pb = unpermuteHfRows(pb, heads, out, p.r);
        }
        modules.push({ module: p.loc.module, r: p.r, alpha: p.alpha, loraA: p.loraA, loraB: pb });
      }
    }
    if (modules.length === 0)
      throw new Error(`gguf lora: ${label}: the adapter holds no .lora_a / .lora_b pair`);
    return { alpha, architecture: arch, ...(config ? { config } : {}), modules };
  } finally {
    if ("close" in file) await file.close();
  }
}

/**
 * Reads a llama.cpp LoRA adapter GGUF ({@link readGgufLora}) and attaches it to `model` as adapter `name`
 * (default `default`): each module gets its rank and alpha from the file (all-or-nothing: on a shape
 * mismatch no layer keeps a partial adapter). Put the layers back with `setLlamaModules`.
 */
export async function loadGgufLora(
  src: string | Uint8Array,
  model: LoRAModel,
  opts: GgufLoraReadOptions & { name?: string } = {},
): Promise<GgufLora> {
  const lora = await readGgufLora(src, opts);
  const byModule = new Map(lora.modules.map((m) => [m.module, m]));
  const targets: TargetChoice[] = lora.modules.map((m) => ({ module: m.module, r: m.r, alpha: m.alpha }));
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
