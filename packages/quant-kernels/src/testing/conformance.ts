// The backend conformance suite: every backend runs the same cases over formats × shapes.
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { FormatRecord } from "../formats/format";
import { FORMATS, getFormat } from "../formats/registry";
import { groupCount } from "../quantized-linear";
import { createReferenceBackend } from "../reference/backend";
import { rtnQuantize } from "../rtn";
import type { Backend, GemmArgs, QuantizedLinear } from "../types";
import { makeRng, randomGIdx, randomUniform, randomWeights } from "./random";
import { type CheckName, FLOAT32_TOLERANCES, type ToleranceFor } from "./tolerances";

/** A fixed conformance shape: a weight `[N×K]` multiplied with 1, 7 and 128 rows. */
export interface ConformanceShape {
  N: number;
  K: number;
}

/** Default shapes: odd N and K, K not a multiple of any group size, K smaller than a group. */
export const CONFORMANCE_SHAPES: readonly ConformanceShape[] = [
  { N: 13, K: 100 },
  { N: 33, K: 160 },
  { N: 7, K: 29 },
  { N: 16, K: 256 },
];

/**
 * Shapes for a ggml block format of `B` weights per block (K must be whole blocks): one block, three
 * blocks (odd row byte counts pad to words), and two blocks with N = 16.
 */
export function blockShapes(B: number): readonly ConformanceShape[] {
  return [
    { N: 13, K: B },
    { N: 7, K: 3 * B },
    { N: 16, K: 2 * B },
  ];
}

/** Row counts every quantized kernel is checked at (1 = the decoding matvec). */
export const CONFORMANCE_ROWS: readonly number[] = [1, 7, 128];

/** Options of {@link runBackendConformance}. */
export interface ConformanceOptions {
  /** Formats to run (names or records); default every registered format. */
  formats?: readonly (string | FormatRecord)[];
  /** Fixed shapes; default {@link CONFORMANCE_SHAPES}. */
  shapes?: readonly ConformanceShape[];
  /** Row counts; default {@link CONFORMANCE_ROWS}. */
  rows?: readonly number[];
  /** The backend's tolerances; default {@link FLOAT32_TOLERANCES}. */
  tolerance?: ToleranceFor;
  /** fast-check seed (default 42) and runs per property (default 12). */
  seed?: number;
  numRuns?: number;
  /** Per-test timeout in ms (default 60 000). */
  timeout?: number;
}

/** Largest violation of `|got − want| ≤ abs + rel·mag` over all entries (≤ 0 means within tolerance). */
export function worstViolation(
  got: Float32Array,
  want: ArrayLike<number>,
  mag: ArrayLike<number>,
  tol: { abs: number; rel: number },
  n = want.length,
): { index: number; excess: number; got: number; want: number; bound: number } {
  let worst = { index: -1, excess: Number.NEGATIVE_INFINITY, got: 0, want: 0, bound: 0 };
  for (let i = 0; i < n; i++) {
    const bound = tol.abs + tol.rel * mag[i];
    const d = Math.abs(got[i] - want[i]);
    const excess = Number.isNaN(d) ? Number.POSITIVE_INFINITY : d - bound;
    if (excess > worst.excess) worst = { index: i, excess, got: got[i], want: want[i], bound };
  }
  return worst;
}

function expectClose(
  what: string,
  got: Float32Array,
  want: ArrayLike<number>,
  mag: ArrayLike<number>,
  tol: { abs: number; rel: number },
  n = want.length,
): void {
  const w = worstViolation(got, want, mag, tol, n);
  if (w.excess > 0) {
    expect.fail(
      `${what}: entry ${w.index} is ${w.got}, expected ${w.want} ± ${w.bound} (tolerance abs ${tol.abs}, rel ${tol.rel})`,
    );
  }
}

const abs = (a: Float32Array): Float32Array => a.map(Math.abs);

/** Float64 oracle products on dense row-major arrays. */
function matmulNT(x: Float32Array, rows: number, W: Float32Array, N: number, K: number): Float64Array {
  const y = new Float64Array(rows * N);
  for (let r = 0; r < rows; r++) {
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += x[r * K + k] * W[n * K + k];
      y[r * N + n] = s;
    }
  }
  return y;
}

function matmulNN(g: Float32Array, rows: number, W: Float32Array, N: number, K: number): Float64Array {
  const dx = new Float64Array(rows * K);
  for (let r = 0; r < rows; r++) {
    for (let n = 0; n < N; n++) {
      const a = g[r * N + n];
      for (let k = 0; k < K; k++) dx[r * K + k] += a * W[n * K + k];
    }
  }
  return dx;
}

/**
 * Checks every quantized kernel of `backend` on `q` against the reference: dequantize (and the
 * format's quantize → dequantize error bound when `source` is the weight `q` was made from by RTN),
 * qmatmul and qmatmulT at each row count against dequantize-then-matmul, and ⟨y, g⟩ = ⟨x, dx⟩.
 */
export function checkQuantKernels(
  backend: Backend,
  q: QuantizedLinear,
  rowsList: readonly number[],
  tolerance: ToleranceFor,
  seed: number,
  source?: Float32Array,
): void {
  const ref = createReferenceBackend();
  const f = getFormat(q.format);
  const N = q.outFeatures;
  const K = q.inFeatures;
  const tol = (c: CheckName) => tolerance(c, f);
  const W = new Float32Array(N * K);
  ref.dequantize(q, W);
  const Wb = new Float32Array(N * K).fill(Number.NaN);
  backend.dequantize(q, Wb);
  expectClose(`${f.name} ${N}×${K} dequantize`, Wb, W, abs(W), tol("dequantize"));
  if (source !== undefined) {
    // quantize → dequantize within the format's bound, group by group (block formats: block by block).
    const block = f.decode === "block";
    const nG = block ? K / f.groupSize : groupCount(f, K);
    const G = f.groupSize === -1 ? K : f.groupSize;
    const lo = new Float64Array(N * nG).fill(Number.POSITIVE_INFINITY);
    const hi = new Float64Array(N * nG).fill(Number.NEGATIVE_INFINITY);
    const gOf = (k: number) => (q.gIdx ? q.gIdx[k] : Math.floor(k / G));
    for (let n = 0; n < N; n++) {
      for (let k = 0; k < K; k++) {
        const p = n * nG + gOf(k);
        lo[p] = Math.min(lo[p], source[n * K + k]);
        hi[p] = Math.max(hi[p], source[n * K + k]);
      }
    }
    for (let n = 0; n < N; n++) {
      for (let k = 0; k < K; k++) {
        const p = n * nG + gOf(k);
        const err = Math.abs(Wb[n * K + k] - source[n * K + k]);
        const bound = f.errorBound(lo[p], hi[p]);
        if (!(err <= bound)) {
          expect.fail(
            `${f.name} ${N}×${K}: |w − ŵ| at (${n}, ${k}) = ${err} exceeds the format bound ${bound}`,
          );
        }
      }
    }
  }
  const absW = abs(W);
  for (const rows of rowsList) {
    const x = randomUniform(rows * K, seed + rows);
    const gr = randomUniform(rows * N, seed + 1000 + rows);
    const y = new Float32Array(rows * N).fill(Number.NaN);
    backend.qmatmul(x, rows, q, y);
    expectClose(
      `${f.name} ${N}×${K} qmatmul rows=${rows}`,
      y,
      matmulNT(x, rows, W, N, K),
      matmulNT(abs(x), rows, absW, N, K),
      tol("qmatmul"),
    );
    const dx = new Float32Array(rows * K).fill(Number.NaN);
    backend.qmatmulT(gr, rows, q, dx);
    expectClose(
      `${f.name} ${N}×${K} qmatmulT rows=${rows}`,
      dx,
      matmulNN(gr, rows, W, N, K),
      matmulNN(abs(gr), rows, absW, N, K),
      tol("qmatmulT"),
    );
    // ⟨y, g⟩ = ⟨x, dx⟩: qmatmulT is the transpose of qmatmul.
    let yg = 0;
    let xdx = 0;
    let mag = 0;
    const magY = matmulNT(abs(x), rows, absW, N, K);
    for (let i = 0; i < rows * N; i++) {
      yg += y[i] * gr[i];
      mag += magY[i] * Math.abs(gr[i]);
    }
    for (let i = 0; i < rows * K; i++) xdx += x[i] * dx[i];
    const t = tol("identity");
    if (!(Math.abs(yg - xdx) <= t.abs + t.rel * mag)) {
      expect.fail(`${f.name} ${N}×${K} rows=${rows}: ⟨y, g⟩ = ${yg} but ⟨x, dx⟩ = ${xdx} (Σ|terms| ${mag})`);
    }
  }
}

/** One random sgemm case for the property (see {@link checkSgemmCase}). */
export interface GemmCase {
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
  seed: number;
}

const gemmCase: fc.Arbitrary<GemmCase> = fc.record({
  M: fc.integer({ min: 0, max: 37 }),
  N: fc.integer({ min: 0, max: 41 }),
  K: fc.integer({ min: 0, max: 70 }),
  transA: fc.boolean(),
  transB: fc.boolean(),
  aOffset: fc.integer({ min: 0, max: 5 }),
  bOffset: fc.integer({ min: 0, max: 5 }),
  cOffset: fc.integer({ min: 0, max: 5 }),
  padA: fc.integer({ min: 0, max: 3 }),
  padB: fc.integer({ min: 0, max: 3 }),
  padC: fc.integer({ min: 0, max: 3 }),
  alpha: fc.constantFrom(1, -1, 0.5, 2.25, 0),
  beta: fc.constantFrom(0, 1, -0.5, 2),
  seed: fc.integer({ min: 0, max: 1e9 }),
});

/** Runs one sgemm case on `backend` and the reference; fails with the case when they differ. */
export function checkSgemmCase(backend: Backend, c: GemmCase, tolerance: ToleranceFor): void {
  const ref = createReferenceBackend();
  const rowsA = c.transA ? c.K : c.M;
  const colsA = c.transA ? c.M : c.K;
  const rowsB = c.transB ? c.N : c.K;
  const colsB = c.transB ? c.K : c.N;
  const lda = colsA + c.padA;
  const ldb = colsB + c.padB;
  const ldc = c.N + c.padC;
  const A = randomUniform(c.aOffset + rowsA * lda + 3, c.seed);
  const B = randomUniform(c.bOffset + rowsB * ldb + 3, c.seed + 1);
  const C0 = randomUniform(c.cOffset + c.M * ldc + 3, c.seed + 2);
  if (c.beta === 0) for (let i = 0; i < C0.length; i += 3) C0[i] = Number.NaN; // beta 0 must ignore C
  const args = (C: Float32Array, a = A, b = B): GemmArgs => ({ ...c, A: a, B: b, C, lda, ldb, ldc });
  const want = C0.slice();
  ref.sgemm(args(want));
  const mag = C0.map(Math.abs);
  if (c.beta === 0) mag.fill(0);
  else for (let i = 0; i < mag.length; i++) mag[i] *= Math.abs(c.beta);
  const magProd = new Float32Array(mag.length);
  ref.sgemm({ ...args(magProd, abs(A), abs(B)), alpha: Math.abs(c.alpha), beta: 0 });
  for (let i = 0; i < mag.length; i++) mag[i] += magProd[i];
  const got = C0.slice();
  backend.sgemm(args(got));
  // Entries outside the C window must be untouched (NaN stays NaN: compare bit patterns).
  const inWindow = (i: number) => {
    const r = Math.floor((i - c.cOffset) / ldc);
    const col = i - c.cOffset - r * ldc;
    return i >= c.cOffset && r < c.M && col < c.N;
  };
  for (let i = 0; i < got.length; i++) {
    if (!inWindow(i) && !Object.is(got[i], C0[i])) {
      expect.fail(`sgemm ${JSON.stringify(c)}: wrote C[${i}] outside the ${c.M}×${c.N} window (ldc ${ldc})`);
    }
    if (inWindow(i)) {
      const bound = tolerance("sgemm").abs + tolerance("sgemm").rel * mag[i];
      if (!(Math.abs(got[i] - want[i]) <= bound)) {
        expect.fail(`sgemm ${JSON.stringify(c)}: C[${i}] = ${got[i]}, expected ${want[i]} ± ${bound}`);
      }
    }
  }
}

/**
 * Registers the conformance suite (vitest `describe` / `it`) for a backend:
 * - sgemm vs the reference over random shapes, transposes, offsets, leading dimensions, alpha, beta
 *   (fast-check), including M = 1, beta = 0 over NaN, and untouched memory outside C;
 * - for each format × shape × rows 1/7/128 (ggml block formats: {@link blockShapes}, K whole blocks, no
 *   act-order): dequantize, the quantize → dequantize bound, qmatmul and
 *   qmatmulT vs dequantize-then-matmul, ⟨y, g⟩ = ⟨x, dx⟩; act-order `gIdx`; a fast-check property over
 *   random shapes;
 * - clear errors on short buffers.
 *
 * Usage in a backend's test file (import it from the package's `/testing` subpath):
 * ```ts
 * runBackendConformance("wasm", () => createWasmBackend());
 * ```
 */
export function runBackendConformance(
  name: string,
  makeBackend: () => Backend | Promise<Backend>,
  opts: ConformanceOptions = {},
): void {
  const formats = (opts.formats ?? FORMATS).map((f) => getFormat(typeof f === "string" ? f : f.id));
  const shapes = opts.shapes ?? CONFORMANCE_SHAPES;
  const rowsList = opts.rows ?? CONFORMANCE_ROWS;
  const tolerance = opts.tolerance ?? FLOAT32_TOLERANCES;
  const seed = opts.seed ?? 42;
  const numRuns = opts.numRuns ?? 12;
  const timeout = opts.timeout ?? 60_000;

  describe(`quant-kernels conformance: ${name}`, () => {
    let backend: Backend;
    beforeAll(async () => {
      backend = await makeBackend();
    });
    afterAll(() => backend?.dispose());

    describe("sgemm", () => {
      it(
        "matches the reference over shapes, transposes, offsets, leading dimensions, alpha and beta",
        () => {
          fc.assert(
            fc.property(gemmCase, (c) => checkSgemmCase(backend, c, tolerance)),
            { seed, numRuns: numRuns * 10 },
          );
        },
        timeout,
      );
      it(
        "matvec (M = 1) with the weight layout (transB) at K = 1000",
        () => {
          const base = {
            M: 1,
            N: 67,
            K: 1000,
            transA: false,
            transB: true,
            aOffset: 0,
            bOffset: 0,
            cOffset: 0,
          };
          checkSgemmCase(backend, { ...base, padA: 0, padB: 0, padC: 0, alpha: 1, beta: 0, seed }, tolerance);
        },
        timeout,
      );
      it("throws on a C that is too short", () => {
        const A = new Float32Array(6);
        const B = new Float32Array(6);
        expect(() => backend.sgemm({ M: 2, N: 2, K: 3, A, B, C: new Float32Array(3), transB: true })).toThrow(
          /\bC\b/,
        );
      });
    });

    for (const f of formats) {
      const block = f.decode === "block";
      // Block formats hold whole blocks only: K a multiple of the block, no act-order.
      const fShapes = block
        ? [...blockShapes(f.groupSize), ...(opts.shapes ?? []).filter((c) => c.K % f.groupSize === 0)]
        : shapes;
      describe(f.name, () => {
        for (const { N, K } of fShapes) {
          it(
            `${N}×${K}, rows ${rowsList.join("/")}: dequantize, error bound, qmatmul, qmatmulT, ⟨y,g⟩ = ⟨x,dx⟩`,
            () => {
              const W = randomWeights(N * K, seed + N * 7919 + K);
              const q = rtnQuantize(W, N, K, f);
              checkQuantKernels(backend, q, rowsList, tolerance, seed, W);
            },
            timeout,
          );
        }
        if (f.groupSize !== -1 && !block) {
          it(
            "act-order gIdx (random column → group assignment)",
            () => {
              const { N, K } = { N: 11, K: 3 * f.groupSize + 5 };
              const W = randomWeights(N * K, seed + 17);
              const gIdx = randomGIdx(K, f.groupSize, seed + 3);
              const q = rtnQuantize(W, N, K, f, { gIdx });
              checkQuantKernels(backend, q, [1, 7], tolerance, seed, W);
            },
            timeout,
          );
        }
        it(
          "property: random shapes and row counts",
          () => {
            fc.assert(
              fc.property(
                fc.integer({ min: 1, max: 24 }),
                fc.integer({ min: 1, max: 300 }),
                fc.integer({ min: 1, max: 9 }),
                fc.integer({ min: 0, max: 1e9 }),
                fc.boolean(),
                (N, K0, rows, s, actOrder) => {
                  // Block formats: 1–4 whole blocks (256-weight blocks: 1–2).
                  const K = block ? f.groupSize * (1 + (K0 % (f.groupSize === 256 ? 2 : 4))) : K0;
                  const W = randomWeights(N * K, s, 0.05 + makeRng(s)());
                  const gIdx =
                    actOrder && f.groupSize !== -1 && !block ? randomGIdx(K, f.groupSize, s) : undefined;
                  const q = rtnQuantize(W, N, K, f, { gIdx });
                  checkQuantKernels(backend, q, [rows], tolerance, s, W);
                },
              ),
              { seed, numRuns },
            );
          },
          timeout,
        );
      });
    }

    describe("errors", () => {
      const f = formats.find((g) => g.decode !== "block") ?? getFormat("int4-g128-asym-f16");
      const q = rtnQuantize(randomWeights(5 * 40, 1), 5, 40, f);
      it("qmatmul throws on a short y or x", () => {
        expect(() => backend.qmatmul(new Float32Array(2 * 40), 2, q, new Float32Array(9))).toThrow(/\by\b/);
        expect(() => backend.qmatmul(new Float32Array(39), 1, q, new Float32Array(5))).toThrow(/\bx\b/);
      });
      it("qmatmulT throws on a short dx or g", () => {
        expect(() => backend.qmatmulT(new Float32Array(10), 2, q, new Float32Array(79))).toThrow(/\bdx\b/);
        expect(() => backend.qmatmulT(new Float32Array(4), 1, q, new Float32Array(40))).toThrow(/\bg\b/);
      });
      it("dequantize throws on a short out", () => {
        expect(() => backend.dequantize(q, new Float32Array(199))).toThrow(/\bout\b/);
      });
    });
  });
}
