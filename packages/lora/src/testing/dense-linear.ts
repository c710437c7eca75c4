// Test fixture: the plainest float `Linear` (row-major W, float64 accumulation), independent of any backend.
import type { Linear } from "@int21/quant-kernels";
import { mulberry32 } from "../lora-linear";

/** `y = x·Wᵀ` with `W` `[N × K]` row-major. */
export class DenseLinear implements Linear {
  constructor(
    readonly weight: Float32Array,
    readonly outFeatures: number,
    readonly inFeatures: number,
  ) {}

  forward(x: Float32Array, rows: number, y: Float32Array): void {
    const { inFeatures: K, outFeatures: N, weight: W } = this;
    for (let r = 0; r < rows; r++) {
      for (let n = 0; n < N; n++) {
        let s = 0;
        for (let k = 0; k < K; k++) s += x[r * K + k] * W[n * K + k];
        y[r * N + n] = s;
      }
    }
  }

  bytes(): number {
    return this.weight.byteLength;
  }
}

/** Uniform values in ±`scale` from a seeded generator. */
export function randomArray(n: number, seed: number, scale = 1): Float32Array {
  const rand = mulberry32(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = scale * (2 * rand() - 1);
  return out;
}

/** A random dense layer. */
export function randomDense(N: number, K: number, seed: number): DenseLinear {
  return new DenseLinear(randomArray(N * K, seed, 1 / Math.sqrt(K)), N, K);
}

/** Two LLaMA-like layers (dim 8, kv 4, hidden 12), Hugging Face module names. */
export function toyModules(): Map<string, Linear> {
  const m = new Map<string, Linear>();
  let seed = 1;
  for (let i = 0; i < 2; i++) {
    const p = `model.layers.${i}`;
    m.set(`${p}.self_attn.q_proj`, randomDense(8, 8, seed++));
    m.set(`${p}.self_attn.k_proj`, randomDense(4, 8, seed++));
    m.set(`${p}.self_attn.v_proj`, randomDense(4, 8, seed++));
    m.set(`${p}.self_attn.o_proj`, randomDense(8, 8, seed++));
    m.set(`${p}.mlp.gate_proj`, randomDense(12, 8, seed++));
    m.set(`${p}.mlp.up_proj`, randomDense(12, 8, seed++));
    m.set(`${p}.mlp.down_proj`, randomDense(8, 12, seed++));
  }
  return m;
}
