// Windowed evaluation against a teacher: student NLL and KL(teacher ‖ student) per scored token.
import { type LlamaWeights, type ProgressFn, createRunState, forward } from "@int21/model-llama";

/** What {@link evaluateAgainstTeacher} returns. */
export interface TeacherEvalResult {
  meanNll: number;
  perplexity: number;
  /** Mean over scored tokens of KL(p_teacher ‖ p_student), in nats. */
  meanKl: number;
  /** The teacher's own mean NLL on the same tokens. */
  teacherMeanNll: number;
  tokens: number;
  windows: number;
}

function logSoftmaxRow(logits: Float32Array, off: number, n: number, out: Float64Array): void {
  let max = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < n; i++) if (logits[off + i] > max) max = logits[off + i];
  let s = 0;
  for (let i = 0; i < n; i++) s += Math.exp(logits[off + i] - max);
  const lse = max + Math.log(s);
  for (let i = 0; i < n; i++) out[i] = logits[off + i] - lse;
}

/**
 * Scores `tokens` with `student` and `teacher` over the same windows as `evaluateNll` (windows of `ctx`
 * tokens every `stride`; each token after the first scored once):
 * ```
 * nll = −log p_s(t_i | t_<i)        kl = Σ_v p_t(v) · (log p_t(v) − log p_s(v))
 * ```
 * averaged over scored tokens. Both models must share the vocabulary.
 */
export function evaluateAgainstTeacher(
  student: LlamaWeights,
  teacher: LlamaWeights,
  tokens: ArrayLike<number>,
  opts: { ctx: number; stride: number; onProgress?: ProgressFn },
): TeacherEvalResult {
  const V = student.config.vocabSize;
  if (teacher.config.vocabSize !== V)
    throw new Error(`the teacher's vocabulary has ${teacher.config.vocabSize} tokens, the model's ${V}`);
  const { ctx, stride } = opts;
  const N = tokens.length;
  if (N < 2) throw new Error(`need at least 2 tokens, got ${N}`);
  const plan: [number, number, number][] = [];
  let total = 0;
  let prevEnd = 0;
  for (let begin = 0; ; begin += stride) {
    const end = Math.min(begin + ctx, N);
    const from = Math.max(prevEnd, begin + 1);
    if (end > from) {
      plan.push([begin, end, from]);
      total += end - from;
    }
    prevEnd = end;
    if (end === N) break;
  }
  const ss = createRunState(student.config, { maxRows: ctx });
  const ts = createRunState(teacher.config, { maxRows: ctx });
  const lp = new Float64Array(V);
  const lq = new Float64Array(V);
  let nll = 0;
  let tnll = 0;
  let kl = 0;
  let count = 0;
  for (const [begin, end, from] of plan) {
    const win = Array.from({ length: end - begin }, (_, i) => tokens[begin + i]);
    const sl = forward(student, ss, win, 0, "all");
    const tl = forward(teacher, ts, win, 0, "all");
    for (let i = from; i < end; i++) {
      const row = (i - 1 - begin) * V;
      logSoftmaxRow(sl, row, V, lq);
      logSoftmaxRow(tl, row, V, lp);
      const t = tokens[i];
      nll -= lq[t];
      tnll -= lp[t];
      let k = 0;
      for (let v = 0; v < V; v++) k += Math.exp(lp[v]) * (lp[v] - lq[v]);
      kl += k;
      count++;
    }
    opts.onProgress?.(count, total);
  }
  return {
    meanNll: nll / count,
    perplexity: Math.exp(nll / count),
    meanKl: kl / count,
    teacherMeanNll: tnll / count,
    tokens: count,
    windows: plan.length,
  };
}
