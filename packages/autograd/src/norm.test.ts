import { trainKernels } from "@int21/quant-kernels";
import { type WasmBackend, createWasmBackend } from "@int21/quant-kernels/wasm";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { withBackend } from "./backend";
import { gradCheck } from "./gradcheck";
import { logSoftmax, rmsNorm, softmax } from "./norm";
import { backward } from "./engine";
import { tensor } from "./tensor";
import { expectClose, FC, leaf, useReferenceBackend } from "./test-utils";

useReferenceBackend();

const rowsArb = fc.tuple(
  fc.array(fc.integer({ min: 1, max: 3 }), { maxLength: 2 }),
  fc.integer({ min: 1, max: 9 }),
  fc.integer({ min: 1, max: 999 }),
);

function refRows(x: Float32Array, d: number, f: (row: number[]) => number[]): number[] {
  const out: number[] = [];
  for (let o = 0; o < x.length; o += d) out.push(...f(Array.from(x.subarray(o, o + d))));
  return out;
}

describe("rmsNorm", () => {
  it("forward y = x / sqrt(mean(x²) + eps) · w; backward (x and w) vs finite differences", () => {
    fc.assert(
      fc.property(rowsArb, ([lead, d, seed]) => {
        const x = leaf([...lead, d], seed);
        const w = leaf([d], seed + 1);
        const wv = w.values();
        const ref = refRows(x.values(), d, (r) => {
          const s = 1 / Math.sqrt(r.reduce((a, v) => a + v * v, 0) / d + 1e-5);
          return r.map((v, j) => v * s * wv[j]);
        });
        expectClose(rmsNorm(x, w).toArray(), ref, 1e-5, 1e-4);
        gradCheck((a, b) => rmsNorm(a, b), [x, w]);
        gradCheck((a) => rmsNorm(a, w, 0.1), [x]);
      }),
      FC,
    );
    expect(() => rmsNorm(leaf([2, 4], 1), leaf([3], 2))).toThrow(
      /rmsNorm: weight .*\[3\] must be \[4\] for x \[2, 4\]/,
    );
  });
});

describe("rmsNorm on the wasm backend (train kernels)", () => {
  let wasm: WasmBackend;
  beforeAll(async () => {
    wasm = await createWasmBackend({ threads: 2 });
  });
  afterAll(() => wasm.dispose());

  it("matches the reference backend's op (output, x and w gradients) and finite differences", () => {
    expect(trainKernels(wasm)).toBeDefined();
    fc.assert(
      fc.property(rowsArb, fc.integer({ min: 1, max: 80 }), ([lead, , seed], d) => {
        const run = () => {
          const x = leaf([...lead, d], seed, { std: 2 });
          const w = leaf([d], seed + 1);
          const y = rmsNorm(x, w);
          const r = leaf(y.shape, seed + 2, { grad: false });
          backward(y, r.values());
          return { y: y.toArray(), gx: x.grad!.toArray(), gw: w.grad!.toArray() };
        };
        const want = run();
        const got = withBackend(wasm, run);
        expectClose(got.y, want.y, 1e-5, 1e-4);
        expectClose(got.gx, want.gx, 1e-4, 1e-3);
        expectClose(got.gw, want.gw, 1e-4, 1e-3);
        withBackend(wasm, () => {
          const x = leaf([...lead, d], seed);
          const w = leaf([d], seed + 1);
          gradCheck((a, b) => rmsNorm(a, b), [x, w]);
        });
      }),
      FC,
    );
  });

  it("splits large row sets across threads with the same result", () => {
    const run = () => {
      const x = leaf([300, 130], 3);
      const w = leaf([130], 4);
      const y = rmsNorm(x, w);
      backward(y, leaf(y.shape, 5, { grad: false }).values());
      return { y: y.toArray(), gx: x.grad!.toArray(), gw: w.grad!.toArray() };
    };
    const want = run();
    const got = withBackend(wasm, run);
    expectClose(got.y, want.y, 1e-5, 1e-4);
    expectClose(got.gx, want.gx, 1e-4, 1e-3);
    expectClose(got.gw, want.gw, 1e-4, 1e-3);
  });
});

describe("softmax / logSoftmax", () => {
  it("forward vs float64 reference; backward vs finite differences", () => {
    fc.assert(
      fc.property(rowsArb, ([lead, d, seed]) => {
        const x = leaf([...lead, d], seed, { std: 3 });
        const sm = (r: number[]) => {
          const m = Math.max(...r);
          const e = r.map((v) => Math.exp(v - m));
          const s = e.reduce((a, b) => a + b, 0);
          return e.map((v) => v / s);
        };
        expectClose(softmax(x).toArray(), refRows(x.values(), d, sm), 1e-6, 1e-5);
        expectClose(
          logSoftmax(x).toArray(),
          refRows(x.values(), d, (r) => sm(r).map(Math.log)),
          1e-5,
          1e-5,
        );
        const w = leaf(x.shape, seed + 3, { grad: false });
        gradCheck((a) => softmax(a), [x]);
        gradCheck((a) => logSoftmax(a), [x]);
        expect(w.size).toBe(x.size);
      }),
      FC,
    );
  });

  it("is stable for huge logits (no overflow, no NaN)", () => {
    const y = softmax(tensor([1000, 1001, 999], [1, 3]));
    expectClose(y.toArray(), [0.24472847, 0.66524096, 0.09003057], 1e-6);
    const l = logSoftmax(tensor([-1e4, 1e4], [1, 2]));
    expect(l.toArray()).toEqual([-2e4, 0]);
  });
});
