import type { Backend } from "@int21/quant-kernels";
import { forward } from "./forward";
import { setStateBackend } from "./kv-cache";
import { type RunState, createRunState } from "./run-state";
import { Sampler, type SamplerOptions } from "./sampler";
import type { Tokenizer } from "./tokenizer";
import type { LlamaWeights } from "./weights";

/** Options of {@link generate}. */
export interface GenerateOptions extends SamplerOptions {
  /** Text to continue (encoded with BOS when {@link GenerateOptions.bos} says so). Default "". */
  prompt?: string;
  /** Token ids to continue, used as given (no BOS added); replaces `prompt`. */
  promptIds?: readonly number[];
  /**
   * Start the encoded `prompt` with BOS. Default: the tokenizer's own setting (`tokenizer.addBos`:
   * Hugging Face `add_bos_token` / post-processor, GGUF `add_bos_token`; llama2.c always).
   */
  bos?: boolean;
  /**
   * Positions to run, prompt included (llama2.c's `-n`): at most `steps − promptTokens + 1` tokens are
   * generated. Default 256; values ≤ 0 or above `seqLen` mean `seqLen`.
   */
  steps?: number;
  /**
   * More token ids that end generation like EOS (e.g. `generation_config.json`'s `eos_token_id` list, a chat
   * template's end-of-turn token). The stop token is not kept.
   */
  stopIds?: readonly number[];
  /** Called with each generated piece as soon as it is printable (UTF-8 complete) and its token id. */
  onToken?: (piece: string, token: number) => void;
  /** A run state to reuse (its KV cache is overwritten from position 0). */
  state?: RunState;
  /** Prefill chunk height when no state is given (default 64). */
  maxRows?: number;
  /**
   * The backend for the work no `Linear` owns: attention over the KV cache (on a wasm backend the cache
   * moves into its memory and its attention kernel runs; on the reference backend, the JS attention). The
   * projections run on their own `Linear`'s backend. Default: the backend of the first projection (a
   * LoRA-wrapped one has none: JS attention). Given with `state`, it stays that state's backend.
   */
  backend?: Backend;
}

/** What {@link generate} returns. */
export interface GenerateResult {
  /** Everything after BOS as llama2.c prints it: the prompt, then the generation. */
  text: string;
  /** Only the generated text. */
  generatedText: string;
  /** The prompt's tokens (BOS first when it was added), then the generated tokens. */
  tokens: number[];
  promptTokens: number;
  generatedTokens: number;
  /** Why generation ended. */
  stop: "steps" | "bos" | "eos";
  /** Prompt tokens per second through the prefill (GEMM) path. */
  prefillTokensPerSec: number;
  /** Tokens per second of the decode loop (one forward + sampling per token), after the first. */
  decodeTokensPerSec: number;
}

/**
 * Generates text like llama2.c's `run`: the prompt is encoded with BOS, fed through the model as one
 * prefill (chunks of `maxRows` rows), then tokens are sampled one at a time (matvec path) until
 * `steps` positions are used or the model emits BOS (llama2.c's stop) or EOS. The leading space of the
 * first piece after BOS is dropped; byte-fallback tokens are assembled into UTF-8 before `onToken`.
 */
export function generate(
  weights: LlamaWeights,
  tokenizer: Tokenizer,
  opts: GenerateOptions = {},
): GenerateResult {
  const c = weights.config;
  // a padded vocabulary (more rows than tokens, as Qwen's) is fine: the sampler only draws real tokens
  if (tokenizer.vocabSize > c.vocabSize)
    throw new Error(
      `generate: tokenizer has ${tokenizer.vocabSize} tokens, model vocabSize is ${c.vocabSize} (the model may have more rows than the tokenizer has tokens, not fewer)`,
    );
  let steps = opts.steps ?? 256;
  if (!Number.isSafeInteger(steps))
    throw new Error(`generate: steps must be an integer, got ${String(opts.steps)}`);
  if (steps <= 0 || steps > c.seqLen) steps = c.seqLen;
  let tokens: number[];
  if (opts.promptIds !== undefined) {
    tokens = [...opts.promptIds];
    tokens.forEach((id, i) => {
      if (!Number.isInteger(id) || id < 0 || id >= tokenizer.vocabSize)
        throw new Error(`generate: prompt id ${id} (position ${i}) is outside [0, ${tokenizer.vocabSize})`);
    });
  } else tokens = tokenizer.encode(opts.prompt ?? "", { bos: opts.bos ?? tokenizer.addBos ?? true });
  const nPrompt = tokens.length;
  if (nPrompt === 0) throw new Error("generate: the prompt has no tokens (empty text without BOS)");
  if (nPrompt > steps)
    throw new Error(
      `generate: the prompt is ${nPrompt} tokens${tokens[0] === tokenizer.bosId ? " (with BOS)" : ""} but only ${steps} positions are allowed`,
    );
  // The KV cache is sized by the run (steps, at most 4096 at first), not by the model's seqLen; it grows
  // past that only if the run gets there.
  const state = opts.state ?? createRunState(c, { maxRows: opts.maxRows, ctx: Math.min(steps, 4096) });
  if (opts.backend !== undefined) setStateBackend(state, opts.backend);
  const sampler = new Sampler(tokenizer.vocabSize, opts);
  const dec = tokenizer.streamDecoder();
  let text = "";
  for (let i = tokens[0] === tokenizer.bosId ? 1 : 0; i < nPrompt; i++)
    text += dec.push(i > 0 ? tokens[i - 1] : -1, tokens[i]);
  let generatedText = "";

  const t0 = performance.now();
  let logits = forward(weights, state, tokens, 0, "last");
  const t1 = performance.now();
  let pos = nPrompt;
  let stop: GenerateResult["stop"] = "steps";
  const one = new Int32Array(1);
  let tDecode0 = t1;
  let decoded = 0;
  for (;;) {
    const next = sampler.sample(logits);
    if (next === tokenizer.bosId) {
      stop = "bos";
      break;
    }
    if (next === tokenizer.eosId || opts.stopIds?.includes(next)) {
      stop = "eos";
      break;
    }
    const piece = dec.push(tokens[tokens.length - 1], next);
    tokens.push(next);
    text += piece;
    generatedText += piece;
    if (piece !== "") opts.onToken?.(piece, next);
    if (pos >= steps) break;
    one[0] = next;
    if (decoded === 0) tDecode0 = performance.now();
    logits = forward(weights, state, one, pos, "last");
    pos++;
    decoded++;
  }
  const tail = dec.flush();
  if (tail !== "") {
    text += tail;
    generatedText += tail;
    opts.onToken?.(tail, tokens[tokens.length - 1]);
  }
  const tEnd = performance.now();
  return {
    text,
    generatedText,
    tokens,
    promptTokens: nPrompt,
    generatedTokens: tokens.length - nPrompt,
    stop,
    prefillTokensPerSec: nPrompt / Math.max((t1 - t0) / 1000, 1e-9),
    decodeTokensPerSec: decoded / Math.max((tEnd - tDecode0) / 1000, 1e-9),
  };
}
