/**
 * llama2.c's random number generator: xorshift* over a 64-bit state.
 * ```
 * s ^= s >> 12;  s ^= s << 25;  s ^= s >> 27;      (mod 2^64)
 * u32 = (s · 0x2545F4914F6CDD1D mod 2^64) >> 32
 * f32 = (u32 >> 8) / 2^24                           in [0, 1)
 * ```
 * The same seed gives llama2.c's sequence.
 */
export class XorShiftRng {
  private state: bigint;
  constructor(seed: number | bigint) {
    const s = BigInt.asUintN(64, BigInt(seed));
    if (s === 0n) throw new Error("XorShiftRng: seed must be non-zero (xorshift has a fixed point at 0)");
    this.state = s;
  }
  /** Next 32-bit unsigned integer. */
  nextU32(): number {
    let s = this.state;
    s ^= s >> 12n;
    s = BigInt.asUintN(64, s ^ (s << 25n));
    s ^= s >> 27n;
    this.state = s;
    return Number(BigInt.asUintN(64, s * 0x2545f4914f6cdd1dn) >> 32n);
  }
  /** Next float in [0, 1) with 24 random bits. */
  nextF32(): number {
    return (this.nextU32() >>> 8) / 16777216;
  }
}

/** Options of {@link Sampler}. */
export interface SamplerOptions {
  /** 0 → greedy argmax; otherwise logits are divided by it before the softmax. Default 1. */
  temperature?: number;
  /** Nucleus sampling: keep the smallest set of tokens whose mass exceeds `topP`; ≤ 0 or ≥ 1 → off. Default 0.9 (llama2.c). */
  topP?: number;
  /** Keep only the `topK` most likely tokens before top-p; 0 → off. Default 0. */
  topK?: number;
  /** RNG seed (non-zero). Default: the current time in seconds, as llama2.c. */
  seed?: number;
}

/**
 * Picks the next token from logits, as llama2.c's `sample()`:
 * ```
 * temperature == 0:  argmax (first maximum)
 * else:              p = softmax(logits / temperature)          (float32, in place)
 *                    coin = rng.nextF32()
 *                    topK > 0:        keep the topK largest p (ties: lower id first), renormalise
 *                    0 < topP < 1:    sort p descending (dropping p < (1 − topP)/(n − 1)), cut after the
 *                                     first index whose running sum exceeds topP, return the first
 *                                     index whose running sum exceeds coin · (kept mass)
 *                    else:            return the first index whose running sum exceeds coin
 * ```
 * With `topK = 0` this draws exactly llama2.c's tokens for the same seed and logits. Buffers are
 * allocated once per sampler.
 *
 * Padded vocabularies: `logits` may be longer than `vocabSize` (a model with more embedding rows than
 * its tokenizer has tokens, as every Qwen). Only `logits[0 … vocabSize)` take part; the padding rows are
 * masked out, never drawn, and do not count in the softmax. Build the sampler with the tokenizer's size.
 */
export class Sampler {
  readonly vocabSize: number;
  readonly temperature: number;
  readonly topP: number;
  readonly topK: number;
  readonly rng: XorShiftRng;
  private readonly idx: Int32Array;
  private readonly probs: Float32Array;

  constructor(vocabSize: number, opts: SamplerOptions = {}) {
    this.vocabSize = vocabSize;
    this.temperature = opts.temperature ?? 1;
    this.topP = opts.topP ?? 0.9;
    this.topK = opts.topK ?? 0;
    if (!Number.isSafeInteger(vocabSize) || vocabSize < 1)
      throw new Error(`Sampler: vocabSize must be a positive integer, got ${vocabSize}`);
    if (!(this.temperature >= 0) || !Number.isFinite(this.temperature))
      throw new Error(`Sampler: temperature must be a finite number ≥ 0, got ${String(opts.temperature)}`);
    if (!Number.isFinite(this.topP))
      throw new Error(`Sampler: topP must be finite, got ${String(opts.topP)}`);
    if (!Number.isSafeInteger(this.topK) || this.topK < 0)
      throw new Error(`Sampler: topK must be a non-negative integer, got ${String(opts.topK)}`);
    const seed = opts.seed ?? (Math.floor(Date.now() / 1000) >>> 0 || 1);
    this.rng = new XorShiftRng(seed);
    this.idx = new Int32Array(vocabSize);
    this.probs = new Float32Array(vocabSize);
  }

  /**
   * Next token for `logits` (`[≥ vocabSize]`; the first `vocabSize` entries are overwritten with
   * probabilities unless greedy, entries past them are ignored).
   */
  sample(logits: Float32Array): number {
    const n = this.vocabSize;
    if (logits.length < n) throw new Error(`Sampler: logits have ${logits.length} entries, expected ${n}`);
    if (this.temperature === 0) return argmax(logits, n);
    const invalid = softmaxInPlace(logits, n, this.temperature);
    if (invalid >= 0) throw new Error(`Sampler: logit ${invalid} is not finite`);
    const coin = this.rng.nextF32();
    if (this.topK > 0 && this.topK < n) return this.sampleTopK(logits, coin);
    if (this.topP > 0 && this.topP < 1) return this.sampleTopP(logits, n, coin);
    let cdf = 0;
    for (let i = 0; i < n; i++) {
      cdf = Math.fround(cdf + logits[i]);
      if (coin < cdf) return i;
    }
    return n - 1;
  }

  /** Sorts candidate ids with p ≥ cutoff by p descending (stable: lower id first on ties); returns their count. */
  private sortDescending(p: Float32Array, n: number, cutoff: number): number {
    let m = 0;
    for (let i = 0; i < n; i++) if (p[i] >= cutoff) this.idx[m++] = i;
    const ids = this.idx.subarray(0, m);
    ids.sort((a, b) => p[b] - p[a] || a - b);
    return m;
  }

  private sampleTopP(p: Float32Array, n: number, coin: number): number {
    const topP = Math.fround(this.topP); // llama2.c holds topp as a float
    const m = this.sortDescending(p, n, Math.fround(Math.fround(1 - topP) / (n - 1)));
    const ids = this.idx;
    let cum = 0;
    let last = m - 1;
    for (let i = 0; i < m; i++) {
      cum = Math.fround(cum + p[ids[i]]);
      if (cum > topP) {
        last = i;
        break;
      }
    }
    const r = Math.fround(coin * cum);
    let cdf = 0;
    for (let i = 0; i <= last; i++) {
      cdf = Math.fround(cdf + p[ids[i]]);
      if (r < cdf) return ids[i];
    }
    return ids[last];
  }

  private sampleTopK(p: Float32Array, coin: number): number {
    const n = this.vocabSize;
    const m = Math.min(this.sortDescending(p, n, 0), this.topK);
    const ids = this.idx;
    let mass = 0;
    for (let i = 0; i < m; i++) mass += p[ids[i]];
    const q = this.probs;
    for (let i = 0; i < m; i++) q[i] = p[ids[i]] / mass;
    let last = m - 1;
    if (this.topP > 0 && this.topP < 1) {
      let cum = 0;
      for (let i = 0; i < m; i++) {
        cum += q[i];
        if (cum > this.topP) {
          last = i;
          break;
        }
      }
    }
    let kept = 0;
    for (let i = 0; i <= last; i++) kept += q[i];
    const r = coin * kept;
    let cdf = 0;
    for (let i = 0; i <= last; i++) {
      cdf += q[i];
      if (r < cdf) return ids[i];
    }
    return ids[last];
  }
}

/** Index of the first maximum of `x[0..n)`. */
export function argmax(x: Float32Array, n: number): number {
  let best = 0;
  let bestV = x[0];
  for (let i = 1; i < n; i++) {
    if (x[i] > bestV) {
      bestV = x[i];
      best = i;
    }
  }
  return best;
}

/**
 * `x[i] = exp(x[i]/T − max) / Σ` in place with float32 rounding of every stored value and of the
 * running sum, as llama2.c's `softmax` computes it. Returns the first non-finite index, or −1.
 */
export function softmaxInPlace(x: Float32Array, n: number, temperature = 1): number {
  for (let i = 0; i < n; i++) {
    if (!Number.isFinite(x[i])) return i;
    if (temperature !== 1) x[i] = x[i] / temperature;
  }
  let max = x[0];
  for (let i = 1; i < n; i++) if (x[i] > max) max = x[i];
  let sum = 0;
  for (let i = 0; i < n; i++) {
    x[i] = Math.exp(x[i] - max);
    sum = Math.fround(sum + x[i]);
  }
  for (let i = 0; i < n; i++) x[i] = x[i] / sum;
  return -1;
}
