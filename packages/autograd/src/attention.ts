// LLaMA attention pieces: fused causal grouped-query attention and rotary position embedding (RoPE).
import {
  type Backend,
  type RopeRowsArgs,
  type TrainAttentionShape,
  referenceRope,
  trainKernels,
} from "@int21/quant-kernels";
import { defineOp, type OpDef } from "./engine";
import { denseOf } from "./linalg";
import { allocFloats, scratch } from "./memory";
import { output } from "./strided";
import { fmtShape, type Tensor } from "./tensor";

/** Options of {@link attention}. */
export interface AttentionOptions {
  /** Query heads H; q's last dimension is `H·headSize`. */
  nHeads: number;
  /** Key/value heads (grouped-query attention: H must be a multiple); default `nHeads`. */
  nKvHeads?: number;
  /** Causal mask: query t (of T) sees keys `j ≤ t + (S − T)`. Default true. */
  causal?: boolean;
  /** Score scale; default `1/sqrt(headSize)`. */
  scale?: number;
}

/** The shape of one attention call: the wasm training kernels' {@link TrainAttentionShape}. */
type AttnPlan = TrainAttentionShape;

/**
 * P = softmax(scale · Q_h K_hᵀ + mask) for one (b, h), written into `P[0 .. T·S)`, with each row's max
 * and 1/Σexp in `stats[so + 2t]`, `stats[so + 2t + 1]`. With `fromStats`, the row statistics are read
 * instead of computed, so backward rebuilds bit for bit the P that forward used.
 */
function softmaxScores(
  p: AttnPlan,
  be: Backend,
  q: [Float32Array, number],
  k: [Float32Array, number],
  b: number,
  h: number,
  P: Float32Array,
  stats: Float32Array,
  so: number,
  fromStats: boolean,
): void {
  const { T, S, H, Hkv, hs, causal, scale } = p;
  const Dq = H * hs;
  const Dk = Hkv * hs;
  const kvh = Math.floor(h / (H / Hkv));
  be.sgemm({
    M: T,
    N: S,
    K: hs,
    A: q[0],
    aOffset: q[1] + b * T * Dq + h * hs,
    lda: Dq,
    B: k[0],
    bOffset: k[1] + b * S * Dk + kvh * hs,
    ldb: Dk,
    transB: true,
    C: P,
    ldc: S,
    alpha: scale,
  });
  const shift = S - T;
  for (let t = 0; t < T; t++) {
    const r = t * S;
    const n = causal ? Math.min(S, t + shift + 1) : S;
    let m: number;
    let inv: number;
    if (fromStats) {
      m = stats[so + 2 * t];
      inv = stats[so + 2 * t + 1];
      for (let j = 0; j < n; j++) P[r + j] = Math.exp(P[r + j] - m);
    } else {
      m = Number.NEGATIVE_INFINITY;
      for (let j = 0; j < n; j++) if (P[r + j] > m) m = P[r + j];
      let sum = 0;
      for (let j = 0; j < n; j++) {
        const e = Math.exp(P[r + j] - m);
        P[r + j] = e;
        sum += e;
      }
      inv = 1 / sum;
      stats[so + 2 * t] = m;
      stats[so + 2 * t + 1] = inv;
    }
    for (let j = 0; j < n; j++) P[r + j] *= inv;
    for (let j = n; j < S; j++) P[r + j] = 0;
  }
}

// Memory: forward keeps q, k, v and two floats per score row (max, 1/Σexp), not the B·H·T·S
// probabilities; backward recomputes each head's P (one more T×S×hs GEMM per head) into a T×S scratch.
// At LLaMA shapes that is 2·T floats per head instead of T·S (seq 512: 256× less).
const attentionOp: OpDef<AttnPlan> = {
  name: "attention",
  forward(ctx, [q, k, v], p) {
    const { B, T, S, H, Hkv, hs } = p;
    const be = ctx.backend;
    const kernels = trainKernels(be);
    if (kernels) {
      // the wasm kernel: only the unmasked scores, no T×S buffer
      const out = allocFloats(B * T * H * hs);
      const stats = allocFloats(B * H * T * 2);
      kernels.attentionForward(p, q.values(), k.values(), v.values(), out, stats);
      if (ctx.recording) {
        ctx.save(q, k, v);
        ctx.saveBuffer(stats, [B, H, T, 2]);
      }
      return output(out, q.shape);
    }
    const Dq = H * hs;
    const Dk = Hkv * hs;
    const group = H / Hkv;
    const qd = denseOf(q);
    const kd = denseOf(k);
    const [vd, vo] = denseOf(v);
    const out = allocFloats(B * T * Dq);
    const stats = allocFloats(B * H * T * 2);
    const Ps = scratch(T * S);
    const P = Ps.data;
    for (let b = 0; b < B; b++) {
      for (let h = 0; h < H; h++) {
        const kvh = Math.floor(h / group);
        softmaxScores(p, be, qd, kd, b, h, P, stats, (b * H + h) * T * 2, false);
        be.sgemm({
          M: T,
          N: hs,
          K: S,
          A: P,
          lda: S,
          B: vd,
          bOffset: vo + b * S * Dk + kvh * hs,
          ldb: Dk,
          C: out,
          cOffset: b * T * Dq + h * hs,
          ldc: Dq,
        });
      }
    }
    Ps.free();
    if (ctx.recording) {
      ctx.save(q, k, v);
      ctx.saveBuffer(stats, [B, H, T, 2]);
    }
    return output(out, q.shape);
  },
  backward(ctx, gy, [gq, gk, gv], p) {
    const { B, T, S, H, Hkv, hs, scale, causal } = p;
    const be = ctx.backend;
    const [q, k, v, statsT] = ctx.saved;
    const kernels = trainKernels(be);
    if (kernels) {
      const d = (t: Tensor | null) => (t ? t.data : null); // gradient buffers are dense, offset 0
      kernels.attentionBackward(
        p,
        q.values(),
        k.values(),
        v.values(),
        statsT.data,
        gy.values(),
        d(gq),
        d(gk),
        d(gv),
      );
      return;
    }
    const Dq = H * hs;
    const Dk = Hkv * hs;
    const group = H / Hkv;
    const qd = denseOf(q);
    const kd = denseOf(k);
    const [vd, vo] = denseOf(v);
    const stats = statsT.data;
    const g = gy.values();
    const Ps = scratch(T * S);
    const P = Ps.data;
    const dPs = scratch(T * S);
    const dP = dPs.data;
    for (let b = 0; b < B; b++) {
      for (let h = 0; h < H; h++) {
        const kvh = Math.floor(h / group);
        const gOff = b * T * Dq + h * hs;
        const kOff = b * S * Dk + kvh * hs;
        softmaxScores(p, be, qd, kd, b, h, P, stats, (b * H + h) * T * 2, true);
        if (gv) {
          // dV[S×hs] += Pᵀ · dO
          be.sgemm({
            M: S,
            N: hs,
            K: T,
            A: P,
            lda: S,
            transA: true,
            B: g,
            bOffset: gOff,
            ldb: Dq,
            C: gv.data,
            cOffset: kOff,
            ldc: Dk,
            beta: 1,
          });
        }
        if (!gq && !gk) continue;
        // dP[T×S] = dO · Vᵀ
        be.sgemm({
          M: T,
          N: S,
          K: hs,
          A: g,
          aOffset: gOff,
          lda: Dq,
          B: vd,
          bOffset: vo + kOff,
          ldb: Dk,
          transB: true,
          C: dP,
          ldc: S,
        });
        // dS = scale · P ⊙ (dP − Σ_j dP⊙P)
        for (let t = 0; t < T; t++) {
          const r = t * S;
          const n = causal ? Math.min(S, t + S - T + 1) : S; // P is 0 past the mask
          let dot = 0;
          for (let j = 0; j < n; j++) dot += dP[r + j] * P[r + j];
          for (let j = 0; j < n; j++) dP[r + j] = scale * P[r + j] * (dP[r + j] - dot);
          for (let j = n; j < S; j++) dP[r + j] = 0;
        }
        if (gq) {
          // dQ[T×hs] += dS · K
          be.sgemm({
            M: T,
            N: hs,
            K: S,
            A: dP,
            lda: S,
            B: kd[0],
            bOffset: kd[1] + kOff,
            ldb: Dk,
            C: gq.data,
            cOffset: gOff,
            ldc: Dq,
            beta: 1,
          });
        }
        if (gk) {
          // dK[S×hs] += dSᵀ · Q
          be.sgemm({
            M: S,
            N: hs,
            K: T,
            A: dP,
            lda: S,
            transA: true,
            B: qd[0],
            bOffset: qd[1] + gOff,
            ldb: Dq,
            C: gk.data,
            cOffset: kOff,
            ldc: Dk,
            beta: 1,
          });
        }
      }
    }
    Ps.free();
    dPs.free();
  },
};
const applyAttention = defineOp(attentionOp);

/**
 * Fused multi-head attention with grouped-query heads and a causal mask: for each batch entry and head h
 * (kv head `⌊h / (H/Hkv)⌋`), `O_h = softmax(scale · Q_h K_hᵀ + mask) · V_h`.
 * `q` is `[..., T, H·hs]`, `k` and `v` are `[..., S, Hkv·hs]` (S ≥ T allows a KV prefix), output
 * `[..., T, H·hs]`. Saves q, k, v and two floats per score row (`B·H·T·2`: the row max and 1/Σexp)
 * for backward, which recomputes each head's probabilities (one more `T×S×hs` GEMM per head) rather
 * than keeping all `B·H·T·S` of them. On a wasm backend both directions run quant-kernels' fused
 * training kernels (`trainKernels(backend).attentionForward/Backward`: only the unmasked scores, no
 * `T×S` buffer, heads over threads); elsewhere the per-head GEMMs above.
 */
export function attention(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions): Tensor {
  const H = opts.nHeads;
  const Hkv = opts.nKvHeads ?? H;
  const bad = (why: string) =>
    new Error(
      `autograd: attention: ${why} (q ${fmtShape(q.shape)}, k ${fmtShape(k.shape)}, v ${fmtShape(v.shape)}, nHeads ${H}, nKvHeads ${Hkv})`,
    );
  if (!Number.isInteger(H) || !Number.isInteger(Hkv) || H <= 0 || Hkv <= 0 || H % Hkv !== 0) {
    throw bad("nHeads must be a positive multiple of nKvHeads");
  }
  if (q.ndim < 2 || k.ndim !== q.ndim || v.ndim !== q.ndim) throw bad("q, k, v need the same rank ≥ 2");
  const lead = q.shape.slice(0, -2);
  if (
    k.shape.slice(0, -2).some((d, i) => d !== lead[i]) ||
    v.shape.slice(0, -2).some((d, i) => d !== lead[i])
  ) {
    throw bad("leading (batch) dimensions differ");
  }
  const T = q.shape[q.ndim - 2];
  const S = k.shape[k.ndim - 2];
  const Dq = q.shape[q.ndim - 1];
  if (Dq % H !== 0) throw bad(`q's last dimension ${Dq} is not divisible by nHeads`);
  const hs = Dq / H;
  if (k.shape[k.ndim - 1] !== Hkv * hs || v.shape[v.ndim - 1] !== Hkv * hs)
    throw bad(`k and v need last dimension nKvHeads·headSize = ${Hkv * hs}`);
  if (v.shape[v.ndim - 2] !== S) throw bad("k and v need the same length");
  const causal = opts.causal ?? true;
  if (causal && S < T) throw bad("causal attention needs key length ≥ query length");
  if (S === 0) throw bad("empty key sequence");
  let B = 1;
  for (const d of lead) B *= d;
  const scale = opts.scale ?? 1 / Math.sqrt(hs);
  return applyAttention([q, k, v], { B, T, S, H, Hkv, hs, causal, scale });
}

/** Options of {@link rope}. */
export interface RopeOptions {
  /** Head size; x's last dimension must be a multiple. Must be even. */
  headSize: number;
  /** Position of each of the T sequence indices (length T, shared by all batch entries), or the first position (start, start+1, ...). Default 0. */
  positions?: ArrayLike<number> | number;
  /** Base; default 10000. */
  theta?: number;
  /**
   * Which elements form a rotated pair within each head: `adjacent` (i, i+1) as llama2.c (default), or
   * `half` (i, i + headSize/2) as Hugging Face `rotate_half`.
   */
  layout?: "adjacent" | "half";
}

interface RopePlan {
  T: number;
  D: number;
  hs: number;
  half: boolean;
  /** cos and sin of every (position, pair), `[T, hs/2]`, computed in float64 and stored as float32. */
  cos: Float32Array;
  sin: Float32Array;
}

interface RopeTable {
  cos: Float32Array;
  sin: Float32Array;
}

const ropeTables = new Map<string, RopeTable>();

/** cos/sin tables for positions `pos`, cached (a few entries) when positions are `start + t`. */
function ropeTable(pos: Float64Array, hs: number, theta: number, key: string | null): RopeTable {
  const hit = key === null ? undefined : ropeTables.get(key);
  if (hit) return hit;
  const T = pos.length;
  const np = hs / 2;
  const cos = new Float32Array(T * np);
  const sin = new Float32Array(T * np);
  for (let m = 0; m < np; m++) {
    const freq = theta ** (-(2 * m) / hs);
    for (let t = 0; t < T; t++) {
      const a = pos[t] * freq;
      cos[t * np + m] = Math.cos(a);
      sin[t * np + m] = Math.sin(a);
    }
  }
  const table = { cos, sin };
  if (key !== null) {
    if (ropeTables.size >= 16) ropeTables.delete(ropeTables.keys().next().value!);
    ropeTables.set(key, table);
  }
  return table;
}

/** quant-kernels' row arguments of plan `p` over `n` elements. */
function ropeRows(p: RopePlan, n: number, sign: 1 | -1, accumulate: boolean): RopeRowsArgs {
  const { T, D, hs, half, cos, sin } = p;
  return { rows: n / D, D, hs, T, half, cos, sin, sign, accumulate };
}

/** Rotates `src` into `dst` (`+=` when `accumulate`): the wasm kernel when `be` has one, else the reference. */
function ropeRun(be: Backend, a: RopeRowsArgs, src: Float32Array, dst: Float32Array): void {
  const kernels = trainKernels(be);
  if (kernels) kernels.rope(a, src, dst);
  else referenceRope(a, src, dst);
}

const ropeOp: OpDef<RopePlan> = {
  name: "rope",
  forward(ctx, [x], p) {
    const out = allocFloats(x.size);
    ropeRun(ctx.backend, ropeRows(p, x.size, 1, false), x.values(), out);
    return output(out, x.shape); // a rotation: backward needs nothing saved
  },
  backward(ctx, gy, [gx], p) {
    // the inverse (transposed) rotation, accumulated straight into the gradient
    ropeRun(ctx.backend, ropeRows(p, gy.size, -1, true), gy.values(), gx!.data);
  },
};
const applyRope = defineOp(ropeOp);

/**
 * Rotary position embedding on `x` `[..., T, nHeads·headSize]`: within each head, pair m (elements
 * `(2m, 2m+1)`, or `(m, m + hs/2)` with `layout: "half"`) at position `pos` is rotated by the angle
 * `pos · theta^(−2m/headSize)`, i.e. freq `theta^(−(i mod hs)/hs)` for the pair's first index i as llama2.c.
 * Both directions run quant-kernels' `trainKernels(backend).rope` on a wasm backend (SIMD) and its scalar
 * oracle `referenceRope` elsewhere, over the same float32 cos/sin tables; backward accumulates the inverse
 * rotation straight into the gradient.
 */
export function rope(x: Tensor, opts: RopeOptions): Tensor {
  const hs = opts.headSize;
  if (x.ndim < 2)
    throw new Error(`autograd: rope: x ${fmtShape(x.shape)} needs shape [..., T, nHeads·headSize]`);
  const D = x.shape[x.ndim - 1];
  const T = x.shape[x.ndim - 2];
  if (!Number.isInteger(hs) || hs <= 0 || hs % 2 !== 0 || D % hs !== 0) {
    throw new Error(
      `autograd: rope: headSize ${hs} must be even and divide the last dimension of ${fmtShape(x.shape)}`,
    );
  }
  const pos = new Float64Array(T);
  const given = opts.positions ?? 0;
  if (typeof given === "number") for (let t = 0; t < T; t++) pos[t] = given + t;
  else {
    if (given.length !== T)
      throw new Error(`autograd: rope: ${given.length} positions for ${T} rows of ${fmtShape(x.shape)}`);
    for (let t = 0; t < T; t++) pos[t] = given[t];
  }
  const theta = opts.theta ?? 10000;
  if (!(theta > 0)) throw new Error(`autograd: rope: theta ${theta} must be > 0`);
  const key = typeof given === "number" ? `${T}:${hs}:${theta}:${given}` : null;
  const table = ropeTable(pos, hs, theta, key);
  return applyRope([x], { T, D, hs, half: opts.layout === "half", ...table });
}

/** The op records of this family (forward/backward pairs), for introspection and tests. */
export const attentionOps = { attentionOp, ropeOp };
