/**
 * LLaMA hyper-parameters, in llama2.c's names. One record for every source (llama2.c `.bin`,
 * Hugging Face `config.json`, GGUF metadata, int21 checkpoints).
 */
export interface LlamaConfig {
  /** Model width (hidden size). */
  dim: number;
  /** FFN inner width (intermediate size). */
  hiddenDim: number;
  nLayers: number;
  /** Query heads. */
  nHeads: number;
  /** Key/value heads (grouped-query attention when < nHeads). */
  nKvHeads: number;
  vocabSize: number;
  /** Maximum context length. */
  seqLen: number;
  /** RoPE base, 10000 for LLaMA 1/2 and llama2.c. */
  ropeTheta: number;
  /** RMSNorm epsilon, 1e-5 for llama2.c and LLaMA 2. */
  normEps: number;
  /** True when the classifier is the token-embedding matrix (llama2.c positive vocab, HF tie_word_embeddings). */
  sharedClassifier: boolean;
}

/** Head size = dim / nHeads. */
export function headSize(c: LlamaConfig): number {
  return c.dim / c.nHeads;
}

/** Width of K and V projections = nKvHeads * headSize. */
export function kvDim(c: LlamaConfig): number {
  return (c.dim * c.nKvHeads) / c.nHeads;
}

/**
 * Throws an Error naming the offending field when the config is not a valid LLaMA shape
 * (`source` names the file or object it came from).
 */
export function validateConfig(c: LlamaConfig, source = "config"): LlamaConfig {
  const ints: (keyof LlamaConfig)[] = [
    "dim",
    "hiddenDim",
    "nLayers",
    "nHeads",
    "nKvHeads",
    "vocabSize",
    "seqLen",
  ];
  for (const k of ints) {
    const v = c[k] as number;
    if (!Number.isSafeInteger(v) || v <= 0)
      throw new Error(`${source}: ${k} must be a positive integer, got ${String(v)}`);
  }
  if (c.dim % c.nHeads !== 0)
    throw new Error(`${source}: dim ${c.dim} is not divisible by nHeads ${c.nHeads}`);
  if (c.nHeads % c.nKvHeads !== 0)
    throw new Error(`${source}: nHeads ${c.nHeads} is not a multiple of nKvHeads ${c.nKvHeads}`);
  if ((c.dim / c.nHeads) % 2 !== 0)
    throw new Error(`${source}: head size ${c.dim / c.nHeads} must be even for RoPE`);
  if (!(c.ropeTheta > 0)) throw new Error(`${source}: ropeTheta must be > 0, got ${String(c.ropeTheta)}`);
  if (!(c.normEps > 0)) throw new Error(`${source}: normEps must be > 0, got ${String(c.normEps)}`);
  return c;
}
