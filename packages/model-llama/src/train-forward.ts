import {
  type OpDef,
  type Tensor,
  add,
  allocFloats,
  attention,
  checkpoint,
  defineOp,
  embedding,
  frozenLinear,
  isFrozenLinear,
  keep,
  parameter,
  reshape,
  rmsNorm,
  rope,
  scale,
  swiglu,
  tensor,
  withBackend,
} from "@int21/autograd";
import { isLoRALinear, linearForward } from "@int21/lora";
import type { Backend, Linear } from "@int21/quant-kernels";
import {
  type BlockAttention,
  type BlockBiasName,
  type BlockHeadNormName,
  type BlockNormName,
  type BlockOps,
  llamaBlock,
} from "./block";
import { type LlamaConfig, headSize, ropeInvFreq } from "./config";
import { embeddingRows, isPackedEmbedding } from "./embedding";
import { EXTRA_LAYER_TENSORS, type LayerWeights, type LinearName, type LlamaWeights } from "./weights";

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
  /**
   * The backend of the autograd ops (norms, attention, SwiGLU, the LoRA adapters' matmuls), forward and
   * backward: the forward runs inside `withBackend(backend, …)` and each op keeps it for backward.
   * Default: the one set in autograd (`setBackend` / `withBackend`); with none set, the first op that
   * needs kernels throws. The projections themselves run on their own `Linear`'s backend.
   */
  backend?: Backend;
}

interface FrozenTensors {
  /** The float table as a frozen `[vocabSize, dim]` parameter; absent for a packed table (rows are gathered). */
  embedding?: Tensor;
  finalNorm: Tensor;
  /** Every layer's norms, biases, q/k norms and post norms (whichever it has), frozen, by their values. */
  vectors: Map<Float32Array, Tensor>;
}

const frozenCache = new WeakMap<LlamaWeights, FrozenTensors>();

const VECTOR_NAMES = ["attnNorm", "ffnNorm", ...EXTRA_LAYER_TENSORS] as const;

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
      finalNorm: frozen(w.finalNorm, [dim]),
      vectors: new Map(),
    };
    for (const L of w.layers) {
      for (const n of VECTOR_NAMES) {
        const v = L[n];
        if (v && !f.vectors.has(v)) f.vectors.set(v, frozen(v, [v.length]));
      }
    }
    frozenCache.set(w, f);
  }
  return f;
}

/**
 * `y = lin(x)` through autograd for one model `Linear`, choosing in order:
 * 1. `hook(lin, x, name)` when it returns a tensor;
 * 2. an `@int21/lora` `LoRALinear`: lora's `linearForward(lin, x, { training })` (its frozen base
 *    through autograd's `frozenLinear`, plus the adapters);
 * 3. a frozen `Linear` with `inputGrad` (quant-kernels' `FloatLinear` / `QuantLinear`, bias included):
 *    autograd's `frozenLinear`, the one op for frozen linears (input gradient only, on the layer's own backend).
 *
 * Anything else throws, naming the layer.
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
  if (!isFrozenLinear(lin))
    throw new Error(
      `trainForward: ${name} is a Linear autograd cannot run (it has no inputGrad(g, rows, dx)): make it with quant-kernels' createFloatLinear / createQuantLinear, wrap it in a LoRALinear, or return its op from a linearOp hook`,
    );
  return frozenLinear(lin, x);
}

// ---------------------------------------------------------------------------------------------
// Ops of the LLaMA-like families (Gemma 2's soft-capping and GeGLU, sliding windows, scaled RoPE).

/** `cap · tanh(x / cap)`; backward `1 − tanh²`. */
const softcapOp: OpDef<number> = {
  name: "softcap",
  forward(ctx, [x], cap) {
    const xv = x.values();
    const out = new Float32Array(xv.length);
    for (let i = 0; i < xv.length; i++) out[i] = cap * Math.tanh(xv[i] / cap);
    ctx.saveBuffer(out.slice(), [out.length]);
    return tensor(out, x.shape);
  },
  backward(ctx, gy, [gx], cap) {
    if (!gx) return;
    const g = gy.values();
    const y = ctx.saved[0].values();
    for (let i = 0; i < g.length; i++) {
      const t = y[i] / cap;
      gx.data[i] += g[i] * (1 - t * t);
    }
  },
};
const applySoftcap = defineOp(softcapOp);

/** Soft-capping `cap · tanh(x / cap)` (Gemma 2's final logits), differentiable. */
export function softcapTensor(x: Tensor, cap: number): Tensor {
  return applySoftcap([x], cap);
}

const GELU_K = Math.sqrt(2 / Math.PI);

/** `gelu_tanh(a) · b` (Gemma's GeGLU gate), saving only a and b. */
const gegluOp: OpDef = {
  name: "geglu",
  forward(ctx, [a, b]) {
    const av = a.values();
    const bv = b.values();
    const out = new Float32Array(av.length);
    for (let i = 0; i < av.length; i++) {
      const x = av[i];
      out[i] = 0.5 * x * (1 + Math.tanh(GELU_K * (x + 0.044715 * x * x * x))) * bv[i];
    }
    ctx.save(a, b);
    return tensor(out, a.shape);
  },
  backward(ctx, gy, [ga, gb]) {
    const g = gy.values();
    const a = ctx.saved[0].values();
    const b = ctx.saved[1].values();
    for (let i = 0; i < g.length; i++) {
      const x = a[i];
      const th = Math.tanh(GELU_K * (x + 0.044715 * x * x * x));
      const gelu = 0.5 * x * (1 + th);
      const d = 0.5 * (1 + th) + 0.5 * x * (1 - th * th) * GELU_K * (1 + 3 * 0.044715 * x * x);
      if (ga) ga.data[i] += g[i] * b[i] * d;
      if (gb) gb.data[i] += g[i] * gelu;
    }
  },
};
const applyGeglu = defineOp(gegluOp);

/** GeGLU gate `gelu_tanh(a) ⊙ b` (same shapes), differentiable. */
export function geglu(a: Tensor, b: Tensor): Tensor {
  if (a.size !== b.size) throw new Error(`trainForward: geglu of ${a.size} and ${b.size} values`);
  return applyGeglu([a, b]);
}

interface RopeTablePlan {
  T: number;
  D: number;
  hs: number;
  cos: Float64Array;
  sin: Float64Array;
}

function rotate(src: Float32Array, dst: Float32Array, p: RopeTablePlan, sign: number): void {
  const { T, D, hs, cos, sin } = p;
  const np = hs / 2;
  const rows = src.length / D;
  for (let r = 0; r < rows; r++) {
    const t = r % T;
    for (let h0 = r * D; h0 < (r + 1) * D; h0 += hs) {
      for (let m = 0; m < np; m++) {
        const i0 = h0 + 2 * m;
        const c = cos[t * np + m];
        const s = sign * sin[t * np + m];
        const x0 = src[i0];
        const x1 = src[i0 + 1];
        dst[i0] = x0 * c - x1 * s;
        dst[i0 + 1] = x0 * s + x1 * c;
      }
    }
  }
}

const ropeTableOp: OpDef<RopeTablePlan> = {
  name: "ropeScaled",
  forward(_ctx, [x], p) {
    const out = new Float32Array(x.size);
    rotate(x.values(), out, p, 1);
    return tensor(out, x.shape);
  },
  backward(_ctx, gy, [gx], p) {
    if (!gx) return;
    const tmp = new Float32Array(gy.size);
    rotate(gy.values(), tmp, p, -1);
    for (let i = 0; i < tmp.length; i++) gx.data[i] += tmp[i];
  },
};
const applyRopeTable = defineOp(ropeTableOp);

/**
 * RoPE (llama2.c's adjacent pairs) with the config's inverse frequencies ({@link ropeInvFreq}, so
 * scaled RoPE too) at positions 0..T−1 of `x` `[..., T, heads·headSize]`, differentiable.
 */
export function ropeScaled(x: Tensor, c: LlamaConfig): Tensor {
  const hs = headSize(c);
  const T = x.shape[x.ndim - 2];
  const D = x.shape[x.ndim - 1];
  const f = ropeInvFreq(c);
  const np = hs / 2;
  const cos = new Float64Array(T * np);
  const sin = new Float64Array(T * np);
  for (let t = 0; t < T; t++) {
    for (let m = 0; m < np; m++) {
      cos[t * np + m] = Math.cos(t * f[m]);
      sin[t * np + m] = Math.sin(t * f[m]);
    }
  }
  return applyRopeTable([x], { T, D, hs, cos, sin });
}

interface WindowAttnPlan {
  B: number;
  T: number;
  H: number;
  Hkv: number;
  hs: number;
  scale: number;
  /** Soft-cap of the scores (0: none). */
  cap: number;
  /** Sliding window (0: full causal). */
  window: number;
}

/**
 * Causal GQA attention with an optional sliding window and score soft-capping, written out plainly
 * (saves the probabilities `[B·H·T·T]`); used only for the layers autograd's fused attention cannot do.
 */
const windowAttentionOp: OpDef<WindowAttnPlan> = {
  name: "windowAttention",
  forward(ctx, [q, k, v], p) {
    const { B, T, H, Hkv, hs, scale: sc, cap, window } = p;
    const qv = q.values();
    const kv = k.values();
    const vv = v.values();
    const Dq = H * hs;
    const Dk = Hkv * hs;
    const group = H / Hkv;
    const P = new Float32Array(B * H * T * T);
    const out = new Float32Array(B * T * Dq);
    for (let b = 0; b < B; b++) {
      for (let h = 0; h < H; h++) {
        const g = Math.floor(h / group);
        for (let t = 0; t < T; t++) {
          const lo = window > 0 ? Math.max(0, t - window + 1) : 0;
          const qo = (b * T + t) * Dq + h * hs;
          const po = ((b * H + h) * T + t) * T;
          let max = Number.NEGATIVE_INFINITY;
          for (let j = lo; j <= t; j++) {
            const ko = (b * T + j) * Dk + g * hs;
            let s = 0;
            for (let i = 0; i < hs; i++) s += qv[qo + i] * kv[ko + i];
            s *= sc;
            if (cap > 0) s = cap * Math.tanh(s / cap);
            P[po + j] = s;
            if (s > max) max = s;
          }
          let sum = 0;
          for (let j = lo; j <= t; j++) {
            const e = Math.exp(P[po + j] - max);
            P[po + j] = e;
            sum += e;
          }
          for (let j = lo; j <= t; j++) P[po + j] /= sum;
          for (let j = lo; j <= t; j++) {
            const pj = P[po + j];
            const vo = (b * T + j) * Dk + g * hs;
            for (let i = 0; i < hs; i++) out[qo + i] += pj * vv[vo + i];
          }
        }
      }
    }
    ctx.save(q, k, v);
    ctx.saveBuffer(P, [P.length]);
    return tensor(out, q.shape);
  },
  backward(ctx, gy, [gq, gk, gv], p) {
    const { B, T, H, Hkv, hs, scale: sc, cap, window } = p;
    const [q, k, v, Pt] = ctx.saved;
    const qv = q.values();
    const kv = k.values();
    const vv = v.values();
    const P = Pt.values();
    const dO = gy.values();
    const Dq = H * hs;
    const Dk = Hkv * hs;
    const group = H / Hkv;
    const dS = new Float64Array(T);
    for (let b = 0; b < B; b++) {
      for (let h = 0; h < H; h++) {
        const g = Math.floor(h / group);
        for (let t = 0; t < T; t++) {
          const lo = window > 0 ? Math.max(0, t - window + 1) : 0;
          const qo = (b * T + t) * Dq + h * hs;
          const po = ((b * H + h) * T + t) * T;
          let dot = 0;
          for (let j = lo; j <= t; j++) {
            const vo = (b * T + j) * Dk + g * hs;
            let dp = 0;
            for (let i = 0; i < hs; i++) dp += dO[qo + i] * vv[vo + i];
            dS[j] = dp;
            dot += dp * P[po + j];
            if (gv) for (let i = 0; i < hs; i++) gv.data[vo + i] += P[po + j] * dO[qo + i];
          }
          for (let j = lo; j <= t; j++) {
            let d = P[po + j] * (dS[j] - dot);
            const ko = (b * T + j) * Dk + g * hs;
            if (cap > 0) {
              let s = 0;
              for (let i = 0; i < hs; i++) s += qv[qo + i] * kv[ko + i];
              const th = Math.tanh((s * sc) / cap);
              d *= 1 - th * th;
            }
            d *= sc;
            if (gq) for (let i = 0; i < hs; i++) gq.data[qo + i] += d * kv[ko + i];
            if (gk) for (let i = 0; i < hs; i++) gk.data[ko + i] += d * qv[qo + i];
          }
        }
      }
    }
  },
};
const applyWindowAttention = defineOp(windowAttentionOp);

/**
 * Causal grouped-query attention with a sliding `window` (0: none) and score soft-capping `cap`
 * (0: none), differentiable: q `[B, T, H·hs]`, k and v `[B, T, Hkv·hs]`.
 */
export function windowAttention(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  opts: { nHeads: number; nKvHeads: number; headSize: number; scale: number; cap: number; window: number },
): Tensor {
  const T = q.shape[q.ndim - 2];
  const B = q.size / (T * opts.nHeads * opts.headSize);
  if (!Number.isInteger(B) || k.size !== B * T * opts.nKvHeads * opts.headSize || v.size !== k.size)
    throw new Error(
      `trainForward: attention shapes q [${q.shape.join(", ")}], k [${k.shape.join(", ")}], v [${v.shape.join(", ")}] do not match the heads`,
    );
  return applyWindowAttention([q, k, v], {
    B,
    T,
    H: opts.nHeads,
    Hkv: opts.nKvHeads,
    hs: opts.headSize,
    scale: opts.scale,
    cap: opts.cap,
    window: opts.window,
  });
}

/**
 * {@link BlockOps} over autograd tensors `[B, T, width]` (positions 0..T−1 of each sequence): frozen
 * norms and biases, projections through {@link applyLinear}, autograd's fused attention where it applies
 * (no soft-cap, no window shorter than T), else {@link windowAttention}.
 */
class TensorOps implements BlockOps<Tensor> {
  constructor(
    readonly config: LlamaConfig,
    private readonly f: FrozenTensors,
    private readonly B: number,
    private readonly T: number,
    private readonly hook: LinearOpHook | undefined,
    private readonly training: boolean | undefined,
  ) {}

  private vector(L: LayerWeights, name: keyof LayerWeights): Tensor {
    const t = this.f.vectors.get(L[name] as Float32Array);
    if (t === undefined) throw new Error(`trainForward: layer vector ${name} is not one of the model's`);
    return t;
  }

  norm(x: Tensor, L: LayerWeights, name: BlockNormName): Tensor {
    return rmsNorm(x, this.vector(L, name), this.config.normEps);
  }

  linear(x: Tensor, L: LayerWeights, name: LinearName, layer: number): Tensor {
    return applyLinear(L[name], x, `layers.${layer}.${name}`, this.hook, this.training);
  }

  bias(y: Tensor, L: LayerWeights, name: BlockBiasName): Tensor {
    return add(y, this.vector(L, name));
  }

  headNorm(t: Tensor, L: LayerWeights, name: BlockHeadNormName, heads: number): Tensor {
    const { B, T } = this;
    const hs = headSize(this.config);
    return reshape(rmsNorm(reshape(t, [B, T, heads, hs]), this.vector(L, name), this.config.normEps), [
      B,
      T,
      heads * hs,
    ]);
  }

  rope(t: Tensor, _heads: number): Tensor {
    const c = this.config;
    return c.ropeScaling ? ropeScaled(t, c) : rope(t, { headSize: headSize(c), theta: c.ropeTheta });
  }

  attention(q: Tensor, k: Tensor, v: Tensor, at: BlockAttention): Tensor {
    const c = this.config;
    if (at.cap === 0 && (at.window === 0 || at.window >= this.T))
      return attention(q, k, v, { nHeads: c.nHeads, nKvHeads: c.nKvHeads, scale: at.scale });
    return windowAttention(q, k, v, {
      nHeads: c.nHeads,
      nKvHeads: c.nKvHeads,
      headSize: headSize(c),
      scale: at.scale,
      cap: at.cap,
      window: at.window,
    });
  }

  gate(a: Tensor, b: Tensor, act: "silu" | "gelu_tanh"): Tensor {
    return act === "gelu_tanh" ? geglu(a, b) : swiglu(a, b);
  }

  residual(x: Tensor, y: Tensor): Tensor {
    return add(x, y);
  }
}

/**
 * The LLaMA forward for training: logits `[B, T, vocabSize]` for B token sequences of length T
 * (positions 0..T−1 each), built from `@int21/autograd` ops so a loss can be back-propagated into
 * whatever is trainable (`@int21/lora` adapters, or what the `linearOp` hook returns).
 * The base weights are frozen: embeddings and norms become frozen parameters, every projection goes
 * through autograd's `frozenLinear` ({@link applyLinear}; input gradient only, for a packed weight through
 * the packed words). The autograd ops run on `opts.backend` (or the one set in autograd).
 * A packed token embedding is never expanded: only the `B·T` rows the tokens select are dequantized,
 * into a constant tensor.
 *
 * ```
 * x = embedding(tokens)          (× embedScale)
 * per layer (checkpointed):  x = llamaBlock(x)           the block inference and calibration run
 * logits = rmsNorm(x)·Wclsᵀ     (soft-capped with finalLogitSoftcap)
 * ```
 * The same numbers as {@link forward} (inference) up to float32 summation order.
 */
export function trainForward(
  weights: LlamaWeights,
  tokens: ArrayLike<number> | readonly (readonly number[])[],
  opts: TrainForwardOptions = {},
): Tensor {
  const { backend } = opts;
  return backend === undefined
    ? trainForwardOn(weights, tokens, opts)
    : withBackend(backend, () => trainForwardOn(weights, tokens, opts));
}

function trainForwardOn(
  weights: LlamaWeights,
  tokens: ArrayLike<number> | readonly (readonly number[])[],
  opts: TrainForwardOptions,
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
  const hook = opts.linearOp;
  let x: Tensor;
  if (f.embedding) {
    x = embedding(f.embedding, ids, [B, T]);
  } else {
    // A packed table is frozen: its gathered, dequantized rows are a constant input (no gradient).
    const rows = allocFloats(ids.length * c.dim); // a BufferPool's when the step runs in one
    embeddingRows(weights, ids, rows);
    x = tensor(rows, [B, T, c.dim], { tag: "activation", name: "embedding rows" });
  }
  if (c.embedScale !== undefined) x = scale(x, Math.fround(c.embedScale));
  const ops = new TensorOps(c, f, B, T, hook, opts.training);
  weights.layers.forEach((L, l) => {
    const block = (xin: Tensor): Tensor => llamaBlock(ops, L, l, xin);
    x = opts.checkpoint === false ? block(x) : checkpoint(block, [x]);
  });
  const logits = applyLinear(
    weights.classifier,
    rmsNorm(x, f.finalNorm, c.normEps),
    "classifier",
    hook,
    opts.training,
  );
  return c.finalLogitSoftcap !== undefined ? softcapTensor(logits, c.finalLogitSoftcap) : logits;
}
