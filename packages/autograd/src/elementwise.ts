// Elementwise primitives: add, mul (numpy broadcasting), scale, exp, log, silu, swiglu; sub/neg are composites.
import { trainKernels } from "@int21/quant-kernels";
import { allocFloats } from "./memory";
import { defineOp, type OpDef } from "./engine";
import {
  accumulateBroadcast,
  broadcastShapes,
  broadcastStrides,
  denseStrides,
  output,
  walkRows,
} from "./strided";
import { fmtShape, shapeSize, type Tensor } from "./tensor";

const ADD = 0;
const MUL = 1;

function binary(kind: number, a: Tensor, b: Tensor, outShape: readonly number[]): Float32Array {
  const n = shapeSize(outShape);
  const out = allocFloats(n);
  const ad = a.data;
  const bd = b.data;
  if (a.size === n && b.size === n && a.isContiguous() && b.isContiguous()) {
    const ao = a.offset;
    const bo = b.offset;
    if (kind === ADD) for (let i = 0; i < n; i++) out[i] = ad[ao + i] + bd[bo + i];
    else for (let i = 0; i < n; i++) out[i] = ad[ao + i] * bd[bo + i];
    return out;
  }
  const nd = outShape.length;
  const last = nd === 0 ? 1 : outShape[nd - 1];
  const sa = broadcastStrides(a, outShape);
  const sb = broadcastStrides(b, outShape);
  const la = nd === 0 ? 0 : sa[nd - 1];
  const lb = nd === 0 ? 0 : sb[nd - 1];
  walkRows(outShape, [denseStrides(outShape), sa, sb], [0, a.offset, b.offset], (base) => {
    let o = base[0];
    let p = base[1];
    let q = base[2];
    if (kind === ADD) for (let j = 0; j < last; j++, p += la, q += lb) out[o++] = ad[p] + bd[q];
    else for (let j = 0; j < last; j++, p += la, q += lb) out[o++] = ad[p] * bd[q];
  });
  return out;
}

const addOp: OpDef = {
  name: "add",
  forward(_ctx, [a, b]) {
    const shape = broadcastShapes("add", a.shape, b.shape);
    return output(binary(ADD, a, b, shape), shape);
  },
  backward(_ctx, gy, [ga, gb]) {
    const g = gy.values();
    if (ga) accumulateBroadcast(ga, g, gy.shape);
    if (gb) accumulateBroadcast(gb, g, gy.shape);
  },
};

const mulOp: OpDef = {
  name: "mul",
  forward(ctx, [a, b]) {
    const shape = broadcastShapes("mul", a.shape, b.shape);
    // d(a·b)/da needs b and vice versa: save only the other operand of each input needing a gradient.
    if (ctx.needsInputGrad[0]) ctx.save(b);
    if (ctx.needsInputGrad[1]) ctx.save(a);
    return output(binary(MUL, a, b, shape), shape);
  },
  backward(ctx, gy, [ga, gb]) {
    let k = 0;
    for (const gx of [ga, gb]) {
      if (!gx) continue;
      const other = ctx.saved[k++];
      if (gx.size === gy.size && other.size === gy.size && other.isContiguous()) {
        // same shape: gx += gy ⊙ other without a temporary
        const g = gy.values();
        const o = other.data;
        const oo = other.offset;
        const d = gx.data;
        for (let i = 0; i < g.length; i++) d[i] += g[i] * o[oo + i];
      } else accumulateBroadcast(gx, binary(MUL, gy, other, gy.shape), gy.shape);
    }
  },
};

/** `a + b` with numpy broadcasting. Output shape is the broadcast shape. */
export function add(a: Tensor, b: Tensor): Tensor {
  return applyAdd([a, b]);
}
const applyAdd = defineOp(addOp);

/** `a ⊙ b` (elementwise product) with numpy broadcasting. */
export function mul(a: Tensor, b: Tensor): Tensor {
  return applyMul([a, b]);
}
const applyMul = defineOp(mulOp);

const scaleOp: OpDef<number> = {
  name: "scale",
  forward(_ctx, [x], s) {
    const v = x.values();
    const out = allocFloats(v.length);
    for (let i = 0; i < v.length; i++) out[i] = v[i] * s;
    return output(out, x.shape);
  },
  backward(_ctx, gy, [gx], s) {
    const g = gy.values();
    const d = gx!.data;
    for (let i = 0; i < g.length; i++) d[i] += s * g[i];
  },
};
const applyScale = defineOp(scaleOp);

/** `s · x` for a number `s`. */
export function scale(x: Tensor, s: number): Tensor {
  if (!Number.isFinite(s)) throw new Error(`autograd: scale: factor ${s} is not finite`);
  return applyScale([x], s);
}

/** `-x` (composite: scale by -1). */
export function neg(x: Tensor): Tensor {
  return scale(x, -1);
}

/** `a - b` with broadcasting (composite: add(a, scale(b, -1))). */
export function sub(a: Tensor, b: Tensor): Tensor {
  return add(a, scale(b, -1));
}

const expOp: OpDef = {
  name: "exp",
  forward(ctx, [x]) {
    const v = x.values();
    const out = allocFloats(v.length);
    for (let i = 0; i < v.length; i++) out[i] = Math.exp(v[i]);
    const y = output(out, x.shape);
    ctx.save(y); // d exp(x) = exp(x)
    return y;
  },
  backward(ctx, gy, [gx]) {
    const g = gy.values();
    const y = ctx.saved[0].values();
    const d = gx!.data;
    for (let i = 0; i < g.length; i++) d[i] += g[i] * y[i];
  },
};
const applyExp = defineOp(expOp);

/** Elementwise `eˣ`. */
export function exp(x: Tensor): Tensor {
  return applyExp([x]);
}

const logOp: OpDef = {
  name: "log",
  forward(ctx, [x]) {
    const v = x.values();
    const out = allocFloats(v.length);
    for (let i = 0; i < v.length; i++) {
      if (!(v[i] > 0)) throw new Error(`autograd: log: input ${x} has a non-positive value ${v[i]} at ${i}`);
      out[i] = Math.log(v[i]);
    }
    ctx.save(x);
    return output(out, x.shape);
  },
  backward(ctx, gy, [gx]) {
    const g = gy.values();
    const x = ctx.saved[0].values();
    const d = gx!.data;
    for (let i = 0; i < g.length; i++) d[i] += g[i] / x[i];
  },
};
const applyLog = defineOp(logOp);

/** Elementwise natural log; throws on a non-positive input instead of returning NaN. */
export function log(x: Tensor): Tensor {
  return applyLog([x]);
}

const siluOp: OpDef = {
  name: "silu",
  forward(ctx, [x]) {
    const v = x.values();
    const out = allocFloats(v.length);
    for (let i = 0; i < v.length; i++) out[i] = v[i] / (1 + Math.exp(-v[i]));
    ctx.save(x);
    return output(out, x.shape);
  },
  backward(ctx, gy, [gx]) {
    // d/dx x·σ(x) = σ(x)·(1 + x·(1 − σ(x)))
    const g = gy.values();
    const x = ctx.saved[0].values();
    const d = gx!.data;
    for (let i = 0; i < g.length; i++) {
      const s = 1 / (1 + Math.exp(-x[i]));
      d[i] += g[i] * s * (1 + x[i] * (1 - s));
    }
  },
};
const applySilu = defineOp(siluOp);

/** SiLU (swish): `x · σ(x)`, as in the LLaMA feed-forward. */
export function silu(x: Tensor): Tensor {
  return applySilu([x]);
}

// SwiGLU keeps only its two inputs for backward; silu(a) and silu(a)·b as separate ops would also
// keep silu(a) (one more [tokens × hidden] buffer per layer, 11.5 MB at seq 512 and hidden 5632).
const swigluOp: OpDef = {
  name: "swiglu",
  forward(ctx, [a, b]) {
    if (a.size !== b.size || a.ndim !== b.ndim || a.shape.some((d, i) => d !== b.shape[i]))
      throw new Error(
        `autograd: swiglu: a ${fmtShape(a.shape)} and b ${fmtShape(b.shape)} must have the same shape`,
      );
    const av = a.values();
    const bv = b.values();
    const out = allocFloats(av.length);
    const kernels = trainKernels(ctx.backend);
    if (kernels) kernels.swiglu(av.length, av, bv, out);
    else for (let i = 0; i < av.length; i++) out[i] = (av[i] / (1 + Math.exp(-av[i]))) * bv[i];
    ctx.save(a, b);
    return output(out, a.shape);
  },
  backward(ctx, gy, [ga, gb]) {
    // d/da silu(a)·b = b·σ(a)·(1 + a·(1 − σ(a))),  d/db = silu(a)
    const g = gy.values();
    const a = ctx.saved[0].values();
    const b = ctx.saved[1].values();
    const kernels = trainKernels(ctx.backend);
    if (kernels) {
      // gradient buffers are dense, offset 0
      kernels.swigluBackward(g.length, a, b, g, ga ? ga.data : null, gb ? gb.data : null);
      return;
    }
    for (let i = 0; i < g.length; i++) {
      const s = 1 / (1 + Math.exp(-a[i]));
      if (ga) ga.data[i] += g[i] * b[i] * s * (1 + a[i] * (1 - s));
      if (gb) gb.data[i] += g[i] * a[i] * s;
    }
  },
};
const applySwiglu = defineOp(swigluOp);

/**
 * SwiGLU gate of the LLaMA feed-forward: `silu(a) ⊙ b` (same shapes), one op that saves only `a` and
 * `b` for backward. On a wasm backend both directions run quant-kernels' `trainKernels(backend).swiglu`
 * / `swigluBackward` (SIMD, over threads).
 * ```
 * out[i] = a[i] · σ(a[i]) · b[i]
 * ```
 */
export function swiglu(a: Tensor, b: Tensor): Tensor {
  return applySwiglu([a, b]);
}

/** The op records of this family (forward/backward pairs), for introspection and tests. */
export const elementwiseOps = { addOp, mulOp, scaleOp, expOp, logOp, siluOp, swigluOp };
