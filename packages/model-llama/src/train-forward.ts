import {
  type OpContext,
  type Tensor,
  add,
  attention,
  checkpoint,
  defineOp,
  embedding,
  isQuantizedLinear,
  keep,
  linear,
  parameter,
  rmsNorm,
  rope,
  swiglu,
  tensor,
} from "@int21/autograd";
import { isLoRALinear, linearForward } from "@int21/lora";
import type { Linear } from "@int21/quant-kernels";
import { headSize } from "./config";
import { embeddingRows, isPackedEmbedding } from "./embedding";
import type { LlamaWeights } from "./weights";

/**
 * A `Linear` that is also differentiable: `apply(x)` maps `x` `[..., inFeatures]` to `[..., outFeatures]`
 * with autograd ops (a LoRA wrapper: frozen base op + trainable `scaling · (x·Aᵀ)·Bᵀ`). {@link trainForward}
 * calls it instead of the default op for the wrapped weight.
 */
export interface DifferentiableLinear extends Linear {
  apply(x: Tensor): Tensor;
}

/**
 * Hook of {@link TrainForwardOptions.linearOp}: return the op's output for `x`, or `undefined` for the
 * default. `name` is `layers.<l>.<wq|wk|wv|wo|w1|w2|w3>` or `classifier`.
 */
export type LinearOpHook = (lin: Linear, x: Tensor, name: string) => Tensor | undefined;

/** Options of {@link trainForward}. */
export interface TrainForwardOptions {
  /** Number of sequences B when `tokens` is flat (`B·T` ids); ignored for an array of rows. */
  batch?: number;
  /** Per-layer activation checkpointing: keep only each layer's input, recompute in backward. Default true. */
  checkpoint?: boolean;
  /** Custom autograd op per linear, tried before the defaults (see {@link trainForward}). */
  linearOp?: LinearOpHook;
  /** Training mode for `@int21/lora` layers (adapter dropout on). Default false. */
  training?: boolean;
}

interface FrozenTensors {
  /** The float table as a frozen `[vocabSize, dim]` parameter; absent for a packed table (rows are gathered). */
  embedding?: Tensor;
  attnNorm: Tensor[];
  ffnNorm: Tensor[];
  finalNorm: Tensor;
}

const frozenCache = new WeakMap<LlamaWeights, FrozenTensors>();
const floatWeightCache = new WeakMap<object, Tensor>();

function frozen(values: Float32Array, shape: number[]): Tensor {
  return keep(parameter(values, shape, { requiresGrad: false }));
}

function frozenTensors(w: LlamaWeights): FrozenTensors {
  let f = frozenCache.get(w);
  if (!f) {
    const { dim, vocabSize } = w.config;
    f = {
      ...(isPackedEmbedding(w.tokenEmbedding)
        ? {}
        : { embedding: frozen(w.tokenEmbedding, [vocabSize, dim]) }),
      attnNorm: w.layers.map((L) => frozen(L.attnNorm, [dim])),
      ffnNorm: w.layers.map((L) => frozen(L.ffnNorm, [dim])),
      finalNorm: frozen(w.finalNorm, [dim]),
    };
    frozenCache.set(w, f);
  }
  return f;
}

/** A generic op over any `Linear`: forward `lin.forward`, backward `lin.inputGrad` (no weight gradient). */
const linearOp = defineOp<Linear & { inputGrad?: (g: Float32Array, rows: number, dx: Float32Array) => void }>(
  {
    name: "modelLinear",
    forward(_ctx: OpContext, [x], lin) {
      const K = lin.inFeatures;
      const rows = x.size / K;
      const y = new Float32Array(rows * lin.outFeatures);
      lin.forward(x.values(), rows, y);
      return tensor(y, [...x.shape.slice(0, -1), lin.outFeatures]);
    },
    backward(_ctx, gy, [gx], lin) {
      if (!gx) return;
      if (typeof lin.inputGrad !== "function")
        throw new Error(
          "trainForward: this Linear has no inputGrad(g, rows, dx); give it apply(x) or a linearOp hook",
        );
      const rows = gy.size / lin.outFeatures;
      const dx = new Float32Array(rows * lin.inFeatures);
      lin.inputGrad(gy.values(), rows, dx);
      const d = gx.data;
      for (let i = 0; i < dx.length; i++) d[i] += dx[i];
    },
  },
);

/**
 * `y = x·Wᵀ` through autograd for one model `Linear`, choosing in order:
 * 1. `hook(lin, x, name)` when it returns a tensor;
 * 2. an `@int21/lora` `LoRALinear`: lora's `linearForward(lin, x, { training })` (frozen base + adapters);
 * 3. `lin.apply(x)` (any other {@link DifferentiableLinear});
 * 4. a quantized layer (`lin.q` a `QuantizedLinear`): autograd's fused `linear(x, q)` op;
 * 5. a float layer (`lin.weight` `[N·K]`): autograd's `linear` with a frozen `[N, K]` parameter;
 * 6. any other `Linear`: `lin.forward` forward, `lin.inputGrad` backward.
 * (A bias, when the layer has one, is added after 3 and 4.)
 */
export function applyLinear(
  lin: Linear,
  x: Tensor,
  name: string,
  hook?: LinearOpHook,
  training = false,
): Tensor {
  if (x.shape[x.ndim - 1] !== lin.inFeatures)
    throw new Error(
      `trainForward: ${name} expects inputs of width ${lin.inFeatures}, got shape [${x.shape.join(", ")}]`,
    );
  const fromHook = hook?.(lin, x, name);
  if (fromHook) return fromHook;
  if (isLoRALinear(lin)) return linearForward(lin, x, { training });
  const any = lin as Partial<DifferentiableLinear> & { q?: unknown; weight?: unknown; bias?: unknown };
  if (typeof any.apply === "function") return any.apply(x);
  let y: Tensor | undefined;
  if (isQuantizedLinear(any.q)) y = linear(x, any.q);
  else if (any.weight instanceof Float32Array && any.weight.length === lin.outFeatures * lin.inFeatures) {
    let wt = floatWeightCache.get(lin);
    if (!wt) {
      wt = frozen(any.weight, [lin.outFeatures, lin.inFeatures]);
      floatWeightCache.set(lin, wt);
    }
    y = linear(x, wt);
  }
  if (!y) return linearOp([x], lin);
  if (any.bias instanceof Float32Array) {
    let bt = floatWeightCache.get(any.bias);
    if (!bt) {
      bt = frozen(any.bias, [lin.outFeatures]);
      floatWeightCache.set(any.bias, bt);
    }
    y = add(y, bt);
  }
  return y;
}

/**
 * The LLaMA forward for training: logits `[B, T, vocabSize]` for B token sequences of length T
 * (positions 0..T−1 each), built from `@int21/autograd` ops so a loss can be back-propagated into
 * whatever is trainable (LoRA adapters through {@link DifferentiableLinear} or the `linearOp` hook).
 * The base weights are frozen: embeddings, norms and float weights become frozen parameters, quantized
 * weights use the fused quantized op (input gradient through the packed weight, no weight gradient).
 * A packed token embedding is never expanded: only the `B·T` rows the tokens select are dequantized,
 * into a constant tensor.
 *
 * ```
 * x = embedding(tokens)
 * per layer (checkpointed):  h = rmsNorm(x);  q, k = rope(h·Wqᵀ), rope(h·Wkᵀ);  v = h·Wvᵀ
 *                            x = x + attention(q, k, v; causal, GQA)·Woᵀ
 *                            h = rmsNorm(x);  x = x + (silu(h·W1ᵀ) ⊙ h·W3ᵀ)·W2ᵀ
 * logits = rmsNorm(x)·Wclsᵀ
 * ```
 * The same numbers as {@link forward} (inference) up to float32 summation order.
 */
export function trainForward(
  weights: LlamaWeights,
  tokens: ArrayLike<number> | readonly (readonly number[])[],
  opts: TrainForwardOptions = {},
): Tensor {
  const c = weights.config;
  let ids: number[];
  let B: number;
  if (Array.isArray(tokens) && tokens.length > 0 && Array.isArray(tokens[0])) {
    const rows = tokens as readonly (readonly number[])[];
    B = rows.length;
    const T0 = rows[0].length;
    rows.forEach((r, i) => {
      if (r.length !== T0)
        throw new Error(`trainForward: sequence ${i} has ${r.length} tokens, sequence 0 has ${T0}`);
    });
    ids = rows.flat();
  } else {
    ids = Array.from(tokens as ArrayLike<number>);
    B = opts.batch ?? 1;
    if (!Number.isSafeInteger(B) || B < 1 || ids.length % B !== 0)
      throw new Error(
        `trainForward: ${ids.length} tokens do not split into batch = ${String(opts.batch)} sequences`,
      );
  }
  const T = ids.length / B;
  if (T < 1) throw new Error("trainForward: no tokens");
  if (T > c.seqLen) throw new Error(`trainForward: sequences of ${T} tokens exceed seqLen ${c.seqLen}`);
  for (let i = 0; i < ids.length; i++) {
    if (!Number.isInteger(ids[i]) || ids[i] < 0 || ids[i] >= c.vocabSize)
      throw new Error(`trainForward: token ${String(ids[i])} at index ${i} is outside [0, ${c.vocabSize})`);
  }
  const f = frozenTensors(weights);
  const hs = headSize(c);
  const hook = opts.linearOp;
  let x: Tensor;
  if (f.embedding) {
    x = embedding(f.embedding, ids, [B, T]);
  } else {
    // A packed table is frozen: its gathered, dequantized rows are a constant input (no gradient).
    const rows = new Float32Array(ids.length * c.dim);
    embeddingRows(weights, ids, rows);
    x = tensor(rows, [B, T, c.dim], { tag: "activation", name: "embedding rows" });
  }
  weights.layers.forEach((L, l) => {
    const lin = (name: keyof typeof L, h: Tensor) =>
      applyLinear(L[name] as Linear, h, `layers.${l}.${name}`, hook, opts.training);
    const block = (xin: Tensor): Tensor => {
      const h = rmsNorm(xin, f.attnNorm[l], c.normEps);
      const q = rope(lin("wq", h), { headSize: hs, theta: c.ropeTheta });
      const k = rope(lin("wk", h), { headSize: hs, theta: c.ropeTheta });
      const v = lin("wv", h);
      const a = attention(q, k, v, { nHeads: c.nHeads, nKvHeads: c.nKvHeads });
      const x1 = add(xin, lin("wo", a));
      const h2 = rmsNorm(x1, f.ffnNorm[l], c.normEps);
      return add(x1, lin("w2", swiglu(lin("w1", h2), lin("w3", h2))));
    };
    x = opts.checkpoint === false ? block(x) : checkpoint(block, [x]);
  });
  return applyLinear(
    weights.classifier,
    rmsNorm(x, f.finalNorm, c.normEps),
    "classifier",
    hook,
    opts.training,
  );
}
