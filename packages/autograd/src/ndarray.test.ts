import fc from "fast-check";
import ndarray from "ndarray";
import { describe, expect, it } from "vitest";
import { mul } from "./elementwise";
import { backward } from "./engine";
import { matmul } from "./linalg";
import { fromNdarray, toNdarray } from "./ndarray";
import { createRng } from "./random";
import { sum } from "./reduce";
import { Tensor, tensor, tidy } from "./tensor";
import { useReferenceBackend } from "./test-utils";
import { transpose } from "./view";

useReferenceBackend();

const LAYOUTS = ["dense", "offset", "transposed", "stepped", "reversed", "broadcast", "float64"] as const;
type Layout = (typeof LAYOUTS)[number];

/** The dense `[R × C]` matrix `m` as a view of the given layout (same element values, other storage). */
function view(m: Float32Array, R: number, C: number, layout: Layout) {
  switch (layout) {
    case "dense":
      return ndarray(m.slice(), [R, C]);
    case "offset": {
      const d = new Float32Array(5 + R * C);
      d.set(m, 5);
      return ndarray(d, [R, C], [C, 1], 5);
    }
    case "transposed": {
      const t = new Float32Array(R * C);
      for (let r = 0; r < R; r++) for (let c = 0; c < C; c++) t[c * R + r] = m[r * C + c];
      return ndarray(t, [C, R]).transpose(1, 0);
    }
    case "stepped": {
      const d = new Float32Array(R * C * 3);
      for (let i = 0; i < R * C; i++) d[3 * i] = m[i];
      return ndarray(d, [R, 3 * C]).step(1, 3);
    }
    case "reversed": {
      const d = new Float32Array(R * C);
      for (let i = 0; i < R * C; i++) d[R * C - 1 - i] = m[i];
      return ndarray(d, [R, C]).step(-1, -1);
    }
    case "broadcast": {
      // every row equal to the first: stride 0 along the rows
      for (let r = 1; r < R; r++) m.copyWithin(r * C, 0, C);
      return ndarray(m.slice(0, C), [R, C], [0, 1], 0);
    }
    case "float64":
      return ndarray(Float64Array.from(m), [R, C]);
  }
}

function randomMatrix(n: number, seed: number): Float32Array {
  const rng = createRng(seed);
  return Float32Array.from({ length: n }, () => rng.normal());
}

describe("ndarray views in and out of tensors", () => {
  it("fromNdarray: every layout reads the same elements; matmul and its gradients match the plain arrays", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 6 }),
        fc.integer({ min: 1, max: 6 }),
        fc.integer({ min: 1, max: 6 }),
        fc.constantFrom(...LAYOUTS),
        fc.constantFrom(...LAYOUTS),
        fc.integer({ min: 0, max: 1000 }),
        (M, K, N, la, lb, seed) => {
          const A = randomMatrix(M * K, seed);
          const B = randomMatrix(K * N, seed + 1);
          const va = view(A, M, K, la); // (a broadcast layout rewrites A to its broadcast values first)
          const vb = view(B, K, N, lb);
          tidy(() => {
            const ta = fromNdarray(va);
            const tb = fromNdarray(vb, { requiresGrad: true });
            expect(ta.toArray()).toEqual(Array.from(A));
            expect(tb.toArray()).toEqual(Array.from(B));
            // a Float32Array view with non-negative strides (on dimensions longer than 1) is shared, not copied
            const shared = la === "reversed" ? M * K === 1 : la !== "float64";
            expect(ta.data === va.data).toBe(shared);
            const pa = tensor(A.slice(), [M, K]);
            const pb = tensor(B.slice(), [K, N], { requiresGrad: true });
            const y = matmul(ta, tb);
            const yPlain = matmul(pa, pb);
            const got = y.toArray();
            const want = yPlain.toArray();
            for (let i = 0; i < want.length; i++) expect(got[i]).toBeCloseTo(want[i], 5);
            const R = randomMatrix(M * N, seed + 2);
            backward(sum(mul(y, tensor(R, [M, N]))));
            backward(sum(mul(yPlain, tensor(R, [M, N]))));
            const g = tb.grad!.toArray();
            const gPlain = pb.grad!.toArray();
            for (let i = 0; i < gPlain.length; i++) expect(g[i]).toBeCloseTo(gPlain[i], 5);
          });
        },
      ),
      { seed: 16, numRuns: 150 },
    );
  });

  it("a trainable tensor shares a row-major view and copies any other", () => {
    const d = Float32Array.from({ length: 12 }, (_, i) => i);
    const dense = fromNdarray(ndarray(d, [3, 4]), { requiresGrad: true, name: "w" });
    expect(dense.data).toBe(d);
    expect(dense.requiresGrad).toBe(true);
    expect(dense.name).toBe("w");
    const t = fromNdarray(ndarray(d, [3, 4]).transpose(1, 0), { requiresGrad: true });
    expect(t.data).not.toBe(d);
    expect(t.isContiguous()).toBe(true);
    expect(t.toArray()).toEqual([0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]);
    expect(() =>
      fromNdarray(ndarray(d, [3, 4]).transpose(1, 0), { requiresGrad: true, copy: false }),
    ).toThrow(
      /fromNdarray: the view \(shape \[4, 3\], strides \[1, 4\], offset 0, Float32Array data\) is not row-major dense, which a trainable tensor must be, and \{ copy: false \}/,
    );
  });

  it("toNdarray: the tensor's own data, shape, strides and offset; writes show through both", () => {
    const d = Float32Array.from({ length: 6 }, (_, i) => i);
    const t = tensor(d, [2, 3]);
    const tt = transpose(t);
    const v = toNdarray(tt);
    expect(v.data).toBe(d);
    expect(v.shape).toEqual([3, 2]);
    expect(v.stride).toEqual([1, 3]);
    for (let i = 0; i < 3; i++) for (let j = 0; j < 2; j++) expect(v.get(i, j)).toBe(tt.get(i, j));
    v.set(2, 1, 42);
    expect(t.get(1, 2)).toBe(42);
    expect(tt.toNdarray().get(2, 1)).toBe(42);
    // round trip: ndarray → tensor → ndarray keeps the view
    const back = toNdarray(Tensor.fromNdarray(v));
    expect([back.data === d, back.shape, back.stride, back.offset]).toEqual([true, [3, 2], [1, 3], 0]);
    const s = toNdarray(tensor([7], []));
    expect(s.shape).toEqual([]);
    expect(s.get()).toBe(7);
  });

  it("errors name the view with its shape and strides", () => {
    expect(() => fromNdarray(ndarray(new Float32Array(4), [2, 3]))).toThrow(
      /fromNdarray: the view \(shape \[2, 3\], strides \[3, 1\], offset 0, Float32Array data\) reaches elements 0\.\.5, outside its data of length 4/,
    );
    expect(() => fromNdarray(ndarray(new Float64Array(6), [2, 3]), { copy: false, name: "x" })).toThrow(
      /fromNdarray 'x': the view \(shape \[2, 3\], strides \[3, 1\], offset 0, Float64Array data\) is not over a Float32Array, and \{ copy: false \}/,
    );
    expect(() => fromNdarray(ndarray(new Float32Array(6), [2, 3]).step(-1, 1), { copy: false })).toThrow(
      /has a negative stride, and \{ copy: false \}/,
    );
    expect(() => fromNdarray({ shape: [2] } as never)).toThrow(/expected an ndarray view/);
    const t = tensor([1, 2]);
    t.dispose();
    expect(() => toNdarray(t)).toThrow(/toNdarray: tensor \[2\] has been disposed/);
  });
});
