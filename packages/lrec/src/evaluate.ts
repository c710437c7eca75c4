// Held-out stories as token rows: what model-llama's `evaluateNll(student, rows, { teacher })` scores
// (NLL, perplexity and the KL to the teacher per token, every token after each story's BOS).
import type { Tokenizer } from "@int21/model-llama";

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
