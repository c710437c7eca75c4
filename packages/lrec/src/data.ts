// Training data for LREC: random windows of a token corpus, or of text the teacher samples itself
// (data-free LREC). A data source is a pure function of the step, so a resumed run sees the same batches.
import { hashSeed, mulberry32 } from "@int21/lora";
import { type LlamaWeights, type Tokenizer, generate } from "@int21/model-llama";

/** One batch: `B` rows of `T` input tokens and their next-token targets (flat `[B·T]`). */
export interface LrecBatch {
  input: number[][];
  target: Int32Array;
}

/** A data source: the batch of step `step` (0-based). Must be a pure function of `step`. */
export type LrecData = (step: number) => LrecBatch;

/** Options of {@link windowData}. */
export interface WindowDataOptions {
  /** Rows per batch B. */
  batch: number;
  /** Tokens per row T. */
  seq: number;
  /** Default 0. */
  seed?: number;
}

function checkShape(who: string, o: WindowDataOptions): void {
  for (const k of ["batch", "seq"] as const) {
    if (!Number.isSafeInteger(o[k]) || o[k] < 1)
      throw new Error(`lrec: ${who}: ${k} must be a positive integer, got ${o[k]}`);
  }
}

/**
 * Random windows of `seq + 1` tokens from `tokens` (a corpus, e.g. training stories joined with BOS
 * between them): row `b` of step `s` starts at a uniform offset drawn from a generator seeded by
 * `(seed, s)`; `input` is the first `seq` tokens, `target` the next-token shift.
 */
export function windowData(tokens: ArrayLike<number>, opts: WindowDataOptions): LrecData {
  checkShape("windowData", opts);
  const { batch, seq } = opts;
  if (tokens.length < seq + 1)
    throw new Error(
      `lrec: windowData: ${tokens.length} tokens are fewer than one window of seq + 1 = ${seq + 1}`,
    );
  const ids = Int32Array.from(tokens);
  const span = ids.length - seq;
  return (step) => {
    const rnd = mulberry32(hashSeed(opts.seed ?? 0, `lrec-window-${step}`));
    const input: number[][] = [];
    const target = new Int32Array(batch * seq);
    for (let b = 0; b < batch; b++) {
      const s = Math.min(span - 1, Math.floor(rnd() * span));
      input.push(Array.from(ids.subarray(s, s + seq)));
      target.set(ids.subarray(s + 1, s + seq + 1), b * seq);
    }
    return { input, target };
  };
}

/** Options of {@link teacherSample}. */
export interface TeacherSampleOptions {
  /** Sampling temperature. Default 1 (the teacher's own distribution). */
  temperature?: number;
  /** Nucleus cut-off. Default 1 (no cut-off). */
  topP?: number;
  /** Called after each sequence. */
  onProgress?: (done: number, total: number) => void;
}

/**
 * Data-free LREC: `n` token sequences of exactly `seq + 1` tokens sampled from the teacher. Each
 * sequence starts with BOS; stories the teacher ends early (it emits BOS or EOS) are followed by a new
 * BOS and another sample, until the length is reached. Sample `i` of sequence `j` uses seed
 * `hashSeed(seed, "j/i")`. Feed them to {@link windowData} (joined) or train on them directly.
 */
export function teacherSample(
  teacher: LlamaWeights,
  tokenizer: Tokenizer,
  n: number,
  seq: number,
  seed: number,
  opts: TeacherSampleOptions = {},
): number[][] {
  if (!Number.isSafeInteger(n) || n < 1)
    throw new Error(`lrec: teacherSample: n must be a positive integer, got ${n}`);
  if (!Number.isSafeInteger(seq) || seq < 1 || seq + 1 > teacher.config.seqLen)
    throw new Error(
      `lrec: teacherSample: seq must be an integer in [1, seqLen − 1 = ${teacher.config.seqLen - 1}], got ${seq}`,
    );
  const out: number[][] = [];
  for (let j = 0; j < n; j++) {
    const row: number[] = [];
    for (let i = 0; row.length < seq + 1; i++) {
      const g = generate(teacher, tokenizer, {
        steps: Math.min(teacher.config.seqLen, seq + 1 - row.length + 1),
        temperature: opts.temperature ?? 1,
        topP: opts.topP ?? 1,
        seed: hashSeed(seed, `${j}/${i}`) || 1,
      });
      for (const t of g.tokens) if (row.length < seq + 1) row.push(t);
    }
    out.push(row);
    opts.onProgress?.(j + 1, n);
  }
  return out;
}
