// Quantization-aware LREC (PEQA / EfficientQAT style): the group scales and zeros of the packed student
// become trainable next to the adapter. The codes stay fixed; the weight is dequantized through a
// differentiable op, so the gradient reaches each group's scale and zero.
import {
  add,
  defineOp,
  linear,
  matmul,
  type OpContext,
  parameter,
  scale,
  type Tensor,
  tensor,
} from "@int21/autograd";
import { adapterTensors, LoRALinear } from "@int21/lora";
import { LINEAR_NAMES, type LinearName, type LlamaWeights, type LinearOpHook } from "@int21/model-llama";
import {
  type Backend,
  createQuantLinear,
  type Linear,
  type QuantizedLinear,
  referenceDequantize,
  roundToF16,
} from "@int21/quant-kernels";

/** Attributes of {@link groupDequantize}: the fixed codes and how columns map to groups. */
export interface GroupDequantizeAttrs {
  /** `[N × K]` integer codes as floats. */
  codes: Float32Array;
  N: number;
  K: number;
  /** Groups per row (G). */
  nGroups: number;
  /** Group of each input column, `[K]`. */
  groupOf: Int32Array;
  /** Base scales `s₀` `[N × G]`: the op's scale is `s₀ · exp(u)`. */
  scale0: Float32Array;
  /** Base zeros `z₀` `[N × G]` (code units): the op's zero is `z₀ + ρ·v`. */
  zero0: Float32Array;
  /** ρ, the rate: the scale is `s₀·exp(ρ·u)` and the zero `z₀ + ρ·v` (an optimizer step moves them ρ× as far). Default 1. */
  rate?: number;
}

const groupDequantizeOp = defineOp<GroupDequantizeAttrs>({
  name: "groupDequantize",
  forward(ctx: OpContext, [u, v], a) {
    const { codes, N, K, nGroups: G, groupOf, scale0, zero0 } = a;
    const rho = a.rate ?? 1;
    const uv = u.values();
    const vv = v.values();
    const s = new Float32Array(N * G);
    const z = new Float32Array(N * G);
    for (let i = 0; i < N * G; i++) {
      s[i] = scale0[i] * Math.exp(rho * uv[i]);
      z[i] = zero0[i] + rho * vv[i];
    }
    const w = new Float32Array(N * K);
    for (let n = 0; n < N; n++) {
      const o = n * K;
      const og = n * G;
      for (let k = 0; k < K; k++) {
        const g = og + groupOf[k];
        w[o + k] = s[g] * (codes[o + k] - z[g]);
      }
    }
    ctx.saveBuffer(s, [N * G]);
    ctx.saveBuffer(z, [N * G]);
    return tensor(w, [N, K]);
  },
  backward(ctx, gw, [gu, gv], a) {
    const { codes, N, K, nGroups: G, groupOf } = a;
    const rho = a.rate ?? 1;
    const s = ctx.saved[0].values();
    const z = ctx.saved[1].values();
    const g = gw.values();
    // dW/ds = (c − z), ds/du = s;   dW/dz = −s, dz/dv = 1
    const ds = new Float64Array(N * G);
    const dz = new Float64Array(N * G);
    for (let n = 0; n < N; n++) {
      const o = n * K;
      const og = n * G;
      for (let k = 0; k < K; k++) {
        const gi = og + groupOf[k];
        const gk = g[o + k];
        ds[gi] += gk * (codes[o + k] - z[gi]);
        dz[gi] += gk;
      }
    }
    if (gu) for (let i = 0; i < N * G; i++) gu.data[gu.offset + i] += rho * ds[i] * s[i];
    if (gv) for (let i = 0; i < N * G; i++) gv.data[gv.offset + i] -= rho * dz[i] * s[i];
  },
});

/**
 * The dense weight of a packed affine layer with trainable group parameters, differentiable in them:
 * ```
 * W[n, k] = s₀[n,g]·exp(ρ·u[n,g]) · (c[n, k] − z₀[n,g] − ρ·v[n,g]),   g = groupOf[k]
 * ∂L/∂u[n,g] = ρ·s[n,g] · Σ_{k∈g} ∂L/∂W[n,k]·(c[n,k] − z[n,g]),   ∂L/∂v[n,g] = −ρ·s[n,g] · Σ_{k∈g} ∂L/∂W[n,k]
 * ```
 * `u` and `v` are `[N × G]`; zero `u`, `v` give the layer as packed. The log-scale parameterisation
 * keeps scales positive and makes an Adam step a relative change of the scale.
 */
export function groupDequantize(u: Tensor, v: Tensor, attrs: GroupDequantizeAttrs): Tensor {
  const n = attrs.N * attrs.nGroups;
  if (u.size !== n || v.size !== n)
    throw new Error(
      `lrec: groupDequantize: u and v need N × G = ${attrs.N}×${attrs.nGroups} values, got ${u.size} and ${v.size}`,
    );
  if (attrs.codes.length !== attrs.N * attrs.K || attrs.groupOf.length !== attrs.K)
    throw new Error(
      `lrec: groupDequantize: codes need N × K = ${attrs.N}×${attrs.K} values and groupOf K, got ${attrs.codes.length} and ${attrs.groupOf.length}`,
    );
  return groupDequantizeOp([u, v], attrs);
}

/** The codes of a packed affine layer as floats, and the group of each column. */
export function quantCodes(q: QuantizedLinear): {
  codes: Float32Array;
  groupOf: Int32Array;
  nGroups: number;
} {
  const N = q.outFeatures;
  const K = q.inFeatures;
  const nGroups = q.scales.length / N;
  // dequantizing with scale 1 and zero 0 gives the codes themselves
  const ones = new Float32Array(q.scales.length).fill(1);
  const codes = new Float32Array(N * K);
  referenceDequantize({ ...q, scales: ones, zeros: new Float32Array(q.zeros.length) }, codes);
  const groupOf = new Int32Array(K);
  for (let k = 0; k < K; k++)
    groupOf[k] = q.gIdx ? q.gIdx[k] : q.format.groupSize === -1 ? 0 : Math.floor(k / q.format.groupSize);
  return { codes, groupOf, nGroups };
}

interface ScaleEntry {
  module: string;
  layer: number;
  key: LinearName;
  lin: Linear;
  q: QuantizedLinear;
  attrs: GroupDequantizeAttrs;
  u: Tensor;
  v: Tensor;
}

/** Options of {@link TrainableScales.attach}. */
export interface TrainableScalesOptions {
  /** Train the zero points too (asymmetric formats only). Default true. */
  zeros?: boolean;
  /**
   * ρ: scales are `s₀·exp(ρ·u)`, zeros `z₀ + ρ·v`, so under Adam (steps of about lr in u, v) a step changes a
   * scale by about ρ·lr relatively and a zero by ρ·lr codes. Default 1.
   */
  rate?: number;
}

/**
 * The group scales (and zeros) of every packed block projection of a student, as trainable
 * parameters (`u`: log-scale offsets, `v`: zero offsets, both start at 0). `hook` is the
 * `trainForward` `linearOp` that runs those projections through {@link groupDequantize} (plus their
 * LoRA adapters); `commit(backend)` writes the learned scales and zeros back into new packed layers,
 * rounded to the format's scale dtype, so the saved model is the same format and size as before.
 */
export class TrainableScales {
  private readonly byLinear = new Map<Linear, ScaleEntry>();

  private constructor(
    private readonly student: LlamaWeights,
    readonly entries: readonly ScaleEntry[],
  ) {
    for (const e of entries) this.byLinear.set(e.lin, e);
  }

  /**
   * Makes the scales of `student`'s packed affine projections trainable (attach after the LREC
   * adapter: the hook recognises the layers by identity). Throws on a codebook (`lut`) format.
   */
  static attach(student: LlamaWeights, opts: TrainableScalesOptions = {}): TrainableScales {
    const entries: ScaleEntry[] = [];
    const rate = opts.rate ?? 1;
    if (!(rate > 0 && Number.isFinite(rate)))
      throw new Error(`lrec: TrainableScales: rate must be finite and > 0, got ${rate}`);
    student.layers.forEach((L, layer) => {
      for (const key of Object.keys(LINEAR_NAMES) as LinearName[]) {
        const lin = L[key];
        const base = lin instanceof LoRALinear ? lin.base : lin;
        const q = (base as { q?: QuantizedLinear }).q;
        const module = `model.layers.${layer}.${LINEAR_NAMES[key]}`;
        if (!q) continue; // a float projection: nothing to learn
        const decode = q.format.decode ?? "affine";
        if (decode !== "affine")
          throw new Error(
            `lrec: TrainableScales: ${module} is ${q.format.name} (decode "${decode}"); only affine formats have trainable scales and zeros`,
          );
        const { codes, groupOf, nGroups } = quantCodes(q);
        const n = q.scales.length;
        const trainZeros = (opts.zeros ?? true) && !q.format.symmetric;
        entries.push({
          module,
          layer,
          key,
          lin,
          q,
          attrs: {
            codes,
            N: q.outFeatures,
            K: q.inFeatures,
            nGroups,
            groupOf,
            scale0: q.scales,
            zero0: q.zeros,
            rate,
          },
          u: parameter(new Float32Array(n), [q.outFeatures, nGroups], { name: `${module}.scale_log` }),
          v: parameter(new Float32Array(n), [q.outFeatures, nGroups], {
            name: `${module}.zero_offset`,
            requiresGrad: trainZeros,
          }),
        });
      }
    });
    if (entries.length === 0)
      throw new Error("lrec: TrainableScales: the student has no packed projections to train scales of");
    return new TrainableScales(student, entries);
  }

  /** The trainable tensors, `u` (then `v` where zeros train) per projection in layer order. */
  parameters(): Tensor[] {
    const out: Tensor[] = [];
    for (const e of this.entries) {
      out.push(e.u);
      if (e.v.requiresGrad) out.push(e.v);
    }
    return out;
  }

  /** `trainForward`'s `linearOp`: dense weight from the trainable scales, plus the layer's active adapters. */
  readonly hook: LinearOpHook = (lin, x) => {
    const e = this.byLinear.get(lin);
    if (!e) return undefined;
    let y = linear(x, groupDequantize(e.u, e.v, e.attrs));
    if (lin instanceof LoRALinear) {
      for (const a of lin.adapters) {
        if (!a.active) continue;
        const { loraA, loraB } = adapterTensors(a);
        const u = matmul(matmul(x, loraA, { transB: true }), loraB, { transB: true });
        y = add(y, a.scaling === 1 ? u : scale(u, a.scaling));
      }
    }
    return y;
  };

  /**
   * Writes the learned scales and zeros into new packed layers of the student (the LoRA wrapper keeps
   * its adapters; a bare layer is replaced), rounded as the format stores them (f16 or f32). After
   * this the student runs on its fused kernels again; the trainable tensors are left as they are.
   */
  commit(backend: Backend): void {
    for (const e of this.entries) {
      const { scale0, zero0 } = e.attrs;
      const rho = e.attrs.rate ?? 1;
      const u = e.u.values();
      const v = e.v.values();
      const f16 = e.q.format.scaleDtype === "f16";
      const rnd = (x: number) => (f16 ? roundToF16(x) : Math.fround(x));
      const scales = new Float32Array(scale0.length);
      const zeros = new Float32Array(zero0.length);
      for (let i = 0; i < scales.length; i++) {
        scales[i] = rnd(scale0[i] * Math.exp(rho * u[i]));
        zeros[i] = e.q.format.symmetric ? zero0[i] : rnd(zero0[i] + rho * v[i]);
      }
      const q: QuantizedLinear = { ...e.q, scales, zeros };
      const nl = createQuantLinear({ q, backend });
      if (e.lin instanceof LoRALinear) e.lin.base = nl;
      else this.student.layers[e.layer][e.key] = nl;
    }
  }
}
