// The EMEF training step with autograd's BufferPool: the same numbers as without it (bit for bit), and
// the second step runs on the first step's buffers.
import { AdamW, BufferPool, backward, memory, setBackend, tidy } from "@int21/autograd";
import { loraParameters } from "@int21/lora";
import { type Backend, createQuantLinear, createReferenceBackend, rtnQuantize } from "@int21/quant-kernels";
import { createWasmBackend } from "@int21/quant-kernels/wasm";
import { describe, expect, it } from "vitest";
import { quantizeTokenEmbedding } from "./embedding";
import { addLlamaLoRA, llamaLoss } from "./finetune";
import { stories260K } from "./testing/stories260k";
import type { LinearName, LlamaWeights } from "./weights";

const PROJ: LinearName[] = ["wq", "wk", "wv", "wo", "w1", "w2", "w3"];

/**
 * stories260K with every projection RTN-packed to INT4 (g32) on `be`, and the token embedding to INT8
 * (g64) when `packEmbedding` (its rows are gathered into a pooled buffer each step).
 */
function packedStories(be: Backend, packEmbedding: boolean): LlamaWeights {
  const w = stories260K();
  const layers = w.layers.map((L) => {
    const out = { ...L };
    for (const n of PROJ) {
      const lin = L[n] as unknown as { weight: Float32Array; outFeatures: number; inFeatures: number };
      const q = rtnQuantize(lin.weight, lin.outFeatures, lin.inFeatures, "int4-g32-asym-f16");
      out[n] = createQuantLinear({ q, backend: be });
    }
    return out;
  });
  const tokenEmbedding = packEmbedding
    ? quantizeTokenEmbedding(w.tokenEmbedding, w.config, "int8-g64-asym-f16")
    : w.tokenEmbedding;
  return { ...w, tokenEmbedding, layers };
}

interface StepResult {
  losses: number[];
  /** Every LoRA gradient and weight after the last step, concatenated. */
  grads: Float32Array[];
  weights: Float32Array[];
}

/** `steps` AdamW steps of LoRA r 4 on q,v with per-layer checkpointing, inside `pool.run` when given. */
function train(
  be: Backend,
  packEmbedding: boolean,
  steps: number,
  pool?: BufferPool,
  onStep?: (s: number) => void,
): StepResult {
  setBackend(be);
  const w = packedStories(be, packEmbedding);
  const lora = addLlamaLoRA(w, { targetModules: ["q_proj", "v_proj"], r: 4, alpha: 8, seed: 3 });
  const params = loraParameters(lora);
  const opt = new AdamW(params, { lr: 1e-2 });
  const loss = llamaLoss(w, { checkpoint: true, chunk: 8 });
  const T = 24;
  const ids = Int32Array.from({ length: T + 1 }, (_, t) => 1 + ((t * 37 + 11) % 500));
  const batch = {
    batch: 1,
    seqLen: T,
    input: ids.subarray(0, T),
    target: ids.subarray(1),
    tokens: T,
    inputTokens: T,
  };
  const losses: number[] = [];
  const step = () => {
    opt.zeroGrad();
    const l = tidy(() => {
      const t = loss(batch, { training: true });
      backward(t);
      return t.item();
    });
    opt.step();
    return l;
  };
  for (let s = 0; s < steps; s++) {
    losses.push(pool ? pool.run(step) : step());
    onStep?.(s);
  }
  return {
    losses,
    grads: params.map((p) => p.grad!.toFloat32Array()),
    weights: params.map((p) => p.toFloat32Array()),
  };
}

describe("the EMEF step with a BufferPool", () => {
  const cases: [string, () => Promise<Backend>, boolean][] = [
    ["reference backend", async () => createReferenceBackend(), false],
    ["wasm backend", () => createWasmBackend({ threads: 1 }), false],
    ["wasm backend, INT8 embedding", () => createWasmBackend({ threads: 1 }), true],
  ];
  for (const [name, make, packEmbedding] of cases) {
    it(`gives bit-identical losses, LoRA gradients and weights (${name}) and reuses its buffers`, async () => {
      const be = await make();
      try {
        const plain = train(be, packEmbedding, 3);
        const pool = new BufferPool();
        const taken: number[] = [];
        const reused: number[] = [];
        const pooled = train(be, packEmbedding, 3, pool, () => {
          const s = pool.stats();
          taken.push(s.taken);
          reused.push(s.reused);
        });
        expect(pooled.losses).toEqual(plain.losses);
        expect(plain.losses[2]).toBeLessThan(plain.losses[0]); // it trains
        expect(pooled.grads).toEqual(plain.grads);
        expect(pooled.weights).toEqual(plain.weights);
        // the first step fills the pool; later steps take nearly every buffer from it
        const took2 = taken[2] - taken[1];
        const reused2 = reused[2] - reused[1];
        expect(reused[0]).toBeGreaterThan(0);
        expect(took2).toBeGreaterThan(100);
        expect(reused2 / took2).toBeGreaterThan(0.9);
        expect(memory().pooledBytes).toBeGreaterThanOrEqual(pool.stats().pooledBytes);
        expect(pool.stats().pooledBytes).toBeGreaterThan(0);
        pool.clear();
        expect(pool.stats().pooledBytes).toBe(0);
      } finally {
        be.dispose?.();
      }
    });
  }
});
