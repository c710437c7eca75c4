import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeRng } from "../testing/random";
import { type WasmBackend, createWasmBackend } from "./wasm-backend";
import {
  CE_PARALLEL_ELEMS,
  type CrossEntropyRowsArgs,
  type RopeRowsArgs,
  TRAIN_CE_CUTOFF,
  TRAIN_ROWS_PARALLEL,
  type TrainKernels,
  referenceCrossEntropyRows,
  referenceRmsNorm,
  referenceRmsNormBackward,
  referenceRope,
  trainKernels,
} from "./wasm-train";

let one: WasmBackend;
let two: WasmBackend;
let k1: TrainKernels;
let k2: TrainKernels;

beforeAll(async () => {
  one = await createWasmBackend({ threads: 1 });
  two = await createWasmBackend({ threads: 2 });
  k1 = trainKernels(one)!;
  k2 = trainKernels(two)!;
});
afterAll(() => {
  one.dispose();
  two.dispose();
});

/** Random logits with a spread of `spread` nats (large spreads make most probabilities underflow). */
function ceCase(rows: number, V: number, spread: number, seed: number, ignoreEvery: number) {
  const rng = makeRng(seed);
  const logits = new Float32Array(rows * V);
  for (let i = 0; i < logits.length; i++) logits[i] = spread * (2 * rng() - 1);
  const targets = new Int32Array(rows);
  for (let r = 0; r < rows; r++)
    targets[r] = ignoreEvery > 0 && r % ignoreEvery === 1 ? -100 : Math.floor(rng() * V);
  return { logits, targets };
}

function args(logits: Float32Array, targets: Int32Array, rows: number, V: number, grad: boolean) {
  return {
    logits,
    rows,
    V,
    targets,
    ignoreIndex: -100,
    loss: new Float32Array(rows),
    lse: new Float32Array(rows),
    grad,
  } satisfies CrossEntropyRowsArgs;
}

describe("trainKernels crossEntropyRows", () => {
  it("exists on shared-memory wasm backends only", async () => {
    expect(k1).toBeDefined();
    const single = await createWasmBackend({ threads: 1, sharedMemory: false });
    expect(trainKernels(single)).toBeUndefined();
    single.dispose();
  });

  it("matches the reference (loss, lse, gradient), in or out of wasm memory, 1 or 2 threads", {
    timeout: 60_000,
  }, () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 9 }),
        fc.integer({ min: 1, max: 700 }),
        fc.constantFrom(0.5, 8, 200),
        fc.integer({ min: 0, max: 3 }),
        fc.boolean(),
        fc.integer({ min: 1, max: 1e6 }),
        (rows, V, spread, ignoreEvery, inWasm, seed) => {
          const { logits, targets } = ceCase(rows, V, spread, seed, ignoreEvery);
          const ref = args(logits.slice(), targets, rows, V, true);
          referenceCrossEntropyRows(ref);
          for (const k of [k1, k2]) {
            const buf = inWasm ? k.allocF32(rows * V) : new Float32Array(rows * V);
            buf.set(logits);
            const got = args(buf, targets, rows, V, true);
            k.crossEntropyRows(got);
            let bad = 0;
            for (let r = 0; r < rows; r++) {
              const tol = 2e-6 * Math.max(1, Math.abs(ref.lse[r]));
              if (
                !(Math.abs(got.lse[r] - ref.lse[r]) <= tol && Math.abs(got.loss[r] - ref.loss[r]) <= 2 * tol)
              )
                bad++;
            }
            for (let i = 0; i < rows * V; i++) {
              // the polynomial exp is within a few ulps (and lse may differ in its last float32 ulp); both sides flush below the same cutoff, up to the
              // last ulp of z at the boundary (values there are < 1e-19)
              const d = Math.abs(buf[i] - ref.logits[i]);
              if (
                d > 4e-6 * Math.abs(ref.logits[i]) &&
                Math.min(Math.abs(buf[i]), Math.abs(ref.logits[i])) >= 1e-19
              )
                bad++;
              if (buf[i] !== 0 && Math.abs(buf[i]) < 1.1754944e-38) bad++; // never subnormal
            }
            expect(bad).toBe(0);
            if (inWasm) k.freeF32(buf);
          }
        },
      ),
      { seed: 42, numRuns: 60 },
    );
  });

  it("leaves the logits alone without grad and splits large jobs across threads", () => {
    const rows = 5;
    const V = Math.ceil(CE_PARALLEL_ELEMS / rows) + 3;
    const { logits, targets } = ceCase(rows, V, 30, 7, 2);
    const ref = args(logits.slice(), targets, rows, V, false);
    referenceCrossEntropyRows(ref);
    const buf = k2.allocF32(rows * V);
    buf.set(logits);
    const got = args(buf, targets, rows, V, false);
    k2.crossEntropyRows(got);
    expect(buf).toEqual(logits);
    for (let r = 0; r < rows; r++) expect(got.loss[r]).toBeCloseTo(ref.loss[r], 4);
    expect(got.loss[1]).toBe(0);
    k2.freeF32(buf);
  });

  it("zeroes probabilities below the cutoff exactly", () => {
    const logits = new Float32Array([0, TRAIN_CE_CUTOFF - 1, -1000, 3]);
    const a = args(logits, new Int32Array([0]), 1, 4, true);
    k1.crossEntropyRows(a);
    expect(logits[1]).toBe(0);
    expect(logits[2]).toBe(0);
    expect(logits[0]).toBeCloseTo(1 / (1 + Math.exp(3)) - 1, 6);
  });

  it("rejects bad arguments with a message naming them", () => {
    const x = new Float32Array(6);
    expect(() => k1.crossEntropyRows(args(x, new Int32Array([0, 3]), 2, 3, true))).toThrow(
      /target 3 at row 1 is outside \[0, 3\)/,
    );
    expect(() => k1.crossEntropyRows(args(x, new Int32Array([0, 1]), 2, 4, true))).toThrow(
      /logits hold 6 floats, need rows·V = 8/,
    );
    expect(() => referenceCrossEntropyRows(args(x, new Int32Array([0]), 2, 3, true))).toThrow(
      /1 targets for 2 rows/,
    );
  });
});

function randn(n: number, rng: () => number, scale = 1): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = scale * (2 * rng() - 1);
  return a;
}

/** |got − want| ≤ tol·(1 + |want|) elementwise, with the first offending index in the message. */
function expectClose(got: Float32Array, want: Float32Array, tol: number, what: string): void {
  expect(got.length).toBe(want.length);
  for (let i = 0; i < got.length; i++) {
    if (!(Math.abs(got[i] - want[i]) <= tol * (1 + Math.abs(want[i]))))
      throw new Error(`${what}[${i}]: got ${got[i]}, want ${want[i]}`);
  }
}

describe("trainKernels rmsNorm / rmsNormBackward", () => {
  it("match the scalar reference (property: rows, odd and SIMD widths, 1 and 2 threads)", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 40 }),
        fc.integer({ min: 1, max: 70 }),
        fc.integer({ min: 0, max: 1e6 }),
        fc.boolean(),
        (rows, d, seed, threaded) => {
          const rng = makeRng(seed);
          const x = randn(rows * d, rng, 3);
          const w = randn(d, rng);
          const g = randn(rows * d, rng);
          const k = threaded ? k2 : k1;
          const y0 = new Float32Array(rows * d);
          const inv0 = new Float32Array(rows);
          referenceRmsNorm(rows, d, x, w, 1e-5, y0, inv0);
          const y1 = new Float32Array(rows * d);
          const inv1 = new Float32Array(rows);
          k.rmsNorm(rows, d, x, w, 1e-5, y1, inv1);
          expectClose(y1, y0, 1e-5, "y");
          expectClose(inv1, inv0, 1e-6, "inv");
          const gx0 = randn(rows * d, rng);
          const gw0 = randn(d, rng);
          const gx1 = gx0.slice();
          const gw1 = gw0.slice();
          referenceRmsNormBackward(rows, d, x, w, inv0, g, gx0, gw0);
          k.rmsNormBackward(rows, d, x, w, inv0, g, gx1, gw1);
          expectClose(gx1, gx0, 1e-4, "gx");
          expectClose(gw1, gw0, 1e-4, "gw");
        },
      ),
      { numRuns: 60 },
    );
  });

  it("split across threads above the threshold, in place on wasm-memory buffers", () => {
    const rows = 130;
    const d = Math.ceil(TRAIN_ROWS_PARALLEL / rows) + 3;
    const rng = makeRng(7);
    const x = k2.allocF32(rows * d);
    x.set(randn(rows * d, rng, 2));
    const w = randn(d, rng);
    const y0 = new Float32Array(rows * d);
    const inv0 = new Float32Array(rows);
    referenceRmsNorm(rows, d, x, w, 1e-6, y0, inv0);
    const y1 = k2.allocF32(rows * d);
    k2.rmsNorm(rows, d, x, w, 1e-6, y1, null);
    expectClose(y1, y0, 1e-5, "y");
    const g = randn(rows * d, rng);
    const gw0 = new Float32Array(d);
    const gw1 = new Float32Array(d);
    referenceRmsNormBackward(rows, d, x, w, inv0, g, null, gw0);
    k2.rmsNormBackward(rows, d, x, w, inv0, g, null, gw1);
    expectClose(gw1, gw0, 1e-4, "gw");
    k2.freeF32(x);
    k2.freeF32(y1);
  });

  it("rejects bad arguments with a message naming them", () => {
    const x = new Float32Array(6);
    expect(() => k1.rmsNorm(2, 4, x, new Float32Array(4), 1e-5, new Float32Array(8), null)).toThrow(
      /rmsNorm: x holds 6 floats, needs 8/,
    );
    expect(() => k1.rmsNorm(2, 3, x, new Float32Array(3), -1, new Float32Array(6), null)).toThrow(/eps -1/);
    expect(() => k1.rmsNormBackward(2, 3, x, new Float32Array(3), new Float32Array(1), x, x, null)).toThrow(
      /inv holds 1 floats, needs 2/,
    );
  });
});

describe("trainKernels rope", () => {
  function ropeCase(rows: number, heads: number, hs: number, T: number, half: boolean, seed: number) {
    const rng = makeRng(seed);
    const np = hs / 2;
    const cos = new Float32Array(T * np);
    const sin = new Float32Array(T * np);
    for (let t = 0; t < T; t++)
      for (let m = 0; m < np; m++) {
        const a = t * 10000 ** (-(2 * m) / hs);
        cos[t * np + m] = Math.cos(a);
        sin[t * np + m] = Math.sin(a);
      }
    const args: RopeRowsArgs = { rows, D: heads * hs, hs, T, half, cos, sin, sign: 1, accumulate: false };
    return { args, x: randn(rows * heads * hs, rng, 2), base: randn(rows * heads * hs, rng) };
  }

  it("matches the scalar reference, forward and accumulating inverse (property)", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 24 }),
        fc.integer({ min: 1, max: 3 }),
        fc.integer({ min: 1, max: 20 }).map((h) => 2 * h),
        fc.integer({ min: 1, max: 8 }),
        fc.boolean(),
        fc.boolean(),
        fc.integer({ min: 0, max: 1e6 }),
        (rows, heads, hs, T, half, threaded, seed) => {
          const { args, x, base } = ropeCase(rows, heads, hs, T, half, seed);
          const k = threaded ? k2 : k1;
          const y0 = new Float32Array(x.length);
          const y1 = new Float32Array(x.length);
          referenceRope(args, x, y0);
          k.rope(args, x, y1);
          expectClose(y1, y0, 1e-6, "y");
          const back = { ...args, sign: -1 as const, accumulate: true };
          const d0 = base.slice();
          const d1 = base.slice();
          referenceRope(back, y0, d0);
          k.rope(back, y0, d1);
          expectClose(d1, d0, 1e-6, "dx");
          // the inverse rotation undoes the forward one
          const round = new Float32Array(x.length);
          referenceRope({ ...back, accumulate: false }, y0, round);
          expectClose(round, x, 1e-5, "round trip");
        },
      ),
      { numRuns: 60 },
    );
  });

  it("rejects bad arguments with a message naming them", () => {
    const { args, x } = ropeCase(2, 2, 4, 2, false, 1);
    expect(() => k1.rope({ ...args, hs: 3 }, x, new Float32Array(x.length))).toThrow(
      /head size 3 must be even/,
    );
    expect(() => k1.rope(args, x, new Float32Array(3))).toThrow(/rope: dst holds 3 floats, needs 16/);
    expect(() => k1.rope({ ...args, T: 5 }, x, new Float32Array(x.length))).toThrow(
      /cos holds 4 floats, needs 10/,
    );
  });
});
