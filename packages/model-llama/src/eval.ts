import { forward } from "./forward";
import { type RunState, createRunState } from "./run-state";
import type { Tokenizer } from "./tokenizer";
import type { LlamaWeights } from "./weights";

/** What an evaluation reports. */
export interface NllResult {
  /** Mean negative log-likelihood of the scored tokens, in nats. */
  meanNll: number;
  /** exp(meanNll). */
  perplexity: number;
  /** Number of scored (predicted) tokens. */
  tokens: number;
  /** Tokens pushed through the model per second (scored or context-only), wall clock. */
  tokensPerSec: number;
  /** Windows (or stories) evaluated. */
  windows: number;
  /** With {@link NllOptions.teacher}: mean over the scored tokens of KL(p_teacher ‖ p_model), in nats. */
  meanKl?: number;
  /** With {@link NllOptions.teacher}: the teacher's own mean NLL on the same tokens. */
  teacherMeanNll?: number;
}

/** Progress callback: scored tokens so far, of the total to score. */
export type ProgressFn = (done: number, total: number) => void;

/** Options of {@link evaluateNll}. */
export interface NllOptions {
  /** Window length in tokens (default and maximum: the model's seqLen). */
  ctx?: number;
  /** Start-to-start distance of windows (default ctx: non-overlapping windows). 1 ≤ stride ≤ ctx. */
  stride?: number;
  /** Encodes a text input; required when `input` is a string. */
  tokenizer?: Tokenizer;
  /**
   * Start an encoded text with BOS. Default: the tokenizer's own rule (`tokenizer.addBos`: Hugging Face
   * `add_bos_token` / post-processor, GGUF `tokenizer.ggml.add_bos_token`; llama2.c always), as `generate`
   * and the peers' perplexity tools do. Ignored for token input.
   */
  bos?: boolean;
  onProgress?: ProgressFn;
  /** Reused run state (its maxRows is the forward chunk height). */
  state?: RunState;
  /**
   * A reference model with the same vocabulary (the float model a packed one was quantized from): it
   * runs the same windows, and the result adds the mean `KL(p_teacher ‖ p_model)` and the teacher's
   * mean NLL over the same scored tokens.
   */
  teacher?: LlamaWeights;
}

/** Log-softmax of `logits[off..off+n)` into `out`, in float64. */
function logSoftmaxRow(logits: Float32Array, off: number, n: number, out: Float64Array): void {
  let max = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < n; i++) if (logits[off + i] > max) max = logits[off + i];
  let s = 0;
  for (let i = 0; i < n; i++) s += Math.exp(logits[off + i] - max);
  const lse = max + Math.log(s);
  for (let i = 0; i < n; i++) out[i] = logits[off + i] - lse;
}

/** The teacher of an evaluation and its running sums: `Σ KL(p_t ‖ p_s)` and the teacher's `Σ NLL`. */
interface TeacherScore {
  weights: LlamaWeights;
  state: RunState;
  lp: Float64Array;
  lq: Float64Array;
  kl: number;
  nll: number;
}

/** `−log softmax(logits)[target]` in float64 (log-sum-exp with the max subtracted). */
export function tokenNll(logits: Float32Array, offset: number, vocab: number, target: number): number {
  let max = Number.NEGATIVE_INFINITY;
  for (let v = 0; v < vocab; v++) if (logits[offset + v] > max) max = logits[offset + v];
  let sum = 0;
  for (let v = 0; v < vocab; v++) sum += Math.exp(logits[offset + v] - max);
  const nll = Math.log(sum) + max - logits[offset + target];
  if (!Number.isFinite(nll))
    throw new Error(`evaluate: non-finite logits (NLL of token ${target} is ${nll})`);
  return nll;
}

/**
 * Runs one sequence `tokens[begin..end)` from position 0 and adds the NLL of every target j with
 * `from ≤ j < end` (predicted from `tokens[begin..j)`) to `acc`. Forward chunks of `state.maxRows`.
 */
function scoreWindow(
  w: LlamaWeights,
  state: RunState,
  tokens: ArrayLike<number>,
  begin: number,
  end: number,
  from: number,
  acc: { sum: number; count: number },
  teacher?: TeacherScore,
): void {
  const V = w.config.vocabSize;
  const R = state.maxRows;
  const seq = Array.prototype.slice.call(tokens, begin, end) as number[];
  for (let p = 0; p < seq.length; p += R) {
    const chunk = seq.slice(p, p + R);
    // positions p..p+len-1 of the window predict tokens at window positions p+1..p+len
    const firstTarget = begin + p + 1;
    const lastTarget = begin + p + chunk.length; // exclusive bound is end
    const needed = lastTarget >= from && firstTarget < end;
    const lg = forward(w, state, chunk, p, needed ? "all" : "none");
    // the teacher runs every chunk too: later chunks attend to its cache
    const tl = teacher && forward(teacher.weights, teacher.state, chunk, p, needed ? "all" : "none");
    if (!needed) continue;
    for (let r = 0; r < chunk.length; r++) {
      const j = begin + p + r + 1;
      if (j < from || j >= end) continue;
      acc.sum += tokenNll(lg, r * V, V, tokens[j] as number);
      acc.count++;
      if (teacher && tl) {
        const { lp, lq } = teacher;
        logSoftmaxRow(lg, r * V, V, lq);
        logSoftmaxRow(tl, r * V, V, lp);
        teacher.nll -= lp[tokens[j] as number];
        let k = 0;
        for (let v = 0; v < V; v++) k += Math.exp(lp[v]) * (lp[v] - lq[v]);
        teacher.kl += k;
      }
    }
  }
}

/**
 * Mean next-token NLL and perplexity `exp(mean NLL)` of a token stream (or of a text, encoded by
 * `opts.tokenizer`, with BOS when the tokenizer adds one or `opts.bos` says so), with the sliding-window protocol of Hugging Face's perplexity guide:
 *
 * ```
 * for begin = 0, stride, 2·stride, …:         end = min(begin + ctx, N)
 *   run tokens[begin..end) from position 0
 *   score every target j in [max(prevEnd, begin + 1), end), predicted from tokens[begin..j)
 *   prevEnd = end;  stop once end = N
 * ```
 * With `stride = ctx` (default) windows do not overlap and the first token of each window is context
 * only (never scored). With `stride < ctx` only the new tokens of each window are scored, each with at
 * least `ctx − stride` tokens of context. Every token after the first is scored exactly once in
 * the strided case; in the non-overlapping case tokens `ctx, 2·ctx, …` are skipped.
 *
 * `input` may also be token rows (e.g. stories as `[BOS] + encode(story)`): each row then runs from
 * position 0 and every token after its first is scored (rows longer than `ctx` are an error).
 *
 * With `opts.teacher`, the teacher runs the same windows and the result adds, over the same scored tokens,
 * ```
 * meanKl = mean Σ_v p_t(v) · (log p_t(v) − log p_s(v))      teacherMeanNll = mean −log p_t(t_j)
 * ```
 */
export function evaluateNll(
  weights: LlamaWeights,
  input: ArrayLike<number> | string | readonly ArrayLike<number>[],
  opts: NllOptions & { teacher: LlamaWeights },
): NllResult & { meanKl: number; teacherMeanNll: number };
export function evaluateNll(
  weights: LlamaWeights,
  input: ArrayLike<number> | string | readonly ArrayLike<number>[],
  opts?: NllOptions,
): NllResult;
export function evaluateNll(
  weights: LlamaWeights,
  input: ArrayLike<number> | string | readonly ArrayLike<number>[],
  opts: NllOptions = {},
): NllResult {
  const c = weights.config;
  if (isRows(input)) return evaluateRows(weights, input, opts);
  let tokens: ArrayLike<number>;
  if (typeof input === "string") {
    if (!opts.tokenizer) throw new Error("evaluateNll: a text input needs opts.tokenizer");
    tokens = opts.tokenizer.encode(input, { bos: opts.bos ?? opts.tokenizer.addBos ?? true });
  } else tokens = input;
  const ctx = opts.ctx ?? c.seqLen;
  const stride = opts.stride ?? ctx;
  if (!Number.isSafeInteger(ctx) || ctx < 2 || ctx > c.seqLen)
    throw new Error(
      `evaluateNll: ctx must be an integer in [2, seqLen = ${c.seqLen}], got ${String(opts.ctx)}`,
    );
  if (!Number.isSafeInteger(stride) || stride < 1 || stride > ctx)
    throw new Error(
      `evaluateNll: stride must be an integer in [1, ctx = ${ctx}], got ${String(opts.stride)}`,
    );
  const N = tokens.length;
  if (N < 2) throw new Error(`evaluateNll: need at least 2 tokens, got ${N}`);
  for (let i = 0; i < N; i++) {
    const t = tokens[i];
    if (!Number.isInteger(t) || t < 0 || t >= c.vocabSize)
      throw new Error(`evaluateNll: token ${String(t)} at index ${i} is outside [0, ${c.vocabSize})`);
  }
  // count the targets first so progress has a total
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
  const state = opts.state ?? createRunState(c);
  const teacher = teacherScore(c, opts.teacher, ctx, state);
  const windows = plan.map(([begin, end, from]) => [tokens, begin, end, from] as const);
  return scoreWindows(weights, state, windows, total, opts.onProgress, teacher);
}

/** An array of token rows (not a flat token array). */
function isRows(
  input: ArrayLike<number> | string | readonly ArrayLike<number>[],
): input is readonly ArrayLike<number>[] {
  return Array.isArray(input) && input.length > 0 && typeof input[0] !== "number";
}

/** The teacher of an evaluation of windows of up to `ctx` tokens, checked against the model's config. */
function teacherScore(
  c: LlamaWeights["config"],
  t: LlamaWeights | undefined,
  ctx: number,
  state: RunState,
): TeacherScore | undefined {
  if (!t) return undefined;
  const tc = t.config;
  if (tc.vocabSize !== c.vocabSize)
    throw new Error(
      `evaluateNll: the teacher's vocabulary has ${tc.vocabSize} tokens, the model's ${c.vocabSize}`,
    );
  if (tc.seqLen < ctx)
    throw new Error(`evaluateNll: ctx ${ctx} is longer than the teacher's context (seqLen ${tc.seqLen})`);
  return {
    weights: t,
    state: createRunState(tc, { maxRows: state.maxRows }),
    lp: new Float64Array(c.vocabSize),
    lq: new Float64Array(c.vocabSize),
    kl: 0,
    nll: 0,
  };
}

/**
 * Rows (e.g. stories, `[BOS] + encode(story)`): each row runs from position 0 and every token after its
 * first is scored; a row of fewer than 2 tokens has nothing to score. A row longer than `ctx` (default
 * seqLen) is an error (cut it first). `stride` does not apply.
 */
function evaluateRows(
  weights: LlamaWeights,
  rows: readonly ArrayLike<number>[],
  opts: NllOptions,
): NllResult {
  const c = weights.config;
  const ctx = opts.ctx ?? c.seqLen;
  if (!Number.isSafeInteger(ctx) || ctx < 2 || ctx > c.seqLen)
    throw new Error(
      `evaluateNll: ctx must be an integer in [2, seqLen = ${c.seqLen}], got ${String(opts.ctx)}`,
    );
  if (opts.stride !== undefined)
    throw new Error("evaluateNll: stride applies to a token stream, not to rows");
  let total = 0;
  rows.forEach((row, i) => {
    if (row.length > ctx)
      throw new Error(`evaluateNll: row ${i} has ${row.length} tokens, more than ctx ${ctx} (cut it first)`);
    for (let j = 0; j < row.length; j++) {
      const t = row[j];
      if (!Number.isInteger(t) || t < 0 || t >= c.vocabSize)
        throw new Error(
          `evaluateNll: token ${String(t)} at row ${i}, index ${j} is outside [0, ${c.vocabSize})`,
        );
    }
    if (row.length >= 2) total += row.length - 1;
  });
  if (total === 0) throw new Error("evaluateNll: no row has 2 tokens or more: nothing to score");
  const state = opts.state ?? createRunState(c);
  const teacher = teacherScore(c, opts.teacher, ctx, state);
  const windows = rows.filter((r) => r.length >= 2).map((r) => [r, 0, r.length, 1] as const);
  return scoreWindows(weights, state, windows, total, opts.onProgress, teacher);
}

/**
 * Scores each window `[tokens, begin, end, from]` with {@link scoreWindow} in turn, reporting progress
 * after each, and returns the mean NLL over the scored tokens (and the teacher's KL and NLL means).
 */
function scoreWindows(
  weights: LlamaWeights,
  state: RunState,
  windows: readonly (readonly [ArrayLike<number>, number, number, number])[],
  total: number,
  onProgress?: ProgressFn,
  teacher?: TeacherScore,
): NllResult {
  const acc = { sum: 0, count: 0 };
  let pushed = 0;
  const t0 = performance.now();
  for (const [tokens, begin, end, from] of windows) {
    scoreWindow(weights, state, tokens, begin, end, from, acc, teacher);
    pushed += end - begin;
    onProgress?.(acc.count, total);
  }
  const secs = Math.max((performance.now() - t0) / 1000, 1e-9);
  const meanNll = acc.sum / acc.count;
  return {
    meanNll,
    perplexity: Math.exp(meanNll),
    tokens: acc.count,
    tokensPerSec: pushed / secs,
    windows: windows.length,
    ...(teacher ? { meanKl: teacher.kl / acc.count, teacherMeanNll: teacher.nll / acc.count } : {}),
  };
}

/** Options of {@link evaluateStories}. */
export interface StoriesOptions {
  /** Evaluate only the first `maxStories` stories (default all). */
  maxStories?: number;
  /** Each story is cut to its first `ctx` tokens, BOS included (default seqLen). */
  ctx?: number;
  /** Story separator (default `<|endoftext|>`). */
  separator?: string;
  /**
   * Start each story with BOS. Default: the tokenizer's own rule (`tokenizer.addBos`; llama2.c always).
   * Without BOS a story's first token is context only.
   */
  bos?: boolean;
  onProgress?: ProgressFn;
  state?: RunState;
}

/**
 * The per-story protocol behind the stories260K reference loss: the text is split on `separator`,
 * each piece trimmed (empty ones dropped); every story is encoded as `[BOS] + encode(story)` (with
 * llama2.c's dummy-prefix space; BOS only when the tokenizer adds one or `opts.bos` says so), cut to
 * `ctx` tokens, run from position 0, and every token after the first is scored. The result is the mean over all scored tokens of all stories (not a mean of means).
 */
export function evaluateStories(
  weights: LlamaWeights,
  tokenizer: Tokenizer,
  text: string,
  opts: StoriesOptions = {},
): NllResult {
  const c = weights.config;
  const ctx = opts.ctx ?? c.seqLen;
  if (!Number.isSafeInteger(ctx) || ctx < 2 || ctx > c.seqLen)
    throw new Error(
      `evaluateStories: ctx must be an integer in [2, seqLen = ${c.seqLen}], got ${String(opts.ctx)}`,
    );
  let stories = text
    .split(opts.separator ?? "<|endoftext|>")
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  if (opts.maxStories !== undefined) stories = stories.slice(0, opts.maxStories);
  if (stories.length === 0) throw new Error("evaluateStories: the text holds no stories");
  const bos = opts.bos ?? tokenizer.addBos ?? true;
  const encoded = stories.map((s) => tokenizer.encode(s, { bos }).slice(0, ctx));
  const total = encoded.reduce((a, t) => a + t.length - 1, 0);
  const state = opts.state ?? createRunState(c);
  const windows = encoded.filter((t) => t.length >= 2).map((t) => [t, 0, t.length, 1] as const);
  // every story counts as a window, also one too short to score
  return { ...scoreWindows(weights, state, windows, total, opts.onProgress), windows: encoded.length };
}

/** Options of {@link evaluateLlamaCppChunks}. */
export interface LlamaCppChunkOptions {
  /** Chunk length (llama-perplexity's `-c`). */
  ctx: number;
  /** The BOS id written over each chunk's first token (llama-perplexity does so when the vocabulary adds BOS); omit for none. */
  bosId?: number;
  onProgress?: ProgressFn;
  state?: RunState;
}

/**
 * Perplexity by llama.cpp's `llama-perplexity` protocol, so int21's number and llama.cpp's are the same
 * measurement: the stream is cut into `⌊N / ctx⌋` chunks of `ctx` tokens (the tail dropped); each chunk's
 * first token is replaced by BOS when `bosId` is given; each chunk runs from position 0 and only its second
 * half is scored: targets `chunk[j + 1]` for `j = ctx/2 … ctx − 2` (`ctx/2 − 1` tokens per chunk).
 */
export function evaluateLlamaCppChunks(
  weights: LlamaWeights,
  tokens: ArrayLike<number>,
  opts: LlamaCppChunkOptions,
): NllResult {
  const c = weights.config;
  const { ctx } = opts;
  if (!Number.isSafeInteger(ctx) || ctx < 4 || ctx > c.seqLen)
    throw new Error(
      `evaluateLlamaCppChunks: ctx must be an integer in [4, seqLen = ${c.seqLen}], got ${ctx}`,
    );
  const chunks = Math.floor(tokens.length / ctx);
  if (chunks < 1)
    throw new Error(`evaluateLlamaCppChunks: ${tokens.length} tokens do not fill one chunk of ${ctx}`);
  const state = opts.state ?? createRunState(c);
  const acc = { sum: 0, count: 0 };
  const first = Math.floor(ctx / 2);
  const total = chunks * (ctx - 1 - first);
  const t0 = performance.now();
  for (let i = 0; i < chunks; i++) {
    const chunk = Array.prototype.slice.call(tokens, i * ctx, (i + 1) * ctx) as number[];
    if (opts.bosId !== undefined) chunk[0] = opts.bosId;
    // score targets chunk[first + 1 … ctx − 1], i.e. window positions from first + 1
    scoreWindow(weights, state, chunk, 0, ctx, first + 1, acc);
    opts.onProgress?.(acc.count, total);
  }
  const secs = Math.max((performance.now() - t0) / 1000, 1e-9);
  const meanNll = acc.sum / acc.count;
  return {
    meanNll,
    perplexity: Math.exp(meanNll),
    tokens: acc.count,
    tokensPerSec: (chunks * ctx) / secs,
    windows: chunks,
  };
}
