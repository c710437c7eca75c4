import { trainKernels } from "@int21/quant-kernels";
import { createWasmBackend } from "@int21/quant-kernels/wasm";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { withBackend } from "./backend";
import { backward } from "./engine";
import { add, exp, log, mul, neg, scale, silu, sub, swiglu } from "./elementwise";
import { gradCheck } from "./gradcheck";
import { sum } from "./reduce";
import { broadcastShapes } from "./strided";
import { shapeSize, tensor } from "./tensor";
import { broadcastIndex, expectClose, FC, leaf, unravel, useReferenceBackend } from "./test-utils";
import { transpose } from "./view";

useReferenceBackend();

/** An output shape and two operand shapes that broadcast to it. */
const broadcastPair = fc
  .array(fc.integer({ min: 1, max: 4 }), { minLength: 1, maxLength: 3 })
  .chain((out) =>
    fc.tuple(
      fc.constant(out),
      fc.array(fc.boolean(), { minLength: out.length, maxLength: out.length }),
      fc.integer({ min: 0, max: out.length - 1 }),
      fc.integer({ min: 1, max: 1000 }),
    ),
  )
  .map(([out, ones, drop, seed]) => {
    const b = out.map((d, i) => (ones[i] ? 1 : d)).slice(drop);
    return { a: out, b, seed };
  });

function refBinary(
  f: (x: number, y: number) => number,
  a: Float32Array,
  as: number[],
  b: Float32Array,
  bs: number[],
) {
  const out = broadcastShapes("ref", as, bs);
  const r = new Float64Array(shapeSize(out));
  for (let i = 0; i < r.length; i++) {
    const idx = unravel(i, out);
    r[i] = f(a[broadcastIndex(idx, as)], b[broadcastIndex(idx, bs)]);
  }
  return r;
}

describe("add / mul (broadcasting)", () => {
  it("forward matches a plain broadcast loop and backward matches finite differences (both orders)", () => {
    fc.assert(
      fc.property(broadcastPair, ({ a: as, b: bs, seed }) => {
        for (const [sa, sb] of [
          [as, bs],
          [bs, as],
        ]) {
          const a = leaf(sa, seed);
          const b = leaf(sb, seed + 1);
          expectClose(
            add(a, b).toArray(),
            refBinary((x, y) => x + y, a.values(), sa, b.values(), sb),
          );
          expectClose(
            mul(a, b).toArray(),
            refBinary((x, y) => x * y, a.values(), sa, b.values(), sb),
          );
          gradCheck(add, [a, b]);
          gradCheck(mul, [a, b]);
          gradCheck(sub, [a, b]);
        }
      }),
      FC,
    );
  });

  it("reads strided (transposed) operands", () => {
    const a = leaf([3, 4], 1);
    const b = leaf([4, 3], 2);
    const y = add(a, transpose(b));
    const ref = new Float64Array(12);
    for (let i = 0; i < 3; i++) for (let j = 0; j < 4; j++) ref[i * 4 + j] = a.get(i, j) + b.get(j, i);
    expectClose(y.toArray(), ref);
    gradCheck((x, z) => mul(x, transpose(z)), [a, b]);
  });

  it("rejects shapes that do not broadcast, naming both", () => {
    expect(() => add(leaf([2, 3], 1), leaf([4], 2))).toThrow(/add: shapes \[2, 3\] and \[4\]/);
    expect(() => mul(leaf([2, 3], 1), leaf([3, 2], 2))).toThrow(/\[2, 3\] and \[3, 2\]/);
  });
});

describe("unary ops", () => {
  const shapes = fc.tuple(
    fc.array(fc.integer({ min: 1, max: 5 }), { minLength: 1, maxLength: 3 }),
    fc.integer({ min: 1, max: 999 }),
  );
  const cases: [
    string,
    (t: ReturnType<typeof leaf>) => ReturnType<typeof leaf>,
    (x: number) => number,
    number,
  ][] = [
    ["scale", (t) => scale(t, -2.5), (x) => -2.5 * x, 0],
    ["neg", neg, (x) => -x, 0],
    ["exp", exp, Math.exp, 0],
    ["log", log, Math.log, 3],
    ["silu", silu, (x) => x / (1 + Math.exp(-x)), 0],
  ];
  for (const [name, op, ref, offset] of cases) {
    it(`${name}: forward and finite-difference backward`, () => {
      fc.assert(
        fc.property(shapes, ([shape, seed]) => {
          const x = leaf(shape, seed, { offset, std: offset ? 0.5 : 1 });
          expectClose(op(x).toArray(), Array.from(x.values(), ref));
          gradCheck(op, [x]);
        }),
        FC,
      );
    });
  }

  it("swiglu: equals mul(silu(a), b), finite-difference backward, and saves only its inputs", () => {
    fc.assert(
      fc.property(shapes, ([shape, seed]) => {
        const a = leaf(shape, seed);
        const b = leaf(shape, seed + 7);
        expectClose(swiglu(a, b).toArray(), mul(silu(a), b).toArray());
        gradCheck(swiglu, [a, b]);
      }),
      FC,
    );
    expect(() => swiglu(leaf([2, 3], 1), leaf([3, 2], 2))).toThrow(/swiglu: a \[2, 3\] and b \[3, 2\]/);
  });

  it("swiglu on the wasm backend (SIMD kernel) matches the reference op, values and gradients, 1–2 threads", async () => {
    const backends = [await createWasmBackend({ threads: 1 }), await createWasmBackend({ threads: 2 })];
    try {
      expect(trainKernels(backends[0])).toBeDefined();
      const run = (n: number, seed: number, spread: number) => {
        const a = leaf([n], seed, { std: spread });
        const b = leaf([n], seed + 1);
        const w = leaf([n], seed + 2, { grad: false });
        const y = swiglu(a, b);
        const out = y.toArray();
        backward(sum(mul(y, w)));
        return [out, a.grad!.toArray(), b.grad!.toArray()];
      };
      fc.assert(
        fc.property(
          fc.integer({ min: 0, max: 70_000 }),
          fc.constantFrom(0.5, 4, 60),
          fc.integer({ min: 1, max: 999 }),
          (n, spread, seed) => {
            const want = run(n, seed, spread);
            for (const be of backends) {
              const got = withBackend(be, () => run(n, seed, spread));
              for (let i = 0; i < 3; i++) expectClose(got[i], want[i], 1e-6, 2e-6);
            }
          },
        ),
        { ...FC, numRuns: 8 },
      );
      withBackend(backends[0], () => gradCheck(swiglu, [leaf([3, 5], 4), leaf([3, 5], 5)]));
    } finally {
      for (const be of backends) be.dispose();
    }
  });

  it("log of a non-positive value throws instead of returning NaN", () => {
    expect(() => log(tensor([1, 0, 2]))).toThrow(/log: .*non-positive value 0 at 1/);
  });

  it("scale rejects a non-finite factor", () => {
    expect(() => scale(tensor([1]), Number.NaN)).toThrow(/scale: factor NaN/);
  });
});
