// Seeded random data for conformance tests and benchmarks (deterministic across runs and machines).

/** A uniform [0, 1) generator (mulberry32) seeded by a 32-bit integer. */
export function makeRng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A standard normal sample (Box–Muller) from a uniform generator. */
export function gaussian(rng: () => number): number {
  const u = 1 - rng();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rng());
}

/**
 * `length` normal values times `scale`, with a fraction `outliers` of them multiplied by 8
 * (LLM weights have heavy tails; group-wise formats must cope).
 */
export function randomWeights(length: number, seed: number, scale = 0.05, outliers = 0.01): Float32Array {
  const rng = makeRng(seed);
  const out = new Float32Array(length);
  for (let i = 0; i < length; i++) out[i] = gaussian(rng) * scale * (rng() < outliers ? 8 : 1);
  return out;
}

/** `length` uniform values in [−1, 1). */
export function randomUniform(length: number, seed: number): Float32Array {
  const rng = makeRng(seed);
  const out = new Float32Array(length);
  for (let i = 0; i < length; i++) out[i] = 2 * rng() - 1;
  return out;
}

/** A random act-order grouping: `gIdx[perm[j]] = floor(j / groupSize)` for a random permutation. */
export function randomGIdx(K: number, groupSize: number, seed: number): Int32Array {
  const rng = makeRng(seed);
  const perm = Array.from({ length: K }, (_, i) => i);
  for (let i = K - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    [perm[i], perm[j]] = [perm[j], perm[i]];
  }
  const g = new Int32Array(K);
  const G = groupSize === -1 ? K : groupSize;
  for (let j = 0; j < K; j++) g[perm[j]] = Math.floor(j / G);
  return g;
}
