// The element- and row-wise training kernels stage operands from outside wasm memory piece by piece
// (TRAIN_STAGE_FLOATS): the same results as one whole call on operands in wasm memory, and an arena of
// one piece instead of the whole tensors.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeRng } from "../testing/random";
import { type WasmBackend, createWasmBackend } from "./wasm-backend";
import { TRAIN_STAGE_FLOATS, type TrainKernels, trainKernels } from "./wasm-train";

let one: WasmBackend;
let two: WasmBackend;

beforeAll(async () => {
  one = await createWasmBackend({ threads: 1 });
  two = await createWasmBackend({ threads: 2 });
});
afterAll(() => {
  one.dispose();
  two.dispose();
});

function random(n: number, seed: number, scale = 2): Float32Array {
  const rng = makeRng(seed);
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = scale * (2 * rng() - 1);
  return a;
}

/** The first index where `a` and `b` differ (bit for bit, NaN included), or -1. */
function firstDiff(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) return 0;
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < ua.length; i++) if (ua[i] !== ub[i]) return i;
  return -1;
}

/** Runs `call` on JS copies of `inputs` (staged in pieces) and on wasm-memory copies (one piece). */
function both(
  k: TrainKernels,
  inputs: Float32Array[],
  call: (xs: Float32Array[]) => void,
): { js: Float32Array[]; wasm: Float32Array[] } {
  const js = inputs.map((a) => a.slice());
  call(js);
  const views = inputs.map((a) => {
    const v = k.allocF32(a.length);
    v.set(a);
    return v;
  });
  call(views);
  const wasm = views.map((v) => v.slice());
  for (const v of views) k.freeF32(v);
  return { js, wasm };
}

describe("trainKernels staging of large operands", () => {
  // more than 2 pieces, not a multiple of a piece
  const d = 96;
  const rows = Math.ceil((2.5 * TRAIN_STAGE_FLOATS) / d);
  const n = rows * d;

  for (const threads of [1, 2]) {
    it(`swiglu / swigluBackward: pieces equal one whole call (${threads} thread(s))`, () => {
      const k = trainKernels(threads === 1 ? one : two)!;
      const [a, b, g] = [random(n, 1, 6), random(n, 2), random(n, 3)];
      const f = both(k, [a, b, new Float32Array(n)], ([x, y, out]) => k.swiglu(n, x, y, out));
      expect(firstDiff(f.js[2], f.wasm[2])).toBe(-1);
      expect(f.js[2].some((v) => v !== 0)).toBe(true);
      const da0 = random(n, 4);
      const bw = both(k, [a, b, g, da0, new Float32Array(n)], ([x, y, gy, da, db]) =>
        k.swigluBackward(n, x, y, gy, da, db),
      );
      expect(firstDiff(bw.js[3], bw.wasm[3])).toBe(-1);
      expect(firstDiff(bw.js[4], bw.wasm[4])).toBe(-1);
      expect(firstDiff(bw.js[3], da0)).not.toBe(-1); // accumulated into
    });

    it(`rmsNorm / rmsNormBackward (no gw): pieces equal one whole call (${threads} thread(s))`, () => {
      const k = trainKernels(threads === 1 ? one : two)!;
      const [x, w, g] = [random(n, 5), random(d, 6), random(n, 7)];
      const f = both(k, [x, w, new Float32Array(n), new Float32Array(rows)], ([xs, ws, y, inv]) =>
        k.rmsNorm(rows, d, xs, ws, 1e-5, y, inv),
      );
      expect(firstDiff(f.js[2], f.wasm[2])).toBe(-1);
      expect(firstDiff(f.js[3], f.wasm[3])).toBe(-1);
      const inv = f.wasm[3];
      const bw = both(k, [x, w, inv, g, random(n, 8)], ([xs, ws, iv, gs, gx]) =>
        k.rmsNormBackward(rows, d, xs, ws, iv, gs, gx, null),
      );
      expect(firstDiff(bw.js[4], bw.wasm[4])).toBe(-1);
    });

    it(`rope: whole sequences per piece equal one whole call (${threads} thread(s))`, () => {
      const k = trainKernels(threads === 1 ? one : two)!;
      const hs = 16;
      const D = 64;
      const T = 1000; // a piece holds 4 sequences of 1000 rows: 3 pieces for 10
      const R = 10 * T;
      const cos = random((T * hs) / 2, 9, 1);
      const sin = random((T * hs) / 2, 10, 1);
      for (const accumulate of [false, true]) {
        const f = both(k, [random(R * D, 11), random(R * D, 12)], ([src, dst]) =>
          k.rope({ rows: R, D, hs, T, half: false, cos, sin, sign: 1, accumulate }, src, dst),
        );
        expect(firstDiff(f.js[1], f.wasm[1])).toBe(-1);
      }
    });
  }

  it("keeps the arena at one piece of each operand", async () => {
    const be = await createWasmBackend({ threads: 1 });
    try {
      const k = trainKernels(be)!;
      const big = 16 * TRAIN_STAGE_FLOATS;
      const [a, b, g] = [random(big, 1), random(big, 2), random(big, 3)];
      k.swigluBackward(big, a, b, g, new Float32Array(big), new Float32Array(big));
      // five whole operands would need 5 · 16 pieces of arena; five pieces (+ a quarter) and the
      // threads' scratch need less than 16
      expect(be.memoryBytes()).toBeLessThan(16 * TRAIN_STAGE_FLOATS * 4);
    } finally {
      be.dispose();
    }
  });
});
