// The LREC adapter on a LLaMA model: module names, adding the adapter (zero or SVD start), calibration
// inputs per projection, and the effective bits per weight of a packed model with its adapters.
import { noGrad, tidy } from "@int21/autograd";
import { LLAMA_TARGETS, type LoRAConfig, LoRALinear, LoRAModel, selectTargets } from "@int21/lora";
import {
  LINEAR_NAMES,
  type LinearName,
  type LlamaWeights,
  linearParts,
  llamaModules,
  setLlamaModules,
  trainForward,
} from "@int21/model-llama";
import {
  type AdapterStorage,
  type CheckpointAdapters,
  dequantizeInt8Rows,
  quantizeInt8Rows,
} from "@int21/loaders";
import { type Backend, type Linear, referenceDequantize, roundToF16 } from "@int21/quant-kernels";
import { type CalibInputs, svdInit } from "./svd-init";

/** The reference's LREC targets: every projection of every block (q, k, v, o, gate, up, down): lora's `LLAMA_TARGETS`. */
export const LREC_TARGETS: readonly string[] = LLAMA_TARGETS;

/**
 * The block projections of `weights` under their Hugging Face / PEFT names (`model.layers.{i}.self_attn.q_proj` …):
 * model-llama's `llamaModules` without the classifier, which LREC never adapts.
 */
export function llamaModuleMap(weights: LlamaWeights): Map<string, Linear> {
  const m = llamaModules(weights);
  m.delete("lm_head");
  return m;
}

/** Puts the (possibly LoRA-wrapped) modules of `model` back into `weights`, in place. */
export function syncModules(weights: LlamaWeights, model: LoRAModel): void {
  setLlamaModules(weights, model.modules);
}

/** The LoRA state of `weights` (adapters already on it are picked up); modules are synced back on change. */
export function loraModelOf(weights: LlamaWeights): LoRAModel {
  return new LoRAModel(llamaModuleMap(weights));
}

function toModuleName(name: string): string {
  // "layers.3.wq" (trainForward's names) → "model.layers.3.self_attn.q_proj"
  const m = /^layers\.(\d+)\.(wq|wk|wv|wo|w1|w2|w3)$/.exec(name);
  if (!m) return name;
  return `model.layers.${m[1]}.${LINEAR_NAMES[m[2] as LinearName]}`;
}

/**
 * The inputs every block projection of `weights` sees on `windows` (token rows), by module name:
 * `x` `[Σ rows × K]`. Run on the float teacher to weight the SVD init by real activations.
 */
export function projectionInputs(
  weights: LlamaWeights,
  windows: readonly ArrayLike<number>[],
): Map<string, CalibInputs> {
  const parts = new Map<string, Float32Array[]>();
  noGrad(() =>
    tidy(() => {
      for (const w of windows) {
        trainForward(weights, [Array.from(w)], {
          checkpoint: false,
          linearOp: (_lin, x, name) => {
            const key = toModuleName(name);
            if (key === name) return undefined; // the classifier: not an LREC target
            const list = parts.get(key) ?? [];
            list.push(x.toFloat32Array());
            parts.set(key, list);
            return undefined;
          },
        });
      }
    }),
  );
  const out = new Map<string, CalibInputs>();
  for (const [k, list] of parts) {
    const len = list.reduce((s, a) => s + a.length, 0);
    const x = new Float32Array(len);
    let o = 0;
    for (const a of list) {
      x.set(a, o);
      o += a.length;
    }
    const lin = llamaModuleMap(weights).get(k);
    out.set(k, { x, rows: lin ? len / lin.inFeatures : 0 });
  }
  return out;
}

/** Options of {@link addLrecAdapter}. */
export interface LrecAdapterOptions {
  /** Rank. */
  r: number;
  /** α; the adapter adds (α / r)·B·A. Default `r` (scaling 1). */
  alpha?: number;
  /** Module suffixes (default {@link LREC_TARGETS}). */
  targets?: readonly string[];
  /**
   * Per-module ranks (PEFT `rank_pattern`, e.g. from {@link allocateRanks}); each such module's alpha
   * keeps the scaling α/r of the default rank.
   */
  rankPattern?: Readonly<Record<string, number>>;
  /** Adapter name. Default `lrec`. */
  name?: string;
  /** Seed of the Kaiming-uniform A (zero init) and of the SVD's random start. Default 0. */
  seed?: number;
  /** `zero` (LoRA's standard start: B = 0) or `svd` (truncated SVD of W − Ŵ; needs `teacher`). Default `zero`. */
  init?: "zero" | "svd";
  /** The float model whose weights W the SVD init corrects towards. */
  teacher?: LlamaWeights;
  /** Token windows run through the teacher to weight the SVD by activations (see {@link svdInit}). */
  calib?: readonly ArrayLike<number>[];
  /** SVD weighting with `calib`. Default `cholesky`. */
  weighting?: "cholesky" | "diagonal";
  /** Backend for the SVD's products. */
  backend?: Backend;
  /** Whether the optimizer trains it. Default true. */
  trainable?: boolean;
}

/** Per-module SVD-init errors (in the metric it minimises). */
export interface SvdInitReport {
  module: string;
  error: number;
  zeroError: number;
}

/**
 * Adds the LREC adapter to `student` (in place: its projections become `LoRALinear`s) and returns the
 * LoRA state and, for the SVD start, each module's error before and after.
 */
export function addLrecAdapter(
  student: LlamaWeights,
  opts: LrecAdapterOptions,
): { model: LoRAModel; init: SvdInitReport[] } {
  const model = loraModelOf(student);
  const config: LoRAConfig = {
    name: opts.name ?? "lrec",
    targetModules: opts.targets ?? LREC_TARGETS,
    r: opts.r,
    alpha: opts.alpha ?? opts.r,
    seed: opts.seed ?? 0,
    trainable: opts.trainable ?? true,
  };
  if (opts.rankPattern) {
    const ratio = (opts.alpha ?? opts.r) / opts.r;
    config.rankPattern = opts.rankPattern;
    config.alphaPattern = Object.fromEntries(
      Object.entries(opts.rankPattern).map(([k, r]) => [k, ratio * r]),
    );
  }
  const targets = selectTargets(model.modules.keys(), config);
  const report: SvdInitReport[] = [];
  let init: ((m: string) => { loraA: Float32Array; loraB: Float32Array }) | undefined;
  if ((opts.init ?? "zero") === "svd") {
    const teacher = opts.teacher;
    if (!teacher) throw new Error("lrec: addLrecAdapter: init 'svd' needs the float `teacher` weights");
    const tmods = llamaModuleMap(teacher);
    const calib = opts.calib && opts.calib.length > 0 ? projectionInputs(teacher, opts.calib) : undefined;
    init = (module) => {
      const t = targets.find((c) => c.module === module)!;
      const lin = model.modules.get(module)!;
      const base = lin instanceof LoRALinear ? lin.base : lin;
      const tl = tmods.get(module);
      if (!tl) throw new Error(`lrec: addLrecAdapter: the teacher has no module ${module}`);
      const tp = linearParts(tl, module);
      if (tp.kind !== "float") throw new Error(`lrec: addLrecAdapter: teacher module ${module} is not float`);
      const N = base.outFeatures;
      const K = base.inFeatures;
      const sp = linearParts(base, module);
      const What = sp.kind === "float" ? sp.weight : new Float32Array(N * K);
      if (sp.kind === "quant") referenceDequantize(sp.q, What);
      const c = calib?.get(module);
      const r = svdInit(tp.weight, What, N, K, {
        rank: t.r,
        scaling: t.alpha / t.r,
        seed: opts.seed ?? 0,
        ...(c ? { calib: c, weighting: opts.weighting ?? "cholesky" } : {}),
        ...(opts.backend ? { backend: opts.backend } : {}),
      });
      report.push({ module, error: r.error, zeroError: r.zeroError });
      return { loraA: r.loraA, loraB: r.loraB };
    };
  }
  model.attachAdapter(config, targets, init);
  syncModules(student, model);
  return { model, init: report };
}

/** Storage dtype of LoRA adapter values: what {@link effectiveBits} counts them at. */
export type AdapterDtype = "f32" | "f16" | "bf16" | "int8";

/**
 * Bytes of a rank-r adapter of an `[N × K]` projection stored in `dtype`: A `[r × K]` and B `[N × r]`
 * values at 4 / 2 / 2 / 1 bytes; int8 also stores an f16 scale per row of A and per row of B
 * (symmetric per-row absmax, LQER-style).
 */
export function adapterBytes(r: number, N: number, K: number, dtype: AdapterDtype): number {
  const values = r * (N + K);
  switch (dtype) {
    case "f32":
      return 4 * values;
    case "f16":
    case "bf16":
      return 2 * values;
    case "int8":
      return values + 2 * (r + N);
    default:
      throw new Error(`lrec: adapter dtype must be f32, f16, bf16 or int8, got ${String(dtype)}`);
  }
}

/**
 * Effective bits per weight of the block projections of `weights`: 8 · Σ bytes / Σ N·K, where the
 * bytes are the packed codes, scales, zeros (f16 or f32 as stored) and act-order indices of each base
 * layer, plus every LoRA adapter on it counted at `adapterDtype` (default `f32`, as held in memory;
 * pass the dtype it is saved in). A float32 model gives 32.
 */
export function effectiveBits(weights: LlamaWeights, opts: { adapterDtype?: AdapterDtype } = {}): number {
  const dtype = opts.adapterDtype ?? "f32";
  let bytes = 0;
  let n = 0;
  for (const L of weights.layers) {
    for (const k of Object.keys(LINEAR_NAMES) as LinearName[]) {
      const lin = L[k];
      if (lin instanceof LoRALinear) {
        bytes += lin.base.bytes();
        for (const a of lin.adapters) bytes += adapterBytes(a.r, a.outFeatures, a.inFeatures, dtype);
      } else bytes += lin.bytes();
      n += lin.inFeatures * lin.outFeatures;
    }
  }
  return (8 * bytes) / n;
}

/** Projection shapes `[N, K]` of one block of a LLaMA of the given sizes (q, k, v, o, gate, up, down). */
export function llamaBlockShapes(dim: number, hidden: number, kvDim: number): [number, number][] {
  return [
    [dim, dim],
    [kvDim, dim],
    [kvDim, dim],
    [dim, dim],
    [hidden, dim],
    [hidden, dim],
    [dim, hidden],
  ];
}

/** Named LLaMA shapes for projecting adapter cost: TinyLlama-1.1B and LLaMA-2-7B. */
export const LLAMA_SHAPES = {
  "1.1B": llamaBlockShapes(2048, 5632, 256),
  "7B": llamaBlockShapes(4096, 11008, 4096),
} as const;

/**
 * Bits per weight a rank-`r` adapter on all seven projections adds at a model shape (every block
 * is alike, so one block's ratio is the model's): 8 · Σ adapterBytes / Σ N·K.
 */
export function adapterBitsAt(
  shapes: readonly (readonly [number, number])[],
  r: number,
  dtype: AdapterDtype,
): number {
  let bytes = 0;
  let n = 0;
  for (const [N, K] of shapes) {
    bytes += adapterBytes(r, N, K, dtype);
    n += N * K;
  }
  return (8 * bytes) / n;
}

function bf16Round(x: number): number {
  const f = new Float32Array([x]);
  const u = new Uint32Array(f.buffer);
  if (!Number.isFinite(x)) return x;
  u[0] = ((u[0] + 0x7fff + ((u[0] >>> 16) & 1)) >>> 0) & 0xffff0000;
  return f[0];
}

/**
 * Rounds each row of `[rows × cols]` `m` to int8 with an f16 absmax scale per row, in place: the int21
 * checkpoint's `I8` adapter codec (model-llama's `quantizeInt8Rows`), so a saved adapter loads back to these values.
 */
function int8Rows(m: Float32Array, rows: number, cols: number, what: string): void {
  const { codes, scales } = quantizeInt8Rows(m, rows, cols, what);
  m.set(dequantizeInt8Rows(codes, scales, cols));
}

/** The int21 checkpoint storage of an adapter dtype (`f16` → `F16`, `int8` → `I8` with f16 row scales…). */
export function adapterStorage(dtype: AdapterDtype): AdapterStorage {
  switch (dtype) {
    case "f32":
      return "F32";
    case "f16":
      return "F16";
    case "bf16":
      return "BF16";
    case "int8":
      return "I8";
    default:
      throw new Error(`lrec: adapter dtype must be f32, f16, bf16 or int8, got ${String(dtype)}`);
  }
}

/**
 * `adapters` (checkpoint adapter tensors, e.g. the CLI's `checkpointAdaptersOf`) to be saved in `dtype`: the same
 * tensors with their checkpoint `storage` set, so the file holds what {@link effectiveBits} counts. Round the
 * adapter first ({@link roundAdapter}) and the checkpoint loads back exactly the values that were evaluated.
 */
export function storeAdaptersAs(adapters: CheckpointAdapters, dtype: AdapterDtype): CheckpointAdapters {
  const storage = adapterStorage(dtype);
  const tensors: CheckpointAdapters["tensors"] = {};
  for (const [k, t] of Object.entries(adapters.tensors)) {
    if (storage === "I8" && t.shape.length !== 2)
      throw new Error(`lrec: adapter tensor ${k} is [${t.shape.join("×")}]; int8 rows need a 2-D tensor`);
    tensors[k] = { ...t, storage };
  }
  return { ...adapters, tensors };
}

/**
 * Rounds the values of adapter `name` of `model` in place to what `dtype` stores, so that evaluating the
 * model gives what a reader of the saved adapter gets: `f16` / `bf16` round to nearest even; `int8` is
 * symmetric per row (each row of A `[r × K]` and of B `[N × r]` with an f16 scale absmax/127, as LQER
 * stores its factors); `f32` changes nothing. Returns the number of values rounded.
 */
export function roundAdapter(model: LoRAModel, name: string, dtype: AdapterDtype): number {
  let count = 0;
  for (const layer of model.layers().values()) {
    for (const a of layer.adapters) {
      if (a.name !== name) continue;
      count += a.loraA.length + a.loraB.length;
      if (dtype === "f32") continue;
      if (dtype === "int8") {
        int8Rows(a.loraA, a.r, a.inFeatures, `lrec: adapter ${name} lora_A`);
        int8Rows(a.loraB, a.outFeatures, a.r, `lrec: adapter ${name} lora_B`);
        continue;
      }
      const rnd = dtype === "f16" ? roundToF16 : dtype === "bf16" ? bf16Round : undefined;
      if (!rnd)
        throw new Error(`lrec: roundAdapter: dtype must be f32, f16, bf16 or int8, got ${String(dtype)}`);
      for (const m of [a.loraA, a.loraB]) for (let i = 0; i < m.length; i++) m[i] = rnd(m[i]);
    }
  }
  if (count === 0) throw new Error(`lrec: roundAdapter: the model has no adapter "${name}"`);
  return count;
}
