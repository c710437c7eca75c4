// Two ways to spend the adapter better before training: LoftQ's alternating quantize ↔ low-rank, and a
// rank per projection from how much of its (activation-weighted) quantization error each rank buys.
import { selectTargets } from "@int21/lora";
import { LINEAR_NAMES, type LinearName, type LlamaWeights, linearParts } from "@int21/model-llama";
import { type Backend, createFloatLinear, type Linear, referenceDequantize } from "@int21/quant-kernels";
import { LREC_TARGETS, llamaModuleMap, projectionInputs } from "./adapter";
import { type CalibInputs, svdInit } from "./svd-init";

function floatWeight(lin: Linear, module: string): Float32Array {
  const p = linearParts(lin, module);
  if (p.kind === "float") return p.weight;
  const w = new Float32Array(lin.outFeatures * lin.inFeatures);
  referenceDequantize(p.q, w);
  return w;
}

/** Options of {@link loftqQuantize}. */
export interface LoftqOptions {
  /** Quantizes a float model (the same quantizer and format the student uses, e.g. GPTQ INT2 g64). */
  quantize: (weights: LlamaWeights) => LlamaWeights;
  /** Adapter rank and alpha the low-rank part is computed for (those of the LREC adapter that follows). */
  r: number;
  alpha?: number;
  /** Alternations: quantize(W − L), L = best rank-r part of W − Q. Default 2 (1 = plain quantize + SVD). */
  iterations?: number;
  /** Token windows for the activation-weighted SVD (as `addLrecAdapter`'s `calib`). */
  calib?: readonly ArrayLike<number>[];
  weighting?: "cholesky" | "diagonal";
  targets?: readonly string[];
  seed?: number;
  backend?: Backend;
  /**
   * Called after each quantization with `Σ‖(W − Q_t − L_t)·L‖ / Σ‖(W − Q_1)·L‖` over the projections
   * (the weighted error left, relative to the plain quantization's error before any adapter).
   */
  onIteration?: (iteration: number, meanRelError: number) => void;
}

/**
 * LoftQ (Li et al. 2023): alternate `Q_t = quantize(W − L_{t−1})` and `L_t = [W − Q_t]_r` (the best
 * rank-r part, activation-weighted with `calib`), starting from `L_0 = 0`. Returns the last `Q_t`;
 * an SVD-initialised adapter on it (`addLrecAdapter(..., { init: "svd" })`) is then `L_t`. With a
 * calibrating quantizer (GPTQ) the quantizer sees the model with `W − L` as its weights.
 */
export function loftqQuantize(teacher: LlamaWeights, opts: LoftqOptions): LlamaWeights {
  const iterations = opts.iterations ?? 2;
  if (!Number.isSafeInteger(iterations) || iterations < 1)
    throw new Error(`lrec: loftqQuantize: iterations must be a positive integer, got ${iterations}`);
  const backend = opts.backend;
  const tmods = llamaModuleMap(teacher);
  const targets = selectTargets(tmods.keys(), {
    targetModules: opts.targets ?? LREC_TARGETS,
    r: opts.r,
    alpha: opts.alpha ?? opts.r,
  });
  const calib = opts.calib && opts.calib.length > 0 ? projectionInputs(teacher, opts.calib) : undefined;
  const W = new Map<string, Float32Array>();
  for (const t of targets) W.set(t.module, floatWeight(tmods.get(t.module)!, t.module));
  let student = opts.quantize(teacher);
  let first = 0;
  for (let it = 1; it < iterations + 1; it++) {
    const smods = llamaModuleMap(student);
    const shifted = new Map<string, Float32Array>();
    let left = 0;
    let zero = 0;
    for (const t of targets) {
      const lin = smods.get(t.module)!;
      const N = lin.outFeatures;
      const K = lin.inFeatures;
      const w = W.get(t.module)!;
      const c = calib?.get(t.module);
      const r = svdInit(w, floatWeight(lin, t.module), N, K, {
        rank: t.r,
        scaling: 1,
        seed: opts.seed ?? 0,
        ...(c ? { calib: c as CalibInputs, weighting: opts.weighting ?? "cholesky" } : {}),
        ...(backend ? { backend } : {}),
      });
      left += r.error;
      zero += r.zeroError;
      const out = new Float32Array(N * K);
      for (let n = 0; n < N; n++)
        for (let k = 0; k < K; k++) {
          let d = 0;
          for (let j = 0; j < t.r; j++) d += r.loraB[n * t.r + j] * r.loraA[j * K + k];
          out[n * K + k] = w[n * K + k] - d;
        }
      shifted.set(t.module, out);
    }
    if (it === 1) first = zero;
    opts.onIteration?.(it, left / Math.max(first, 1e-30));
    if (it === iterations) break;
    // the float model with W − L as its projections, quantized again
    const layers = teacher.layers.map((L, l) => {
      const copy = { ...L };
      for (const key of Object.keys(LINEAR_NAMES) as LinearName[]) {
        const w = shifted.get(`model.layers.${l}.${LINEAR_NAMES[key]}`);
        if (!w) continue;
        const lin = L[key];
        copy[key] = createFloatLinear({
          weight: w,
          outFeatures: lin.outFeatures,
          inFeatures: lin.inFeatures,
          backend: (lin as { backend?: Backend }).backend ?? (backend as Backend),
        });
      }
      return copy;
    });
    student = opts.quantize({ ...teacher, layers });
  }
  return student;
}

/** Options of {@link allocateRanks}. */
export interface AllocateRanksOptions {
  /** The average rank: the budget is Σ r·(N + K) adapter parameters, as a uniform rank r spends. */
  r: number;
  /** Smallest rank a projection gets. Default 1. */
  minRank?: number;
  /** Largest rank a projection gets. Default 4·r. */
  maxRank?: number;
  /** Token windows: the error is weighted by the inputs each projection sees (recommended). */
  calib?: readonly ArrayLike<number>[];
  weighting?: "cholesky" | "diagonal";
  targets?: readonly string[];
  seed?: number;
  backend?: Backend;
}

/**
 * A rank per projection under the parameter budget of a uniform rank `r`: each projection's
 * (activation-weighted) quantization error `E·L` has singular values σ₁ ≥ σ₂ ≥ …; rank-one components
 * are taken greedily by σ² per adapter parameter (σ_j² is what the j-th component removes from the
 * squared output error, at a cost of N + K parameters), from `minRank` each, while the budget lasts.
 * Returns `{ module: rank }` for `addLrecAdapter`'s / `runLrec`'s `rankPattern`.
 */
export function allocateRanks(
  teacher: LlamaWeights,
  student: LlamaWeights,
  opts: AllocateRanksOptions,
): Record<string, number> {
  const minRank = opts.minRank ?? 1;
  const maxRankOpt = opts.maxRank ?? 4 * opts.r;
  if (!(minRank >= 1 && minRank <= opts.r && maxRankOpt >= opts.r))
    throw new Error(
      `lrec: allocateRanks: need 1 ≤ minRank (${minRank}) ≤ r (${opts.r}) ≤ maxRank (${maxRankOpt})`,
    );
  const tmods = llamaModuleMap(teacher);
  const smods = llamaModuleMap(student);
  const targets = selectTargets(smods.keys(), { targetModules: opts.targets ?? LREC_TARGETS, r: opts.r });
  const calib = opts.calib && opts.calib.length > 0 ? projectionInputs(teacher, opts.calib) : undefined;
  const mods = targets.map((t) => {
    const s = smods.get(t.module)!;
    const tl = tmods.get(t.module);
    if (!tl) throw new Error(`lrec: allocateRanks: the teacher has no module ${t.module}`);
    const N = s.outFeatures;
    const K = s.inFeatures;
    const maxRank = Math.min(maxRankOpt, N, K);
    const c = calib?.get(t.module);
    const res = svdInit(floatWeight(tl, t.module), floatWeight(s, t.module), N, K, {
      rank: maxRank,
      scaling: 1,
      seed: opts.seed ?? 0,
      ...(c ? { calib: c, weighting: opts.weighting ?? "cholesky" } : {}),
      ...(opts.backend ? { backend: opts.backend } : {}),
    });
    // balanced factors: B's column j has squared norm σ_j
    const sigma: number[] = [];
    for (let j = 0; j < maxRank; j++) {
      let s2 = 0;
      for (let n = 0; n < N; n++) s2 += res.loraB[n * maxRank + j] ** 2;
      sigma.push(s2);
    }
    return { module: t.module, cost: N + K, sigma, rank: Math.min(minRank, maxRank), maxRank };
  });
  let budget = mods.reduce((a, m) => a + opts.r * m.cost - m.rank * m.cost, 0);
  for (;;) {
    let best = -1;
    let bestGain = 0;
    mods.forEach((m, i) => {
      if (m.rank >= m.maxRank || m.cost > budget) return;
      const gain = m.sigma[m.rank] ** 2 / m.cost;
      if (gain > bestGain) {
        bestGain = gain;
        best = i;
      }
    });
    if (best < 0) break;
    mods[best].rank++;
    budget -= mods[best].cost;
  }
  return Object.fromEntries(mods.map((m) => [m.module, m.rank]));
}
