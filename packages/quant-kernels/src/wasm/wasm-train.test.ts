import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeRng } from "../testing/random";
import { type WasmBackend, createWasmBackend } from "./wasm-backend";
import {
  CE_PARALLEL_ELEMS,
  type CrossEntropyRowsArgs,
  TRAIN_CE_CUTOFF,
  type TrainKernels,
  referenceCrossEntropyRows,
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
