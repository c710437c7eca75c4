// Training examples as token ids: plain text cut into windows, batching with padding, a held-out split,
// and a deterministic batch order (a pure function of seed and step, so a resumed run sees the same data).

/** What the datasets need from a tokenizer (model-llama's tokenizers fit). */
export interface TextEncoder {
  encode(text: string, opts?: { bos?: boolean; eos?: boolean }): number[];
}

/** The target id that is not trained on (cross-entropy's default ignore index). */
export const IGNORE_INDEX = -100;

/**
 * One training sequence: `input[t]` predicts `target[t]` (`target[t] = IGNORE_INDEX` is not trained on,
 * e.g. prompt tokens of an instruction when `trainOnInputs` is false).
 */
export interface Example {
  input: Int32Array;
  target: Int32Array;
}

/** Options of {@link textWindows}. */
export interface WindowOptions {
  /** Tokens per window (the model's context for training). */
  seqLen: number;
  /** Tokens between window starts. Default `seqLen` (no overlap). */
  stride?: number;
}

/**
 * Cuts a token stream into windows of `seqLen + 1` tokens: `input = ids[s … s+seqLen)`,
 * `target = ids[s+1 … s+seqLen]`, for `s = 0, stride, 2·stride, …` while a full window fits.
 */
export function textWindows(ids: ArrayLike<number>, opts: WindowOptions): Example[] {
  const { seqLen } = opts;
  const stride = opts.stride ?? seqLen;
  if (!Number.isSafeInteger(seqLen) || seqLen < 1)
    throw new Error(`lora: textWindows: seqLen must be a positive integer, got ${seqLen}`);
  if (!Number.isSafeInteger(stride) || stride < 1)
    throw new Error(`lora: textWindows: stride must be a positive integer, got ${stride}`);
  if (ids.length < seqLen + 1) {
    throw new Error(
      `lora: textWindows: ${ids.length} tokens are fewer than one window of seqLen + 1 = ${seqLen + 1}`,
    );
  }
  const all = Int32Array.from(ids);
  const out: Example[] = [];
  for (let s = 0; s + seqLen + 1 <= all.length; s += stride) {
    out.push({ input: all.slice(s, s + seqLen), target: all.slice(s + 1, s + seqLen + 1) });
  }
  return out;
}

/** Options of {@link textDataset}. */
export interface TextDatasetOptions extends WindowOptions {
  /** Split the text into documents on this separator (e.g. `<|endoftext|>`); each is encoded with BOS. */
  separator?: string;
  /** Prepend BOS to each document. Default true. */
  bos?: boolean;
}

/** Encodes a plain text (documents joined into one stream, each starting with BOS) and cuts it into windows. */
export function textDataset(text: string, tokenizer: TextEncoder, opts: TextDatasetOptions): Example[] {
  return textExamples(text, tokenizer, opts).examples;
}

/** {@link textExamples}' windows and what of the text they cover. */
export interface TextExamples {
  examples: Example[];
  /** Non-empty documents encoded. */
  documents: number;
  /** Tokens in the stream. */
  tokens: number;
  /** Tokens at the end of the stream that no window reaches (fewer than one window's worth). */
  unusedTokens: number;
}

/** {@link textDataset}, also counting the documents and tokens, and the tokens left out at the end. */
export function textExamples(text: string, tokenizer: TextEncoder, opts: TextDatasetOptions): TextExamples {
  const docs = opts.separator === undefined ? [text] : text.split(opts.separator);
  const ids: number[] = [];
  let documents = 0;
  for (const d of docs) {
    const t = d.trim();
    if (t.length === 0) continue;
    documents++;
    for (const id of tokenizer.encode(t, { bos: opts.bos ?? true })) ids.push(id);
  }
  const examples = textWindows(ids, opts);
  const stride = opts.stride ?? opts.seqLen;
  const covered = (examples.length - 1) * stride + opts.seqLen + 1;
  return { examples, documents, tokens: ids.length, unusedTokens: ids.length - covered };
}

/**
 * Splits examples into train and held-out sets: `heldOut` examples (a count, or a fraction in (0, 1)),
 * taken from a seeded shuffle so both sets cover the whole source.
 */
export function splitExamples(
  examples: readonly Example[],
  heldOut: number,
  seed = 0,
): { train: Example[]; heldOut: Example[] } {
  const n = heldOut > 0 && heldOut < 1 ? Math.max(1, Math.round(examples.length * heldOut)) : heldOut;
  if (!Number.isSafeInteger(n) || n < 1 || n >= examples.length) {
    throw new Error(
      `lora: splitExamples: heldOut ${heldOut} must leave at least one example on each side of ${examples.length}`,
    );
  }
  const order = permutation(examples.length, seed);
  const held = new Set(order.slice(0, n));
  return {
    train: examples.filter((_, i) => !held.has(i)),
    heldOut: examples.filter((_, i) => held.has(i)),
  };
}

/** A seeded Fisher–Yates permutation of `0 … n−1`. */
export function permutation(n: number, seed: number): number[] {
  let s = seed >>> 0;
  const rand = () => {
    s = (s + 0x6d2b79f5) | 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const p = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [p[i], p[j]] = [p[j], p[i]];
  }
  return p;
}

/** A padded batch: `B` rows of `T` tokens, row-major. */
export interface Batch {
  /** Rows. */
  batch: number;
  /** Tokens per row (the longest example; shorter ones are padded). */
  seqLen: number;
  /** `[B × T]` input ids (padding uses `padId`). */
  input: Int32Array;
  /** `[B × T]` target ids (`IGNORE_INDEX` on padding and untrained positions). */
  target: Int32Array;
  /** Number of trained targets (tokens that count toward the loss). */
  tokens: number;
  /** Number of real (unpadded) input tokens (what tokens/s counts). */
  inputTokens: number;
}

/** Pads examples to the longest one and stacks them. */
export function collate(examples: readonly Example[], padId = 0): Batch {
  if (examples.length === 0) throw new Error("lora: collate: empty batch");
  const T = Math.max(...examples.map((e) => e.input.length));
  const B = examples.length;
  const input = new Int32Array(B * T).fill(padId);
  const target = new Int32Array(B * T).fill(IGNORE_INDEX);
  let tokens = 0;
  let inputTokens = 0;
  examples.forEach((e, b) => {
    if (e.target.length !== e.input.length) {
      throw new Error(
        `lora: collate: example ${b} has ${e.input.length} inputs but ${e.target.length} targets`,
      );
    }
    input.set(e.input, b * T);
    inputTokens += e.input.length;
    target.set(e.target, b * T);
    for (const t of e.target) if (t !== IGNORE_INDEX) tokens++;
  });
  return { batch: B, seqLen: T, input, target, tokens, inputTokens };
}

/**
 * The examples of micro-batch `index` (0-based, counted over the whole run): epochs are seeded
 * permutations of the dataset laid end to end, and batch `i` takes positions `[i·B, (i+1)·B)`.
 * A pure function of (`n`, `batchSize`, `seed`, `index`): resuming at step s reads the same batches.
 */
export function batchIndices(n: number, batchSize: number, seed: number, index: number): number[] {
  if (n < 1) throw new Error("lora: batchIndices: the dataset is empty");
  const out: number[] = [];
  let cachedEpoch = -1;
  let perm: number[] = [];
  for (let p = index * batchSize; p < (index + 1) * batchSize; p++) {
    const epoch = Math.floor(p / n);
    if (epoch !== cachedEpoch) {
      perm = permutation(n, (seed + Math.imul(epoch, 0x9e3779b1)) >>> 0);
      cachedEpoch = epoch;
    }
    out.push(perm[p % n]);
  }
  return out;
}
