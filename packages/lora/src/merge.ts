// Folding adapters into the base weight: exact for a float base, a re-quantization for a packed one.
import {
  createFloatLinear,
  createQuantLinear,
  createReferenceBackend,
  type FloatLinear,
  type Linear,
  type QuantLinear,
  type Quantizer,
  rtnQuantize,
} from "@int21/quant-kernels";
import { LoRALinear } from "./lora-linear";
import type { LoRAModel } from "./lora-model";

/** What a merge did to one layer, and the error it added. */
export interface MergeReport {
  /** Module name (model-level merges) or undefined. */
  module?: string;
  /** Adapters folded in, in order. */
  adapters: string[];
  /** True when the base was packed: the merged weight was quantized again, which adds error. */
  requantized: boolean;
  /** Format of the new packed weight (requantized merges). */
  format?: string;
  /** `max |Ŵ' − (W + ΔW)|` over the weight, Ŵ' the stored merged weight (f32 rounding for float bases). */
  maxAbsError: number;
  /** Root-mean-square of `Ŵ' − (W + ΔW)`. */
  rmsError: number;
  /** `rmsError / rms(W + ΔW)`. */
  relError: number;
  /** Root-mean-square of the merged delta `ΔW = Σ scaling·B·A` (compare with `rmsError`: at 2 bits the re-quantization noise can exceed the delta). */
  deltaRms: number;
}

/** Options of {@link mergeAdapters}. */
export interface MergeOptions {
  /** Adapters to fold in (default: every active one). */
  names?: readonly string[];
  /** Quantizer for a packed base (default: round-to-nearest in the base's format, keeping its act-order `gIdx`). */
  quantizer?: Quantizer;
}

const originals = new WeakMap<LoRALinear, Linear>();

function isFloat(l: Linear): l is FloatLinear {
  const w = (l as Partial<FloatLinear>).weight;
  return (
    w instanceof Float32Array &&
    w.length === l.outFeatures * l.inFeatures &&
    (l as Partial<FloatLinear>).backend !== undefined
  );
}

function isQuant(l: Linear): l is QuantLinear {
  const q = (l as Partial<QuantLinear>).q;
  return q !== undefined && q.qweight !== undefined && (l as Partial<QuantLinear>).backend !== undefined;
}

/**
 * Folds adapters into the base of `layer`: `W' = W + Σ scaling·B·A`.
 * - float base (quant-kernels FloatLinear): a new FloatLinear holds `W'` (exact up to float32 rounding).
 * - packed base (QuantLinear): `W` is dequantized, the delta added and the sum **quantized again** (the
 *   returned report says so, with the error the re-quantization adds).
 * The merged adapters are then skipped by forward; the original base is kept so {@link unmergeAdapters}
 * restores it exactly (the merged layer holds both bases until then).
 */
export function mergeAdapters(layer: LoRALinear, opts: MergeOptions = {}): MergeReport {
  const chosen = opts.names
    ? opts.names.map((n) => layer.adapter(n))
    : layer.adapters.filter((a) => a.active);
  for (const a of chosen) {
    if (a.merged) throw new Error(`lora: mergeAdapters: adapter "${a.name}" is already merged`);
    if (!a.enabled) throw new Error(`lora: mergeAdapters: adapter "${a.name}" is disabled`);
  }
  const base = layer.base;
  const N = layer.outFeatures;
  const K = layer.inFeatures;
  let W: Float32Array;
  if (isFloat(base)) W = base.weight.slice();
  else if (isQuant(base)) {
    W = new Float32Array(N * K);
    const be = base.backend.supports("dequantize", base.q.format) ? base.backend : createReferenceBackend();
    be.dequantize(base.q, W);
  } else {
    throw new Error(
      "lora: mergeAdapters: the base is neither a quant-kernels FloatLinear (weight) nor a QuantLinear (q)",
    );
  }
  // exact target in float64
  const target = Float64Array.from(W);
  const delta = new Float64Array(N * K);
  for (const a of chosen) {
    const { r, loraA: A, loraB: B, scaling } = a;
    for (let n = 0; n < N; n++) {
      for (let j = 0; j < r; j++) {
        const b = scaling * B[n * r + j];
        if (b === 0) continue;
        for (let k = 0; k < K; k++) delta[n * K + k] += b * A[j * K + k];
      }
    }
  }
  for (let i = 0; i < target.length; i++) {
    target[i] += delta[i];
    W[i] = target[i];
  }
  let merged: Linear;
  let stored: Float32Array;
  let format: string | undefined;
  if (isFloat(base)) {
    merged = createFloatLinear({
      weight: W,
      outFeatures: N,
      inFeatures: K,
      bias: base.bias,
      backend: base.backend,
    });
    stored = W;
  } else {
    const qb = base as QuantLinear;
    const q = opts.quantizer
      ? opts.quantizer.quantize(W, N, K, qb.q.format)
      : rtnQuantize(W, N, K, qb.q.format, qb.q.gIdx ? { gIdx: qb.q.gIdx } : {});
    merged = createQuantLinear({ q, bias: qb.bias, backend: qb.backend });
    stored = new Float32Array(N * K);
    createReferenceBackend().dequantize(q, stored);
    format = q.format.name;
  }
  let max = 0;
  let se = 0;
  let st = 0;
  let sd = 0;
  for (let i = 0; i < target.length; i++) {
    const e = Math.abs(stored[i] - target[i]);
    if (e > max) max = e;
    se += e * e;
    st += target[i] * target[i];
    sd += delta[i] * delta[i];
  }
  const n = target.length;
  if (!originals.has(layer)) originals.set(layer, base);
  layer.base = merged;
  for (const a of chosen) a.merged = true;
  const rms = Math.sqrt(se / n);
  return {
    adapters: chosen.map((a) => a.name),
    requantized: format !== undefined,
    ...(format ? { format } : {}),
    maxAbsError: max,
    rmsError: rms,
    relError: st > 0 ? rms / Math.sqrt(st / n) : 0,
    deltaRms: Math.sqrt(sd / n),
  };
}

/** Undoes every merge on `layer`: the original base comes back (bit for bit) and the adapters apply again. */
export function unmergeAdapters(layer: LoRALinear): void {
  const orig = originals.get(layer);
  if (orig === undefined) return;
  layer.base = orig;
  originals.delete(layer);
  for (const a of layer.adapters) a.merged = false;
}

/**
 * Merges the active adapters of `layer` and returns the merged base alone (PEFT `merge_and_unload`):
 * a plain FloatLinear / QuantLinear without adapters, and the merge report. `layer` is left unchanged.
 */
export function mergeAndUnload(
  layer: LoRALinear,
  opts: MergeOptions = {},
): { linear: Linear; report: MergeReport } {
  const report = mergeAdapters(layer, opts);
  const linear = layer.base;
  unmergeAdapters(layer);
  return { linear, report };
}

/** Merges adapters into every LoRA layer of `model`; one report per layer, named by module. */
export function mergeModel(model: LoRAModel, opts: MergeOptions = {}): MergeReport[] {
  const out: MergeReport[] = [];
  for (const [module, layer] of model.layers()) {
    const names = opts.names?.filter((n) => layer.adapters.some((a) => a.name === n));
    if (names !== undefined && names.length === 0) continue;
    if (names === undefined && !layer.adapters.some((a) => a.active)) continue;
    out.push({ module, ...mergeAdapters(layer, { ...opts, ...(names ? { names } : {}) }) });
  }
  return out;
}

/** Undoes {@link mergeModel} on every layer. */
export function unmergeModel(model: LoRAModel): void {
  for (const layer of model.layers().values()) unmergeAdapters(layer);
}

/** Whether `l` is a LoRA-wrapped layer. */
export function isLoRALinear(l: Linear): l is LoRALinear {
  return l instanceof LoRALinear;
}

/**
 * Merges the active adapters of every LoRA layer and replaces the layer in `model.modules` by its merged
 * base (PEFT `merge_and_unload` for a whole model). Returns one report per layer.
 */
export function mergeAndUnloadModel(model: LoRAModel, opts: MergeOptions = {}): MergeReport[] {
  const out: MergeReport[] = [];
  for (const [module, layer] of model.layers()) {
    const { linear, report } = mergeAndUnload(layer, opts);
    model.modules.set(module, linear);
    out.push({ module, ...report });
  }
  return out;
}
