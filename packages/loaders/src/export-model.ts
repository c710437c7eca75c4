// One export call for every artifact int21 writes for a peer: a GGUF (+ LoRA GGUFs + an Ollama
// Modelfile) for llama.cpp/Ollama, a Hugging Face folder (+ PEFT adapters) for transformers, or a PEFT
// adapter alone. `int21 export gguf|hf|peft` is this function behind argv.
import { type GgufValue, writeFileAtomic, writeGguf } from "@int21/io";
import { type LoRAModel, LoRALinear, isLoRALinear, mergeAndUnload } from "@int21/lora";
import {
  type FloatLinear,
  type Linear,
  type QuantLinear,
  createFloatLinear,
  createQuantLinear,
  createReferenceBackend,
  getFormat,
  isBlockFormat,
  referenceDequantize,
  rtnQuantize,
} from "@int21/quant-kernels";
import { exportHf } from "./export-hf";
import { type GgufModelType, ggufModelTensors, llama2cTokenizerToGguf } from "./gguf-model";
import { saveGgufLora } from "./gguf-lora";
import { hfTokenizerToGguf, padGgufVocabulary } from "./gguf-hf-tokenizer";
import { HfTokenizer } from "./hf-tokenizer";
import type { Llama2cTokenizer } from "./tokenizer";
import {
  llamaModules,
  setLlamaModules,
  fitBlockFormat,
  LINEAR_NAMES,
  type LlamaWeights,
} from "@int21/model-llama";
import { saveLlamaAdapter } from "./peft-adapter";

/** What {@link exportModel} writes. */
export type ExportTarget = "gguf" | "hf" | "peft";

/**
 * Where a `gguf` export folds the adapters ({@link ExportModelOptions.merge}): `"f16"` / `"f32"` store every
 * adapted projection (`W + Σ scaling·B·A`, merged in float) as F16 / F32 whatever `ggufType` is, the rest of
 * the model as it is (packed ggml blocks verbatim); a ggml block format of the registry (`"q2_k"` … `"q6_k"`,
 * `"q4_0"`, `"q8_0"`, `"iq4_nl-ggml"`, …) re-quantizes each merged projection into it with ggml's
 * quantizer (a row that is no whole block falls back as llama-quantize does, see {@link fitBlockFormat}).
 */
export type MergeInto = "f16" | "f32" | (string & {});

/** Options of {@link exportModel}. */
export interface ExportModelOptions {
  /** `gguf`: a llama.cpp file; `hf`: a Hugging Face folder; `peft`: the adapters alone. */
  to: ExportTarget;
  /** `gguf`: the `.gguf` file to write (adapters go beside it); `hf` / `peft`: the folder. */
  out: string;
  /** The LoRA view of `weights` holding the adapters to export (as attached from a checkpoint or PEFT folder). */
  lora?: LoRAModel;
  /**
   * Fold the adapters into the exported weights instead of writing them as separate adapter files
   * (`gguf`: `true` merges in float and writes the merged projections in `ggufType`; a {@link MergeInto}
   * names their storage, `"f16"` being the lossless single file; `hf`: exact, in float). Default false.
   * Not for `peft`. A merge whose rounding is at least the correction it folds in is refused
   * (`allowLossyMerge`).
   */
  merge?: boolean | MergeInto;
  /** `gguf`: type of the 2-D tensors (default F16: a 2-bit model written as 16-bit floats; see the README). */
  ggufType?: GgufModelType;
  /** `gguf`: type of `token_embd` (default F16, whatever `ggufType` is: a quantized table costs accuracy). */
  ggufEmbeddingType?: GgufModelType;
  /** `gguf`: storage type of the LoRA GGUF tensors (default F16). */
  ggufLoraType?: "F32" | "F16";
  /**
   * `gguf`: the tokenizer written into the file (`tokenizer.ggml.*`): a llama2.c / SentencePiece one as
   * llama.cpp's `llama` vocabulary, a byte-level BPE `tokenizer.json` as its `gpt2` vocabulary
   * ({@link hfTokenizerToGguf}). llama.cpp cannot load a GGUF without one.
   */
  tokenizer?: Llama2cTokenizer | HfTokenizer;
  /** `hf`: tensor dtype (default F32: exact). */
  dtype?: "F32" | "F16" | "BF16";
  /**
   * `hf`: files copied into the folder beside `config.json` (the source's tokenizer.json,
   * tokenizer_config.json, tokenizer.model, special_tokens_map.json, generation_config.json, chat_template.jinja).
   */
  copyFiles?: readonly string[];
  /**
   * The adapters' `base_model_name_or_path`. Default: for `hf`, the exported folder (absolute path); for
   * `peft`, the adapter's own value, else null. Give a hub id when the base will be published.
   */
  baseModel?: string;
  /** `gguf`: `general.name`. */
  name?: string;
  /** `hf` / `peft`: storage dtype of the PEFT adapters (default F32, exact; F16/BF16 halve them). */
  adapterDtype?: "F32" | "F16" | "BF16";
  /**
   * `gguf` with `merge` into a quantized type (Q8_0, Q4_0, Q4_1, or a block format such as `"q2_k"`): write the
   * file even when quantizing a merged tensor adds more error than the correction folded into it (by default
   * that is refused, naming the tensors, the measured errors and the lossless alternatives: such a merge
   * throws the adapter away).
   */
  allowLossyMerge?: boolean;
}

/** A merged tensor whose quantization error in the file is at least the correction merged into it. */
export interface LossyMerge {
  /** Module name (`model.layers.0.self_attn.q_proj`). */
  module: string;
  /** RMS of the merged correction `Σ scaling·B·A`. */
  deltaRms: number;
  /** RMS of `written − (W + ΔW)` for the file's type. */
  rmsError: number;
}

/** One file {@link exportModel} wrote, and what it is. */
export interface ExportedFile {
  path: string;
  what: string;
}

/** What {@link exportModel} wrote. */
export interface ExportModelReport {
  to: ExportTarget;
  files: ExportedFile[];
  /** Adapters written as separate files (none when merged). */
  adapters: string[];
  /** Adapters folded into the weights. */
  merged: string[];
  /** `gguf`: the command line that runs the export in llama.cpp. */
  llamaCppCommand?: string;
  /** `gguf` with `merge`: merged tensors the file's type blurs more than their correction (`allowLossyMerge`). */
  lossyMerges?: LossyMerge[];
  /** `gguf`: the size of the model file's tensors. */
  gguf?: GgufSize;
}

/** Tensor bytes and bits per weight of a written GGUF (metadata not counted). */
export interface GgufSize {
  /** Bytes of all tensor data. */
  tensorBytes: number;
  /** `8 · tensorBytes / elements` over every tensor (norms and the embedding included). */
  bitsPerWeight: number;
  /** The same over the layers' projections only (`blk.N.attn_*` / `blk.N.ffn_*` matrices). */
  projectionBitsPerWeight: number;
}

/** Tensor bytes and bits per weight of GGUF tensors; `f16` names tensors counted as F16 instead of as written. */
function ggufSize(
  tensors: readonly { name: string; shape: readonly number[]; raw?: Uint8Array }[],
  f16: ReadonlySet<string> = new Set(),
): GgufSize {
  let bytes = 0;
  let n = 0;
  let pBytes = 0;
  let pN = 0;
  for (const t of tensors) {
    const el = t.shape.reduce((a, b) => a * b, 1);
    const b = f16.has(t.name) ? 2 * el : (t.raw?.length ?? 0);
    bytes += b;
    n += el;
    if (t.shape.length === 2 && /^blk\.\d+\.(attn|ffn)_/.test(t.name)) {
      pBytes += b;
      pN += el;
    }
  }
  return {
    tensorBytes: bytes,
    bitsPerWeight: (8 * bytes) / Math.max(1, n),
    projectionBitsPerWeight: (8 * pBytes) / Math.max(1, pN),
  };
}

/** A shallow copy of `weights` holding `modules` (as from {@link llamaModules}) instead of its own projections. */
function withModules(weights: LlamaWeights, modules: ReadonlyMap<string, Linear>): LlamaWeights {
  const copy: LlamaWeights = { ...weights, layers: weights.layers.map((L) => ({ ...L })) };
  setLlamaModules(copy, modules);
  return copy;
}

/** `weights` with every LoRA-wrapped projection replaced by its frozen base (a shallow copy). */
export function baseWeightsOf(weights: LlamaWeights): LlamaWeights {
  const modules = llamaModules(weights);
  const base = new Map<string, Linear>();
  for (const [name, l] of modules) base.set(name, isLoRALinear(l) ? l.base : l);
  return withModules(weights, base);
}

/**
 * `weights` with every LoRA-wrapped projection folded into a float base: a packed base is dequantized
 * first, so `W + Σ scaling·B·A` is exact (float32) instead of re-quantized into the packed format (which
 * at 2 bits throws the correction away). Returns the merged weights and, per module, the correction's RMS.
 */
export function mergeToFloat(weights: LlamaWeights): {
  weights: LlamaWeights;
  deltaRms: Map<string, number>;
} {
  const modules = llamaModules(weights);
  const out = new Map<string, Linear>();
  const deltaRms = new Map<string, number>();
  const ref = createReferenceBackend();
  for (const [name, l] of modules) {
    if (!isLoRALinear(l)) {
      out.set(name, l);
      continue;
    }
    let base = l.base;
    const q = (base as Partial<QuantLinear>).q;
    if (q !== undefined) {
      const W = new Float32Array(l.outFeatures * l.inFeatures);
      const be = (base as QuantLinear).backend;
      (be.supports("dequantize", q.format) ? be : ref).dequantize(q, W);
      base = createFloatLinear({
        weight: W,
        outFeatures: l.outFeatures,
        inFeatures: l.inFeatures,
        backend: (base as QuantLinear).backend,
        ...((base as QuantLinear).bias ? { bias: (base as QuantLinear).bias } : {}),
      });
    }
    const floatLayer = new LoRALinear(base, l.adapters);
    const { linear, report } = mergeAndUnload(floatLayer);
    out.set(name, linear);
    deltaRms.set(name, report.deltaRms);
  }
  return { weights: withModules(weights, out), deltaRms };
}

/** What a {@link MergeInto} asks for, checked. */
function mergeTarget(
  into: string,
): { kind: "float"; type: "F16" | "F32" } | { kind: "block"; format: string } {
  if (into === "f16" || into === "F16") return { kind: "float", type: "F16" };
  if (into === "f32" || into === "F32") return { kind: "float", type: "F32" };
  let f: ReturnType<typeof getFormat> | undefined;
  try {
    f = getFormat(into.toLowerCase());
  } catch {
    f = undefined;
  }
  if (f === undefined || !isBlockFormat(f))
    throw new Error(
      `exportModel: merge "${into}" is neither f16, f32 nor a ggml block format of the registry (q2_k … q6_k, q4_0, q4_1, q5_0, q5_1, q8_0, iq4_nl-ggml, iq4_xs)`,
    );
  return { kind: "block", format: f.name };
}

/**
 * The merged float projections of `weights` (the modules of `deltaRms`) re-quantized into the block `format`
 * with ggml's quantizer (RTN, as llama-quantize); a row that is no whole block falls back as
 * {@link fitBlockFormat} says, or stays float. Returns the weights and each module's RMS rounding error.
 */
function requantizeMerged(
  weights: LlamaWeights,
  deltaRms: ReadonlyMap<string, number>,
  format: string,
): { weights: LlamaWeights; rmsError: Map<string, number> } {
  const modules = llamaModules(weights);
  const out = new Map(modules);
  const rmsError = new Map<string, number>();
  for (const name of deltaRms.keys()) {
    const l = modules.get(name) as FloatLinear | undefined;
    if (l?.weight === undefined) continue;
    const N = l.outFeatures;
    const K = l.inFeatures;
    const f = fitBlockFormat(getFormat(format), K);
    if (f === undefined) continue;
    const q = rtnQuantize(l.weight, N, K, f);
    const back = new Float32Array(N * K);
    referenceDequantize(q, back);
    let sq = 0;
    for (let i = 0; i < back.length; i++) sq += (back[i] - l.weight[i]) ** 2;
    rmsError.set(name, Math.sqrt(sq / back.length));
    out.set(name, createQuantLinear({ q, backend: l.backend, ...(l.bias ? { bias: l.bias } : {}) }));
  }
  return { weights: withModules(weights, out), rmsError };
}

/**
 * `tokenizer.ggml.*` of `tok` for a model of `vocabSize` rows: llama.cpp's `llama` vocabulary for a llama2.c /
 * SentencePiece tokenizer, `gpt2` for a byte-level BPE `tokenizer.json`; padding rows past the tokenizer
 * become `[PAD<id>]` tokens of type unused (score 0), as llama.cpp's converter writes them.
 */
function tokenizerGguf(tok: Llama2cTokenizer | HfTokenizer, vocabSize: number): Record<string, GgufValue> {
  if (tok instanceof HfTokenizer) return hfTokenizerToGguf(tok, vocabSize);
  return padGgufVocabulary(llama2cTokenizerToGguf(tok), vocabSize, "exportModel: the tokenizer");
}

/** The int21 tensor name (`layers.0.wq`, `classifier`) of a module name from {@link llamaModules}. */
function int21Name(module: string): string {
  if (module === "lm_head") return "classifier";
  const m = /^model\.layers\.(\d+)\.(.+)$/.exec(module);
  if (!m) return module;
  const short = Object.entries(LINEAR_NAMES).find(([, hf]) => hf === m[2])?.[0];
  return short ? `layers.${m[1]}.${short}` : module;
}

function adapterNames(lora: LoRAModel | undefined): string[] {
  return lora?.adapterNames() ?? [];
}

function safeName(name: string): string {
  return name.replace(/[^A-Za-z0-9_.-]/g, "_");
}

/**
 * Writes `weights` (and the adapters of `opts.lora`) as artifacts a peer runs:
 * - `gguf`: `opts.out` (a llama.cpp GGUF of the base, or of the merged model with `merge`), one
 *   `<stem>.<adapter>.lora.gguf` per adapter (llama.cpp's LoRA GGUF), and a `Modelfile` beside them
 *   (`FROM` the base, one `ADAPTER` line per adapter) for `ollama create`;
 * - `hf`: a Hugging Face folder (config.json + safetensors, `opts.copyFiles` copied in) and each adapter as a
 *   PEFT folder `adapters/<name>/` whose `base_model_name_or_path` is the exported folder;
 * - `peft`: each adapter as a PEFT folder in Hugging Face's q/k row order ({@link saveLlamaAdapter}) (`out` itself when there is one adapter, `out/<name>/` otherwise).
 * Throws naming the option when the request cannot be met (no adapters for `peft`, `merge` with `peft`).
 */
export async function exportModel(
  weights: LlamaWeights,
  opts: ExportModelOptions,
): Promise<ExportModelReport> {
  const { mkdir, readFile } = await import("node:fs/promises");
  const { basename, dirname, join, resolve } = await import("node:path");
  const names = adapterNames(opts.lora);
  const merge = opts.merge ?? false;
  const files: ExportedFile[] = [];
  const report: ExportModelReport = { to: opts.to, files, adapters: [], merged: [] };
  if (opts.to === "peft") {
    if (merge !== false)
      throw new Error("exportModel: merge does not apply to a PEFT export (it writes adapters only)");
    if (names.length === 0 || opts.lora === undefined)
      throw new Error("exportModel: no LoRA adapter to export as PEFT (attach one, or export gguf/hf)");
    for (const name of names) {
      const dir = names.length === 1 ? opts.out : join(opts.out, safeName(name));
      await saveLlamaAdapter(dir, opts.lora, weights, {
        name,
        ...(opts.adapterDtype !== undefined ? { dtype: opts.adapterDtype } : {}),
        ...(opts.baseModel !== undefined ? { baseModel: opts.baseModel } : {}),
      });
      files.push({ path: dir, what: `PEFT adapter "${name}"` });
      report.adapters.push(name);
    }
    return report;
  }
  if (opts.to === "hf") {
    const out = resolve(opts.out);
    if (typeof merge === "string")
      throw new Error(
        `exportModel: merge "${merge}" applies to a gguf export; an hf export merges in float (merge: true)`,
      );
    const base = merge ? weights : baseWeightsOf(weights);
    // the tokenizer's special ids into config.json, from the generation_config.json copied beside it
    const gen = opts.copyFiles?.find((f) => basename(f) === "generation_config.json");
    const specialTokens = gen !== undefined ? JSON.parse(await readFile(gen, "utf8")) : undefined;
    const hf = await exportHf(out, base, {
      dtype: opts.dtype ?? "F32",
      mergeLoRA: merge,
      ...(specialTokens !== undefined
        ? {
            specialTokens: {
              bos_token_id: specialTokens.bos_token_id ?? undefined,
              eos_token_id: specialTokens.eos_token_id ?? undefined,
              pad_token_id: specialTokens.pad_token_id ?? undefined,
            },
          }
        : {}),
    });
    for (const f of hf.files) files.push({ path: join(out, f), what: "Hugging Face model" });
    for (const src of opts.copyFiles ?? []) {
      const dst = join(out, basename(src));
      await writeFileAtomic(dst, await readFile(src));
      files.push({ path: dst, what: "tokenizer / generation file" });
    }
    if (merge) report.merged.push(...names);
    else if (opts.lora !== undefined) {
      for (const name of names) {
        const dir = join(out, "adapters", safeName(name));
        await saveLlamaAdapter(dir, opts.lora, weights, {
          name,
          baseModel: opts.baseModel ?? out,
          ...(opts.adapterDtype !== undefined ? { dtype: opts.adapterDtype } : {}),
        });
        files.push({ path: dir, what: `PEFT adapter "${name}"` });
        report.adapters.push(name);
      }
    }
    return report;
  }
  // gguf
  const out = resolve(opts.out);
  const into = typeof merge === "string" ? mergeTarget(merge) : undefined;
  await mkdir(dirname(out), { recursive: true });
  const merged = merge !== false ? mergeToFloat(weights) : undefined;
  const fileType = opts.ggufType ?? "F16";
  /** Per merged module re-quantized into a block format: its RMS rounding error. */
  const blockErrors = new Map<string, number>();
  let toWrite = merged?.weights ?? baseWeightsOf(weights);
  if (merged && into?.kind === "block") {
    const requantized = requantizeMerged(toWrite, merged.deltaRms, into.format);
    toWrite = requantized.weights;
    for (const [m, e] of requantized.rmsError) blockErrors.set(m, e);
  }
  const ggOpts = {
    embeddingType: opts.ggufEmbeddingType ?? "F16",
    ...(opts.name !== undefined ? { name: opts.name } : {}),
  };
  const gg = ggufModelTensors(toWrite, { type: fileType, ...ggOpts });
  /** GGUF names of the tensors holding a merged module. */
  const ggufOf = new Map(gg.report.tensors.map((t) => [t.name, t.gguf]));
  const mergedGguf = new Set(
    [...(merged?.deltaRms.keys() ?? [])].map((m) => ggufOf.get(int21Name(m))).filter((g) => g !== undefined),
  );
  let errReport = gg.report.tensors;
  if (merged && into?.kind === "float" && into.type !== fileType) {
    // the merged projections in F16 / F32, every other tensor as `ggufType` wrote it
    const alt = ggufModelTensors(toWrite, { type: into.type, ...ggOpts });
    const byName = new Map(alt.tensors.map((t) => [t.name, t]));
    gg.tensors.forEach((t, k) => {
      if (mergedGguf.has(t.name)) gg.tensors[k] = byName.get(t.name)!;
    });
    errReport = alt.report.tensors;
  }
  if (opts.tokenizer !== undefined)
    Object.assign(gg.metadata, tokenizerGguf(opts.tokenizer, weights.config.vocabSize));
  if (merged) {
    const byName = new Map(errReport.map((t) => [t.name, t]));
    const lossy: LossyMerge[] = [];
    for (const [module, deltaRms] of merged.deltaRms) {
      const rmsError = blockErrors.get(module) ?? byName.get(int21Name(module))?.rmsError;
      if (rmsError !== undefined && deltaRms > 0 && rmsError >= deltaRms)
        lossy.push({ module, deltaRms, rmsError });
    }
    report.lossyMerges = lossy;
    if (lossy.length > 0 && !opts.allowLossyMerge) {
      const what = into?.kind === "block" ? into.format : into?.kind === "float" ? into.type : fileType;
      const worst = [...lossy].sort((a, b) => b.rmsError / b.deltaRms - a.rmsError / a.deltaRms).slice(0, 3);
      const f16 = ggufSize(gg.tensors, mergedGguf);
      const f16Option =
        what === "F16" || what === "F32"
          ? "merge into F32 (--merge f32)"
          : `merge: "f16" (--merge f16: one file, the ${mergedGguf.size} adapted projections F16, the rest as it is: ${f16.bitsPerWeight.toFixed(2)} bits per weight)`;
      throw new Error(
        `exportModel: merging into ${what} would throw the adapters away: in ${lossy.length} of ${merged.deltaRms.size} merged tensors the ${what} rounding error is at least the correction (${worst.map((w) => `${w.module}: error rms ${w.rmsError.toExponential(2)} ≥ correction rms ${w.deltaRms.toExponential(2)}`).join("; ")}). Lossless instead: keep the adapters as LoRA GGUFs beside the base (two files: no merge), or ${f16Option}; or pass allowLossyMerge (--allow-lossy-merge) to write it anyway`,
      );
    }
  }
  report.gguf = ggufSize(gg.tensors);
  await writeGguf(out, { metadata: gg.metadata, tensors: gg.tensors });
  files.push({ path: out, what: "llama.cpp GGUF" });
  const stem = basename(out).replace(/\.gguf$/i, "");
  const loraFiles: string[] = [];
  if (merge !== false) report.merged.push(...names);
  else if (opts.lora !== undefined) {
    for (const name of names) {
      const path = join(dirname(out), `${stem}.${safeName(name)}.lora.gguf`);
      await saveGgufLora(path, opts.lora, weights.config, {
        adapter: name,
        type: opts.ggufLoraType ?? "F16",
      });
      files.push({ path, what: `llama.cpp LoRA GGUF "${name}"` });
      loraFiles.push(path);
      report.adapters.push(name);
    }
  }
  const modelfile = join(dirname(out), "Modelfile");
  const lines = [
    "# Ollama: `ollama create <name> -f Modelfile`, then `ollama run <name>` (written by int21 export gguf)",
    `FROM ./${basename(out)}`,
    ...loraFiles.map((p) => `ADAPTER ./${basename(p)}`),
  ];
  await writeFileAtomic(modelfile, `${lines.join("\n")}\n`);
  files.push({ path: modelfile, what: "Ollama Modelfile" });
  report.llamaCppCommand = [
    "llama-cli",
    "-m",
    out,
    ...loraFiles.flatMap((p) => ["--lora", p]),
    "-p",
    '"Once upon a time"',
  ].join(" ");
  return report;
}
