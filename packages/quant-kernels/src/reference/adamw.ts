// The scalar reference of the optional Adam / AdamW kernel: autograd's Adam.step loop, term for term.
import type { AdamWArgs } from "../types";

/** Checks the arrays and hyper-parameters of an {@link AdamWArgs}; throws naming what is wrong. */
export function checkAdamWArgs(a: AdamWArgs): void {
  const n = a.grads.length;
  const o = a.offset ?? 0;
  if (!Number.isInteger(o) || o < 0 || o + n > a.params.length)
    throw new Error(
      `adamw: params holds ${a.params.length} floats, the tensor needs offset ${o} + ${n} gradient values`,
    );
  if (a.m.length < n || a.v.length < n)
    throw new Error(`adamw: m (${a.m.length}) and v (${a.v.length}) must hold the ${n} gradient values`);
  if (!Number.isInteger(a.step) || a.step < 1)
    throw new Error(`adamw: step ${a.step} must be an integer ≥ 1`);
  for (const k of ["lr", "beta1", "beta2", "eps", "weightDecay"] as const) {
    if (!Number.isFinite(a[k])) throw new Error(`adamw: ${k} = ${a[k]} must be finite`);
  }
}

/**
 * {@link AdamWArgs} as plain loops in float64 arithmetic over float32 storage: the same expressions, in the
 * same order, as autograd's `Adam.step`, so the results are bit-identical to it.
 */
export function referenceAdamW(a: AdamWArgs): void {
  checkAdamWArgs(a);
  const { params: w, grads: g, m, v, lr, beta1: b1, beta2: b2, eps, weightDecay: wd, step: t } = a;
  const o = a.offset ?? 0;
  const decoupled = a.decoupled ?? true;
  const c1 = 1 / (1 - b1 ** t);
  const c2 = 1 / (1 - b2 ** t);
  const l2 = decoupled ? 0 : wd;
  const decay = decoupled ? 1 - lr * wd : 1;
  for (let j = 0; j < g.length; j++) {
    const gj = g[j] + l2 * w[o + j];
    m[j] = b1 * m[j] + (1 - b1) * gj;
    v[j] = b2 * v[j] + (1 - b2) * gj * gj;
    w[o + j] = w[o + j] * decay - (lr * (m[j] * c1)) / (Math.sqrt(v[j] * c2) + eps);
  }
}
