// The one helper that checks an op's backward against central finite differences.
import { backward, noGrad } from "./engine";
import { createRng } from "./random";
import { type Tensor, tidy } from "./tensor";

/** Options of {@link gradCheck}. */
export interface GradCheckOptions {
  /** Finite-difference step (default 1e-2: float32 forwards need a large step). */
  eps?: number;
  /** Absolute tolerance (default 1e-2). */
  atol?: number;
  /** Relative tolerance (default 1e-2). */
  rtol?: number;
  /** Elements probed per input, chosen at random (default 24; all when the input is smaller). */
  maxPerInput?: number;
  /** Seed for the cotangent and the probed elements (default 42). */
  seed?: number;
}

/** One compared gradient entry. */
export interface GradCheckResult {
  /** Number of compared elements. */
  checked: number;
  /** Largest |analytic − numeric| / (atol + rtol·|numeric|) seen (≤ 1 passes). */
  worst: number;
}

/**
 * Compares the backward of `f` with central finite differences for every input that requires grad.
 * The scalar probed is `L = Σ R ⊙ f(inputs)` for a fixed random cotangent `R`, accumulated in float64:
 * ```
 * numeric_i = (L(x + h·e_i) − L(x − h·e_i)) / (2h)      (h the float32-rounded step actually taken)
 * ```
 * Throws an Error listing the mismatches (input, element, analytic, numeric); returns stats otherwise.
 */
export function gradCheck(
  f: (...xs: Tensor[]) => Tensor,
  inputs: readonly Tensor[],
  opts: GradCheckOptions = {},
): GradCheckResult {
  const eps = opts.eps ?? 1e-2;
  const atol = opts.atol ?? 1e-2;
  const rtol = opts.rtol ?? 1e-2;
  const maxPer = opts.maxPerInput ?? 24;
  const rng = createRng(opts.seed ?? 42);
  for (const x of inputs) {
    if (x.node !== null) throw new Error(`autograd: gradCheck: input ${x} must be a leaf tensor`);
    if (x.grad) {
      x.grad.dispose();
      x.grad = null;
    }
  }
  let R: Float32Array | null = null;
  tidy(() => {
    const y = f(...inputs);
    R = new Float32Array(y.size);
    for (let i = 0; i < R.length; i++) R[i] = rng.normal();
    if (y.requiresGrad) backward(y, R);
  });
  const cot = R! as Float32Array;
  const probe = (): number =>
    tidy(() =>
      noGrad(() => {
        const y = f(...inputs).values();
        let s = 0;
        for (let i = 0; i < y.length; i++) s += cot[i] * y[i];
        return s;
      }),
    );
  const failures: string[] = [];
  let checked = 0;
  let worst = 0;
  inputs.forEach((x, xi) => {
    if (!x.requiresGrad) return;
    const analytic = x.grad ? x.grad.values() : new Float32Array(x.size);
    const idx: number[] = [];
    if (x.size <= maxPer) for (let i = 0; i < x.size; i++) idx.push(i);
    else for (let k = 0; k < maxPer; k++) idx.push(rng.int(x.size));
    if (!x.isContiguous()) throw new Error(`autograd: gradCheck: input ${xi} must be contiguous`);
    const d = x.data;
    for (const i of idx) {
      const at = x.offset + i;
      const orig = d[at];
      d[at] = orig + eps;
      const hp = d[at] - orig;
      const lp = probe();
      d[at] = orig - eps;
      const hm = orig - d[at];
      const lm = probe();
      d[at] = orig;
      const numeric = (lp - lm) / (hp + hm);
      const err = Math.abs(analytic[i] - numeric) / (atol + rtol * Math.abs(numeric));
      checked++;
      if (err > worst) worst = err;
      if (!(err <= 1))
        failures.push(
          `input ${xi}${x.name ? ` '${x.name}'` : ""} [${i}]: analytic ${analytic[i]}, numeric ${numeric}`,
        );
    }
    if (x.grad) {
      x.grad.dispose();
      x.grad = null;
    }
  });
  if (failures.length > 0) {
    throw new Error(
      `autograd: gradCheck: ${failures.length} of ${checked} gradients differ:\n${failures.slice(0, 10).join("\n")}`,
    );
  }
  return { checked, worst };
}
