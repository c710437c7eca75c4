// The LREC loss: KL(teacher ‖ student) over the vocabulary at every position plus λ · next-token
// cross-entropy, with explicit reductions; and the top-k (+ residual bucket) KL used with cached teachers.
import {
  add,
  crossEntropy,
  defineOp,
  klDiv,
  logSumExpRows,
  type OpDef,
  scale,
  type Tensor,
  tensor,
} from "@int21/autograd";

/** How per-position losses are combined: `sum` over positions or `mean` over them. */
export type LossReduction = "sum" | "mean";

/**
 * A teacher distribution kept as its top-k entries per position (what {@link TeacherCache} stores).
 * `logprobs[r·k + j]` is the teacher's full-vocabulary log-probability of token `indices[r·k + j]` at row
 * `r` (so `Σ_j exp(logprobs) ≤ 1`), and `residual[r]` is the teacher mass outside the top k
 * (`1 − Σ_j exp(logprobs[r·k + j])`, computed in float64 from all V logits, ≥ 0).
 */
export interface TopKLogits {
  readonly rows: number;
  readonly k: number;
  /** Vocabulary size V. */
  readonly vocabSize: number;
  readonly logprobs: Float32Array;
  readonly indices: Int32Array;
  readonly residual: Float32Array;
}

/**
 * The top-k of each row of `logits` `[rows × V]` as a {@link TopKLogits} (log-probabilities under the
 * full softmax, residual mass in float64). Ties keep the lower token id first.
 */
export function topKFromLogits(logits: Float32Array, rows: number, vocabSize: number, k: number): TopKLogits {
  const V = vocabSize;
  if (!Number.isSafeInteger(k) || k < 1 || k > V)
    throw new Error(`lrec: topKFromLogits: k must be an integer in [1, ${V}], got ${k}`);
  if (logits.length < rows * V)
    throw new Error(
      `lrec: topKFromLogits: logits hold ${logits.length} values, need rows × V = ${rows}×${V}`,
    );
  const logprobs = new Float32Array(rows * k);
  const indices = new Int32Array(rows * k);
  const residual = new Float32Array(rows);
  const order = new Int32Array(V);
  const lses = new Float64Array(rows);
  logSumExpRows(logits, 0, rows, V, lses);
  for (let r = 0; r < rows; r++) {
    const o = r * V;
    const lse = lses[r];
    if (!Number.isFinite(lse)) throw new Error(`lrec: topKFromLogits: row ${r} has non-finite logits`);
    for (let j = 0; j < V; j++) order[j] = j;
    const sorted = Array.from(order).sort((a, b) => logits[o + b] - logits[o + a] || a - b);
    let rest = 0;
    for (let j = k; j < V; j++) rest += Math.exp(logits[o + sorted[j]] - lse);
    for (let j = 0; j < k; j++) {
      indices[r * k + j] = sorted[j];
      logprobs[r * k + j] = logits[o + sorted[j]] - lse;
    }
    residual[r] = rest;
  }
  return { rows, k, vocabSize: V, logprobs, indices, residual };
}

interface TopKPlan {
  t: TopKLogits;
  factor: number;
}

const topKKlOp: OpDef<TopKPlan> = {
  name: "topKKl",
  forward(ctx, [student], { t, factor }) {
    const { rows, k, vocabSize: V } = t;
    const s = student.values();
    const lse = new Float32Array(rows);
    const lseRest = new Float32Array(rows);
    const inTop = new Uint8Array(V);
    const lse64 = new Float64Array(rows);
    logSumExpRows(s, 0, rows, V, lse64);
    let kl = 0;
    for (let r = 0; r < rows; r++) {
      const o = r * V;
      const l = lse64[r];
      lse[r] = l;
      inTop.fill(0);
      let row = 0;
      for (let j = 0; j < k; j++) {
        const v = t.indices[r * k + j];
        inTop[v] = 1;
        const lp = t.logprobs[r * k + j];
        row += Math.exp(lp) * (lp - (s[o + v] - l));
      }
      // residual bucket: teacher mass outside the top k against the student's mass there
      let mr = Number.NEGATIVE_INFINITY;
      for (let j = 0; j < V; j++) if (!inTop[j] && s[o + j] > mr) mr = s[o + j];
      let zr = 0;
      if (mr > Number.NEGATIVE_INFINITY)
        for (let j = 0; j < V; j++) if (!inTop[j]) zr += Math.exp(s[o + j] - mr);
      lseRest[r] = zr > 0 ? mr + Math.log(zr) : Number.NEGATIVE_INFINITY;
      const res = t.residual[r];
      if (res > 0 && zr > 0) row += res * (Math.log(res) - (lseRest[r] - l));
      kl += row;
    }
    ctx.save(student);
    ctx.saveBuffer(lse, [rows]);
    ctx.saveBuffer(lseRest, [rows]);
    return tensor(new Float32Array([kl * factor]), []);
  },
  backward(ctx, gy, [gs], { t, factor }) {
    if (!gs) return;
    const { rows, k, vocabSize: V } = t;
    const [student, lseT, lseRestT] = ctx.saved;
    const s = student.values();
    const lse = lseT.data;
    const lseRest = lseRestT.data;
    const g = gy.data[gy.offset] * factor;
    const d = gs.data;
    const inTop = new Uint8Array(V);
    for (let r = 0; r < rows; r++) {
      const o = r * V;
      inTop.fill(0);
      for (let j = 0; j < k; j++) inTop[t.indices[r * k + j]] = 1;
      const res = t.residual[r];
      // d/ds_j = q_j − p̃_j: p̃_j = p_j inside the top k, res · q_j / q_rest outside
      for (let j = 0; j < V; j++) {
        const q = Math.exp(s[o + j] - lse[r]);
        const pt = inTop[j] ? 0 : res > 0 ? res * Math.exp(s[o + j] - lseRest[r]) : 0;
        d[o + j] += g * (q - pt);
      }
      for (let j = 0; j < k; j++) d[o + t.indices[r * k + j]] -= g * Math.exp(t.logprobs[r * k + j]);
    }
  },
};
const applyTopKKl = defineOp(topKKlOp);

/**
 * KL between a top-k teacher and the student logits `[..., V]` (rows = positions), per row
 * ```
 * KL̃_r = Σ_{i∈top-k} p_i (log p_i − log q_i) + ρ (log ρ − log q_rest)
 * ρ = 1 − Σ_{i∈top-k} p_i (teacher residual),   q_rest = Σ_{j∉top-k} q_j (student mass outside)
 * ```
 * the exact KL between the two distributions coarsened to {top-k tokens, "everything else"}. By the
 * data-processing inequality `0 ≤ KL̃_r ≤ KL_r`; it equals `KL_r` when the teacher's tail is
 * proportional to the student's. Gradient per row: `q − p̃` with `p̃ = p` on the top k and
 * `ρ · q_j / q_rest` outside (the residual spread in the student's own proportions). Reduced by
 * `sum` over rows or `mean` (default).
 */
export function topKKl(teacher: TopKLogits, student: Tensor, reduction: LossReduction = "mean"): Tensor {
  const V = student.shape[student.ndim - 1];
  const rows = student.ndim === 0 || V === 0 ? 0 : student.size / V;
  if (V !== teacher.vocabSize || rows !== teacher.rows) {
    throw new Error(
      `lrec: topKKl: student logits [${student.shape}] (${rows} rows × V ${V}) do not match the teacher's ${teacher.rows} rows × V ${teacher.vocabSize}`,
    );
  }
  const factor = reduction === "sum" ? 1 : rows === 0 ? 0 : 1 / rows;
  return applyTopKKl([student], { t: teacher, factor });
}

/** Weights and reductions of {@link lrecLoss}. */
export interface LrecLossOptions {
  /** Weight of the KL term. Default 1. */
  klWeight?: number;
  /** λ, the weight of the cross-entropy term. Default 0 (pure distillation). */
  ceWeight?: number;
  /** `sum` (default, as the reference) or `mean` of the per-position KL over all N positions. */
  klReduction?: LossReduction;
  /** `mean` (default, as the reference) or `sum` of the per-token CE over the M real targets. */
  ceReduction?: LossReduction;
  /** Targets equal to this get no CE (their positions still get KL). Default -100. */
  ignoreIndex?: number;
}

/** The total loss and its two terms (before weighting), as scalar tensors. */
export interface LrecLoss {
  loss: Tensor;
  kl: Tensor;
  ce: Tensor;
}

/**
 * The LREC objective for student logits `[..., V]` (N rows = positions) and next-token `targets` (one
 * per row; M of them real, i.e. not `ignoreIndex`):
 * ```
 * loss = klWeight · R_kl(KL_t) + λ · R_ce(CE_t)
 * KL_t = Σ_v p_t(v) (log p_t(v) − log q_t(v))      (teacher p, student q; log-softmax on both sides)
 * CE_t = −log q_t(target_t)
 * R = sum: Σ_t ·      R = mean: (1/N) Σ_t KL_t,  (1/M) Σ_t CE_t
 * ```
 * So with the reference's `klReduction: "sum"`, `ceReduction: "mean"`, each position carries
 * KL weight `klWeight` and CE weight `λ / M`: with 512 positions per batch and λ = 120 (INT2), CE
 * counts about 0.23× a KL nat. The teacher is either full logits (same shape as the student's) or a
 * {@link TopKLogits} record (then KL is {@link topKKl}'s coarsened KL).
 */
export function lrecLoss(
  teacher: Tensor | TopKLogits,
  student: Tensor,
  targets: ArrayLike<number>,
  opts: LrecLossOptions = {},
): LrecLoss {
  const klWeight = opts.klWeight ?? 1;
  const ceWeight = opts.ceWeight ?? 0;
  for (const [n, v] of [
    ["klWeight", klWeight],
    ["ceWeight", ceWeight],
  ] as const) {
    if (!Number.isFinite(v) || v < 0)
      throw new Error(`lrec: lrecLoss: ${n} must be finite and ≥ 0, got ${v}`);
  }
  const klRed = opts.klReduction ?? "sum";
  const ceRed = opts.ceReduction ?? "mean";
  for (const [n, v] of [
    ["klReduction", klRed],
    ["ceReduction", ceRed],
  ] as const) {
    if (v !== "sum" && v !== "mean")
      throw new Error(`lrec: lrecLoss: ${n} must be "sum" or "mean", got "${v}"`);
  }
  const kl =
    "logprobs" in teacher ? topKKl(teacher, student, klRed) : klDiv(teacher, student, { reduction: klRed });
  const ce = crossEntropy(student, targets, { reduction: ceRed, ignoreIndex: opts.ignoreIndex ?? -100 });
  const loss = add(scale(kl, klWeight), scale(ce, ceWeight));
  return { loss, kl, ce };
}
