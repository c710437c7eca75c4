import {
  type Tensor,
  add,
  backward,
  currentBackend,
  linear,
  memory,
  mul,
  parameter,
  resetPeak,
  sum,
  tensor,
  tidy,
} from "@int21/autograd";
import { LoRALinear, adapterTensors } from "@int21/lora";
import {
  type Backend,
  type Linear,
  type QuantizedLinear,
  createQuantLinear,
  createReferenceBackend,
  rtnQuantize,
} from "@int21/quant-kernels";
import { describe, expect, it } from "vitest";
import { forward } from "./forward";
import { createRunState } from "./run-state";
import { stories260K } from "./testing/stories260k";
import { type LinearOpHook, type TrainForwardOptions, trainForward as trainForwardOn } from "./train-forward";
import type { LlamaWeights } from "./weights";

/** The backend of the autograd ops (passed explicitly: autograd has no default). */
const backend = createReferenceBackend();
const trainForward = (
  w: LlamaWeights,
  t: Parameters<typeof trainForwardOn>[1],
  o: TrainForwardOptions = {},
) => trainForwardOn(w, t, { backend, ...o });

const seqs = [
  [1, 403, 407, 261, 378, 432, 383, 273, 261, 376, 370, 317, 426, 338, 405, 267, 337, 322],
  [1, 291, 305, 281, 286, 261, 370, 268, 308, 426, 342, 296, 383, 411, 412, 413, 414, 415],
];

function maxDiffToInference(w: LlamaWeights, logits: Tensor): number {
  const V = w.config.vocabSize;
  const T = seqs[0].length;
  const got = logits.values();
  let err = 0;
  seqs.forEach((s, b) => {
    const st = createRunState(w.config, { maxRows: 32 });
    const ref = forward(w, st, s, 0, "all");
    for (let i = 0; i < T * V; i++) err = Math.max(err, Math.abs(ref[i] - got[b * T * V + i]));
  });
  return err;
}

/** stories260K with every projection quantized to INT4 (g32) behind quant-kernels' QuantLinear. */
function quantizedStories(): LlamaWeights {
  const w = stories260K();
  const be = createReferenceBackend();
  const quant = (lin: Linear): Linear & { q: QuantizedLinear } => {
    const q = rtnQuantize(
      (lin as unknown as { weight: Float32Array }).weight,
      lin.outFeatures,
      lin.inFeatures,
      "int4-g32-asym-f16",
    );
    return createQuantLinear({ q, backend: be });
  };
  return {
    ...w,
    layers: w.layers.map((L) => ({
      ...L,
      wq: quant(L.wq),
      wk: quant(L.wk),
      wv: quant(L.wv),
      wo: quant(L.wo),
      w1: quant(L.w1),
      w2: quant(L.w2),
      w3: quant(L.w3),
    })),
  };
}

/** A LoRA-like wrapper: base(x) + x·Dᵀ with a trainable D, run by {@link deltaHook} through `apply`. */
function withDelta(base: Linear, seed: number): Linear & { delta: Tensor; apply(x: Tensor): Tensor } {
  const d = new Float32Array(base.outFeatures * base.inFeatures);
  let s = seed;
  for (let i = 0; i < d.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    d[i] = (s / 2 ** 32 - 0.5) * 0.02;
  }
  const delta = parameter(d, [base.outFeatures, base.inFeatures]);
  const baseW = tensor((base as unknown as { weight: Float32Array }).weight, [
    base.outFeatures,
    base.inFeatures,
  ]);
  return {
    delta,
    inFeatures: base.inFeatures,
    outFeatures: base.outFeatures,
    forward: () => {
      throw new Error("inference not used here");
    },
    bytes: () => 0,
    apply: (x) => add(linear(x, baseW), linear(x, delta)),
  };
}

/** The `linearOp` hook that runs {@link withDelta}'s wrappers (the default op for everything else). */
const deltaHook: LinearOpHook = (lin, x) => (lin as Partial<ReturnType<typeof withDelta>>).apply?.(x);

describe("trainForward", () => {
  it("equals the inference forward to 1e-4 on stories260K (with and without checkpointing)", () => {
    const w = stories260K();
    for (const ck of [true, false]) {
      tidy(() => {
        const logits = trainForward(w, seqs, { checkpoint: ck });
        expect(logits.shape).toEqual([2, 18, 512]);
        expect(maxDiffToInference(w, logits)).toBeLessThan(1e-4);
      });
    }
    // flat tokens with a batch size
    tidy(() => {
      const logits = trainForward(w, seqs.flat(), { batch: 2 });
      expect(maxDiffToInference(w, logits)).toBeLessThan(1e-4);
    });
  });

  it("equals the inference forward on an INT4-quantized model (fused quantized op)", () => {
    const w = quantizedStories();
    tidy(() => {
      const logits = trainForward(w, seqs);
      expect(maxDiffToInference(w, logits)).toBeLessThan(1e-4);
    });
  });

  it("back-propagates into wrapped linears; checkpointing gives the same gradients", () => {
    const base = stories260K();
    const wq = withDelta(base.layers[1].wq, 7);
    const w2 = withDelta(base.layers[3].w2, 9);
    const w: LlamaWeights = {
      ...base,
      layers: base.layers.map((L, l) => (l === 1 ? { ...L, wq } : l === 3 ? { ...L, w2 } : L)),
    };
    const probe = tensor(
      Float32Array.from({ length: 2 * 18 * 512 }, (_, i) => Math.sin(i * 0.37)),
      [2, 18, 512],
    );
    const lossOf = (ck: boolean) =>
      tidy(() => {
        const l = sum(mul(trainForward(w, seqs, { checkpoint: ck, linearOp: deltaHook }), probe));
        return l;
      });
    const grads: Float32Array[][] = [];
    for (const ck of [true, false]) {
      wq.delta.grad = null;
      w2.delta.grad = null;
      tidy(() => backward(lossOf(ck)));
      grads.push([wq.delta.grad!.values().slice(), w2.delta.grad!.values().slice()]);
    }
    for (let p = 0; p < 2; p++) {
      let err = 0;
      let mag = 0;
      for (let i = 0; i < grads[0][p].length; i++) {
        err = Math.max(err, Math.abs(grads[0][p][i] - grads[1][p][i]));
        mag = Math.max(mag, Math.abs(grads[1][p][i]));
      }
      expect(mag).toBeGreaterThan(1e-3);
      expect(err).toBeLessThan(1e-4 * mag);
    }
    // central finite difference on one entry of each delta
    for (const [lin, idx, p] of [
      [wq, 70, 0],
      [w2, 333, 1],
    ] as const) {
      const d = lin.delta.data;
      const h = 1e-2;
      const old = d[idx];
      d[idx] = old + h;
      const up = tidy(() => lossOf(false).item());
      d[idx] = old - h;
      const down = tidy(() => lossOf(false).item());
      d[idx] = old;
      const fd = (up - down) / (2 * h);
      expect(Math.abs(fd)).toBeGreaterThan(1);
      expect(Math.abs(fd - grads[1][p][idx])).toBeLessThan(2e-3 * Math.abs(fd));
    }
  });

  it("per-layer checkpointing lowers the peak memory of forward + backward", () => {
    const base = stories260K();
    const wq = withDelta(base.layers[0].wq, 11);
    const w: LlamaWeights = { ...base, layers: base.layers.map((L, l) => (l === 0 ? { ...L, wq } : L)) };
    const long = [0, 1].map((b) => Array.from({ length: 96 }, (_, i) => 3 + ((i * 31 + b * 7) % 500)));
    const peak = (ck: boolean) => {
      wq.delta.grad = null;
      const before = memory().liveBytes;
      resetPeak();
      tidy(() => backward(sum(trainForward(w, long, { checkpoint: ck, linearOp: deltaHook }))));
      return memory().peakBytes - before;
    };
    const withCk = peak(true);
    const without = peak(false);
    // measured: 4.1 MB vs 9.2 MB (the attention probabilities and FFN activations of 5 layers)
    expect(withCk).toBeLessThan(0.6 * without);
  }, 30_000);

  it("offers a per-linear hook with stable names", () => {
    const w = stories260K();
    const names: string[] = [];
    tidy(() =>
      trainForward(w, [seqs[0].slice(0, 4)], {
        linearOp: (_l, _x, n) => {
          names.push(n);
          return undefined;
        },
      }),
    );
    expect(names.slice(0, 7)).toEqual([
      "layers.0.wq",
      "layers.0.wk",
      "layers.0.wv",
      "layers.0.wo",
      "layers.0.w1",
      "layers.0.w3",
      "layers.0.w2",
    ]);
    expect(names.at(-1)).toBe("classifier");
    expect(names.length).toBe(5 * 7 + 1);
  });

  it("runs the autograd ops on opts.backend (forward and backward, checkpointed), with none set in autograd", () => {
    const w = stories260K();
    let sgemm = 0;
    const spy: Backend = {
      ...backend,
      sgemm: (a) => {
        sgemm++;
        backend.sgemm(a);
      },
    };
    const lora = new LoRALinear(w.layers[0].wq);
    lora.addAdapter({ r: 2, alpha: 4, seed: 1 });
    const wl: LlamaWeights = { ...w, layers: w.layers.map((L, l) => (l === 0 ? { ...L, wq: lora } : L)) };
    expect(currentBackend()).toBeNull();
    tidy(() => {
      const logits = trainForwardOn(wl, [seqs[0].slice(0, 6)], { backend: spy });
      const forwardCalls = sgemm;
      expect(forwardCalls).toBeGreaterThan(0); // the adapter's matmuls (the projections use their own backend)
      expect(currentBackend()).toBeNull();
      backward(sum(logits)); // outside withBackend: the ops (and the checkpoint recompute) kept the spy
      expect(sgemm).toBeGreaterThan(forwardCalls);
    });
    // no backend given and none set: the first op that needs kernels says how to set one
    expect(() => tidy(() => trainForwardOn(w, [seqs[0].slice(0, 4)]))).toThrow(/no backend is set/);
  });

  it("runs every projection through the one frozen-linear op; a Linear it cannot run is an error naming the layer", () => {
    const w = stories260K();
    const opaque: Linear = {
      inFeatures: w.layers[1].w2.inFeatures,
      outFeatures: w.layers[1].w2.outFeatures,
      forward: (x, rows, y) => w.layers[1].w2.forward(x, rows, y),
      bytes: () => 0,
    };
    const bad: LlamaWeights = { ...w, layers: w.layers.map((L, l) => (l === 1 ? { ...L, w2: opaque } : L)) };
    expect(() => tidy(() => trainForward(bad, [seqs[0].slice(0, 4)]))).toThrow(
      /trainForward: layers\.1\.w2 is a Linear autograd cannot run \(it has no inputGrad/,
    );
  });

  it("rejects ragged batches, bad tokens and over-long sequences", () => {
    const w = stories260K();
    expect(() => trainForward(w, [[1, 2], [1]])).toThrow(/sequence 1 has 1 tokens, sequence 0 has 2/);
    expect(() => trainForward(w, [1, 2, 3], { batch: 2 })).toThrow(/3 tokens do not split into batch = 2/);
    expect(() => trainForward(w, [[1, 512]])).toThrow(/token 512 at index 1/);
    expect(() => trainForward(w, [new Array(513).fill(1)])).toThrow(/513 tokens exceed seqLen 512/);
  });
});

describe("trainForward with @int21/lora layers", () => {
  it("routes LoRALinear through lora's linearForward: equals inference, gradients reach A and B", () => {
    const base = stories260K();
    const lora = new LoRALinear(base.layers[2].wv);
    const a = lora.addAdapter({ r: 4, alpha: 8, seed: 3 });
    for (let i = 0; i < a.loraB.length; i++) a.loraB[i] = Math.cos(i) * 0.05; // a non-zero delta
    const w: LlamaWeights = {
      ...base,
      layers: base.layers.map((L, l) => (l === 2 ? { ...L, wv: lora } : L)),
    };
    const { loraA, loraB } = adapterTensors(a);
    tidy(() => {
      const logits = trainForward(w, seqs);
      expect(maxDiffToInference(w, logits)).toBeLessThan(1e-4);
      expect(maxDiffToInference(base, logits)).toBeGreaterThan(1e-3); // the adapter changed the output
      backward(sum(logits));
    });
    expect(loraA.grad).not.toBeNull();
    expect(loraB.grad).not.toBeNull();
    expect(Math.max(...loraB.grad!.values().map(Math.abs))).toBeGreaterThan(0);
  });
});
