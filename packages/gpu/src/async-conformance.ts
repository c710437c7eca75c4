// Test support: the conformance checks of @int21/quant-kernels/testing for an AsyncBackend. The suite's
// own runner calls kernels synchronously; these checks make the same comparisons (reference backend as
// the oracle, tolerances as data from the suite, magnitudes Σ|terms|) awaiting each kernel.
import { createReferenceBackend, getFormat, type GemmArgs, type QuantizedLinear } from "@int21/quant-kernels";
import { type ToleranceFor, randomUniform, worstViolation } from "@int21/quant-kernels/testing";
import type { AsyncBackend } from "./async-backend";

function expectWithin(
  what: string,
  got: Float32Array,
  want: ArrayLike<number>,
  mag: ArrayLike<number>,
  tol: { abs: number; rel: number },
) {
  const w = worstViolation(got, want, mag, tol);
  if (w.excess > 0) {
    throw new Error(
      `${what}: entry ${w.index} is ${w.got}, expected ${w.want} ± ${w.bound} (abs ${tol.abs}, rel ${tol.rel})`,
    );
  }
}

function denseNT(
  x: Float32Array,
  rows: number,
  W: Float32Array,
  N: number,
  K: number,
  absolute: boolean,
): Float64Array {
  const y = new Float64Array(rows * N);
  for (let r = 0; r < rows; r++)
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) {
        const t = x[r * K + k] * W[n * K + k];
        s += absolute ? Math.abs(t) : t;
      }
      y[r * N + n] = s;
    }
  return y;
}

function denseNN(
  g: Float32Array,
  rows: number,
  W: Float32Array,
  N: number,
  K: number,
  absolute: boolean,
): Float64Array {
  const dx = new Float64Array(rows * K);
  for (let r = 0; r < rows; r++)
    for (let n = 0; n < N; n++)
      for (let k = 0; k < K; k++) {
        const t = g[r * N + n] * W[n * K + k];
        dx[r * K + k] += absolute ? Math.abs(t) : t;
      }
  return dx;
}

/**
 * dequantize, then qmatmul and qmatmulT at each row count, against the reference backend's dequantized
 * weight; and ⟨y, g⟩ = ⟨x, dx⟩. Throws an Error describing the first violation.
 */
export async function checkQuantKernelsAsync(
  b: AsyncBackend,
  q: QuantizedLinear,
  rowsList: readonly number[],
  tolerance: ToleranceFor,
  seed: number,
): Promise<void> {
  const f = getFormat(q.format);
  const N = q.outFeatures;
  const K = q.inFeatures;
  const W = new Float32Array(N * K);
  createReferenceBackend().dequantize(q, W);
  const Wb = new Float32Array(N * K).fill(Number.NaN);
  await b.dequantizeAsync(q, Wb);
  expectWithin(`${f.name} ${N}×${K} dequantize`, Wb, W, W.map(Math.abs), tolerance("dequantize", f));
  for (const rows of rowsList) {
    const x = randomUniform(rows * K, seed + rows);
    const g = randomUniform(rows * N, seed + 1000 + rows);
    const y = new Float32Array(rows * N).fill(Number.NaN);
    const dx = new Float32Array(rows * K).fill(Number.NaN);
    await b.qmatmulAsync(x, rows, q, y);
    await b.qmatmulTAsync(g, rows, q, dx);
    const magY = denseNT(x, rows, W, N, K, true);
    expectWithin(
      `${f.name} ${N}×${K} qmatmul rows=${rows}`,
      y,
      denseNT(x, rows, W, N, K, false),
      magY,
      tolerance("qmatmul", f),
    );
    expectWithin(
      `${f.name} ${N}×${K} qmatmulT rows=${rows}`,
      dx,
      denseNN(g, rows, W, N, K, false),
      denseNN(g, rows, W, N, K, true),
      tolerance("qmatmulT", f),
    );
    let yg = 0;
    let xdx = 0;
    let mag = 0;
    for (let i = 0; i < rows * N; i++) {
      yg += y[i] * g[i];
      mag += magY[i] * Math.abs(g[i]);
    }
    for (let i = 0; i < rows * K; i++) xdx += x[i] * dx[i];
    const t = tolerance("identity", f);
    if (!(Math.abs(yg - xdx) <= t.abs + t.rel * mag)) {
      throw new Error(`${f.name} ${N}×${K} rows=${rows}: ⟨y, g⟩ = ${yg} but ⟨x, dx⟩ = ${xdx}`);
    }
  }
}

/** One sgemm case (same fields as the suite's): the backend against the reference, C outside its window untouched. */
export interface AsyncGemmCase {
  M: number;
  N: number;
  K: number;
  transA: boolean;
  transB: boolean;
  aOffset: number;
  bOffset: number;
  cOffset: number;
  padA: number;
  padB: number;
  padC: number;
  alpha: number;
  beta: number;
  bConst: boolean;
  seed: number;
}

/** Runs one {@link AsyncGemmCase} on `b` and the reference; throws an Error naming the case when they differ. */
export async function checkSgemmCaseAsync(
  b: AsyncBackend,
  c: AsyncGemmCase,
  tolerance: ToleranceFor,
): Promise<void> {
  const ref = createReferenceBackend();
  const [rowsA, colsA] = c.transA ? [c.K, c.M] : [c.M, c.K];
  const [rowsB, colsB] = c.transB ? [c.N, c.K] : [c.K, c.N];
  const lda = colsA + c.padA;
  const ldb = colsB + c.padB;
  const ldc = c.N + c.padC;
  const A = randomUniform(c.aOffset + rowsA * lda + 3, c.seed);
  const B = randomUniform(c.bOffset + rowsB * ldb + 3, c.seed + 1);
  const C0 = randomUniform(c.cOffset + c.M * ldc + 3, c.seed + 2);
  if (c.beta === 0) for (let i = 0; i < C0.length; i += 3) C0[i] = Number.NaN;
  const args = (C: Float32Array, a = A, bb = B): GemmArgs => ({ ...c, A: a, B: bb, C, lda, ldb, ldc });
  const want = C0.slice();
  ref.sgemm(args(want));
  const mag = new Float32Array(C0.length);
  ref.sgemm({ ...args(mag, A.map(Math.abs), B.map(Math.abs)), alpha: Math.abs(c.alpha), beta: 0 });
  if (c.beta !== 0) for (let i = 0; i < mag.length; i++) mag[i] += Math.abs(c.beta * C0[i]);
  const got = C0.slice();
  await b.sgemmAsync(args(got));
  const tol = tolerance("sgemm");
  for (let i = 0; i < got.length; i++) {
    const r = Math.floor((i - c.cOffset) / ldc);
    const inWindow = i >= c.cOffset && r < c.M && i - c.cOffset - r * ldc < c.N;
    if (!inWindow && !Object.is(got[i], C0[i]))
      throw new Error(`sgemm ${JSON.stringify(c)}: wrote C[${i}] outside its window`);
    if (inWindow && !(Math.abs(got[i] - want[i]) <= tol.abs + tol.rel * mag[i])) {
      throw new Error(`sgemm ${JSON.stringify(c)}: C[${i}] = ${got[i]}, expected ${want[i]}`);
    }
  }
}
