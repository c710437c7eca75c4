// Held-out evaluation of a student against its teacher: mean NLL / perplexity on real stories and the
// mean KL(teacher ‖ student) per token, with the teacher's log-probabilities computed once.
import { logSumExpRows } from "@int21/autograd";
import { createRunState, forward, type LlamaWeights, type Tokenizer } from "@int21/model-llama";

/** Options of {@link storyTokens}. */
export interface StoryTokensOptions {
  /** Stories `[from, to)` of the split text. Default all. */
  from?: number;
  to?: number;
  /** Each story is cut to its first `ctx` tokens, BOS included. */
  ctx: number;
  /** Default `<|endoftext|>`. */
  separator?: string;
}

/**
 * The stories of `text` as token rows, as model-llama's `evaluateStories` reads them: split on the
 * separator, trimmed, empty ones dropped, each `[BOS] + encode(story)` cut to `ctx` tokens.
 */
export function storyTokens(text: string, tokenizer: Tokenizer, opts: StoryTokensOptions): number[][] {
  const stories = text
    .split(opts.separator ?? "<|endoftext|>")
    .map((s) => s.trim())
    .filter((s) => s.length > 0)
    .slice(opts.from ?? 0, opts.to);
  return stories
    .map((s) => tokenizer.encode(s, { bos: true }).slice(0, opts.ctx))
    .filter((t) => t.length >= 2);
}

/** The teacher's side of an evaluation: the stories and the teacher's log-probabilities on them. */
export interface TeacherReference {
  stories: readonly (readonly number[])[];
  /** Per story, `[(n − 1) × V]` log-probabilities of the next token at positions `0 … n − 2`. */
  logprobs: Float32Array[];
  vocabSize: number;
  /** The teacher's own mean NLL over the scored tokens. */
  meanNll: number;
  tokens: number;
}

function logSoftmaxRows(logits: Float32Array, rows: number, V: number, out: Float32Array): void {
  const lse = new Float64Array(rows);
  logSumExpRows(logits, 0, rows, V, lse);
  for (let r = 0; r < rows; r++) {
    const o = r * V;
    for (let j = 0; j < V; j++) out[o + j] = logits[o + j] - lse[r];
  }
}

function runStory(weights: LlamaWeights, story: readonly number[], maxRows: number): Float32Array {
  const state = createRunState(weights.config, { maxRows });
  const n = story.length - 1;
  const V = weights.config.vocabSize;
  const logits = forward(weights, state, story.slice(0, n), 0, "all");
  const lp = new Float32Array(n * V);
  logSoftmaxRows(logits, n, V, lp);
  return lp;
}

function maxLen(stories: readonly (readonly number[])[], seqLen: number): number {
  let m = 1;
  for (const s of stories) {
    if (s.length > seqLen)
      throw new Error(`lrec: evaluate: a story has ${s.length} tokens, more than seqLen ${seqLen}`);
    m = Math.max(m, s.length - 1);
  }
  return m;
}

/** Runs the teacher once over `stories` (rows of ≥ 2 tokens, BOS first) and keeps its log-probabilities. */
export function teacherReference(
  teacher: LlamaWeights,
  stories: readonly (readonly number[])[],
): TeacherReference {
  const V = teacher.config.vocabSize;
  const rows = maxLen(stories, teacher.config.seqLen);
  let nll = 0;
  let tokens = 0;
  const logprobs = stories.map((s) => {
    const lp = runStory(teacher, s, rows);
    for (let t = 0; t + 1 < s.length; t++) nll -= lp[t * V + s[t + 1]];
    tokens += s.length - 1;
    return lp;
  });
  return { stories, logprobs, vocabSize: V, meanNll: nll / tokens, tokens };
}

/** Held-out figures of a student. */
export interface StudentEval {
  /** Mean next-token NLL (nats) over every token after BOS of every story. */
  meanNll: number;
  perplexity: number;
  /** Mean KL(teacher ‖ student) over the same positions (full vocabulary). */
  meanKl: number;
  tokens: number;
}

/** Evaluates `student` on the reference's stories: NLL, perplexity and KL to the teacher per token. */
export function evaluateStudent(ref: TeacherReference, student: LlamaWeights): StudentEval {
  const V = ref.vocabSize;
  if (student.config.vocabSize !== V)
    throw new Error(`lrec: evaluateStudent: student vocabulary ${student.config.vocabSize} ≠ teacher's ${V}`);
  const rows = maxLen(ref.stories, student.config.seqLen);
  let nll = 0;
  let kl = 0;
  let tokens = 0;
  ref.stories.forEach((s, i) => {
    const lq = runStory(student, s, rows);
    const lp = ref.logprobs[i];
    for (let t = 0; t + 1 < s.length; t++) {
      nll -= lq[t * V + s[t + 1]];
      let k = 0;
      for (let j = 0; j < V; j++) {
        const a = lp[t * V + j];
        k += Math.exp(a) * (a - lq[t * V + j]);
      }
      kl += k;
    }
    tokens += s.length - 1;
  });
  const meanNll = nll / tokens;
  return { meanNll, perplexity: Math.exp(meanNll), meanKl: kl / tokens, tokens };
}
