import fc from "fast-check";
import ndarray from "ndarray";
import { describe, expect, it } from "vitest";
import { createFloatLinear, createQuantLinear } from "./linear";
import {
  type NdArrayInput,
  gatherNdarray,
  ndDequantize,
  ndLinear,
  ndQmatmul,
  ndQmatmulT,
  ndQuantize,
  ndSgemm,
} from "./ndarray";
import { createReferenceBackend } from "./reference/backend";
import { referenceSgemm } from "./reference/sgemm";
import { rtnQuantize } from "./rtn";
import { makeRng, randomUniform, randomWeights } from "./testing/random";
import type { Backend } from "./types";
import { createWasmBackend } from "./wasm/wasm-backend";

const LAYOUTS = [
  "dense",
  "offset",
  "padded",
  "transposed",
  "stepped",
  "reversed",
  "float64",
  "array",
] as const;
type Layout = (typeof LAYOUTS)[number];

/** The dense row-major `[R × C]` matrix `m` as a view of the given layout (same values, other storage). */
function view(m: Float32Array, R: number, C: number, layout: Layout, seed = 1): NdArrayInput {
  const off = 1 + (seed % 7);
  switch (layout) {
    case "dense":
      return ndarray(m.slice(), [R, C]);
    case "offset": {
      const d = new Float32Array(off + R * C).fill(Number.NaN);
      d.set(m, off);
      return ndarray(d, [R, C], [C, 1], off);
    }
    case "padded": {
      const ld = C + 3;
      const d = new Float32Array(off + R * ld).fill(Number.NaN);
      for (let r = 0; r < R; r++) d.set(m.subarray(r * C, (r + 1) * C), off + r * ld);
      return ndarray(d, [R, C], [ld, 1], off);
    }
    case "transposed": {
      const t = new Float32Array(R * C);
      for (let r = 0; r < R; r++) for (let c = 0; c < C; c++) t[c * R + r] = m[r * C + c];
      return ndarray(t, [C, R]).transpose(1, 0);
    }
    case "stepped": {
      const d = new Float32Array(R * C * 2).fill(Number.NaN);
      for (let i = 0; i < R * C; i++) d[2 * i] = m[i];
      return ndarray(d, [R, 2 * C]).step(1, 2);
    }
    case "reversed": {
      const d = new Float32Array(R * C);
      for (let i = 0; i < R * C; i++) d[R * C - 1 - i] = m[i];
      return ndarray(d, [R, C]).step(-1, -1);
    }
    case "float64":
      return ndarray(Float64Array.from(m), [R, C]);
    case "array":
      return ndarray(Array.from(m), [R, C]);
  }
}

/** A backend that records the arrays its kernels were handed (to prove zero-copy). */
function recording(inner: Backend): Backend & { seen: Float32Array[] } {
  const seen: Float32Array[] = [];
  return {
    ...inner,
    seen,
    qmatmul: (x, rows, q, y) => {
      seen.push(x, y);
      inner.qmatmul(x, rows, q, y);
    },
    sgemm: (a) => {
      seen.push(a.A, a.B, a.C);
      inner.sgemm(a);
    },
  };
}

const ref = createReferenceBackend();
const formats = fc.constantFrom("int4-g32-asym-f16", "int2-g64-asym-f16", "nf4-g32-f32", "int8-pc-sym-f32");

describe("ndarray views through the kernels", () => {
  it("ndQmatmul / ndQmatmulT: every layout of x gives the plain arrays' result, bit for bit", () => {
    fc.assert(
      fc.property(
        formats,
        fc.integer({ min: 1, max: 9 }),
        fc.integer({ min: 1, max: 80 }),
        fc.integer({ min: 1, max: 5 }),
        fc.constantFrom(...LAYOUTS),
        fc.integer({ min: 0, max: 1000 }),
        (format, N, K, rows, layout, seed) => {
          const q = rtnQuantize(randomWeights(N * K, seed), N, K, format);
          const x = randomUniform(rows * K, seed + 1);
          const yPlain = new Float32Array(rows * N);
          ref.qmatmul(x, rows, q, yPlain);
          const y = ndQmatmul(ref, view(x, rows, K, layout, seed), q);
          expect(y.shape).toEqual([rows, N]);
          expect(y.stride).toEqual([N, 1]);
          expect(Array.from(gatherNdarray(y))).toEqual(Array.from(yPlain));
          const g = randomUniform(rows * N, seed + 2);
          const dxPlain = new Float32Array(rows * K);
          ref.qmatmulT(g, rows, q, dxPlain);
          const dx = ndQmatmulT(ref, view(g, rows, N, layout, seed), q);
          expect(dx.shape).toEqual([rows, K]);
          expect(Array.from(gatherNdarray(dx))).toEqual(Array.from(dxPlain));
        },
      ),
      { seed: 21, numRuns: 150 },
    );
  });

  it("ndLinear: every layout of x through a float and a quantized Linear gives forward's result on the plain array", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 9 }),
        fc.integer({ min: 1, max: 70 }),
        fc.integer({ min: 1, max: 4 }),
        fc.constantFrom(...LAYOUTS),
        fc.boolean(),
        fc.integer({ min: 0, max: 1000 }),
        (N, K, rows, layout, quantized, seed) => {
          const W = randomWeights(N * K, seed);
          const bias = randomUniform(N, seed + 3);
          const lin = quantized
            ? createQuantLinear({ q: rtnQuantize(W, N, K, "int4-g32-asym-f16"), bias, backend: ref })
            : createFloatLinear({ weight: W, outFeatures: N, inFeatures: K, bias, backend: ref });
          const x = randomUniform(rows * K, seed + 1);
          const plain = new Float32Array(rows * N);
          lin.forward(x, rows, plain);
          const y = ndLinear(lin, view(x, rows, K, layout, seed), {
            out: ndarray(new Float32Array(rows * N), [rows, N]),
          });
          expect(Array.from(y.data)).toEqual(Array.from(plain));
        },
      ),
      { seed: 24, numRuns: 100 },
    );
    const lin = createFloatLinear({
      weight: new Float32Array(6),
      outFeatures: 2,
      inFeatures: 3,
      backend: ref,
    });
    expect(() => ndLinear(lin, ndarray(new Float32Array(8), [2, 4]))).toThrow(
      /ndLinear: x must have shape \[\.\.\., 3\] \(K = linear\.inFeatures\), got \[2, 4\]/,
    );
  });

  it("ndQmatmul: [K] is the matvec, [a, b, K] keeps its leading dimensions", () => {
    const [N, K] = [6, 64];
    const q = rtnQuantize(randomWeights(N * K, 3), N, K, "int4-g64-asym-f16");
    const x = randomUniform(2 * 3 * K, 4);
    const plain = new Float32Array(6 * N);
    ref.qmatmul(x, 6, q, plain);
    const y3 = ndQmatmul(ref, ndarray(x, [2, 3, K]), q);
    expect(y3.shape).toEqual([2, 3, N]);
    expect(Array.from(y3.data)).toEqual(Array.from(plain));
    const y1 = ndQmatmul(ref, ndarray(x.subarray(K, 2 * K), [K]), q);
    expect(y1.shape).toEqual([N]);
    expect(Array.from(y1.data)).toEqual(Array.from(plain.subarray(N, 2 * N)));
  });

  it("zero-copy: a row-major input and out are handed to the kernel as subarrays of their own data", () => {
    const [N, K, rows] = [5, 32, 3];
    const q = rtnQuantize(randomWeights(N * K, 8), N, K, "int4-g32-asym-f16");
    const xs = new Float32Array(7 + rows * K);
    xs.set(randomUniform(rows * K, 9), 7);
    const outData = new Float32Array(4 + rows * N).fill(-1);
    const out = ndarray(outData, [rows, N], [N, 1], 4);
    const b = recording(ref);
    const y = ndQmatmul(b, ndarray(xs, [rows, K], [K, 1], 7), q, { out });
    expect(y).toBe(out);
    expect(b.seen[0].buffer).toBe(xs.buffer);
    expect(b.seen[0].byteOffset).toBe(7 * 4);
    expect(b.seen[1].buffer).toBe(outData.buffer);
    expect(Array.from(outData.subarray(0, 4))).toEqual([-1, -1, -1, -1]); // nothing before the view is touched
    const plain = new Float32Array(rows * N);
    ref.qmatmul(xs.subarray(7), rows, q, plain);
    expect(Array.from(outData.subarray(4))).toEqual(Array.from(plain));
  });

  it("ndSgemm: every layout of A, B and out gives referenceSgemm's product of the plain arrays", () => {
    const outLayouts = ["dense", "padded", "column-major"] as const;
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 7 }),
        fc.integer({ min: 1, max: 7 }),
        fc.integer({ min: 1, max: 9 }),
        fc.constantFrom(...LAYOUTS),
        fc.constantFrom(...LAYOUTS),
        fc.constantFrom(...outLayouts),
        fc.boolean(),
        fc.integer({ min: 0, max: 1000 }),
        (M, N, K, la, lb, lc, accumulate, seed) => {
          const A = randomUniform(M * K, seed);
          const B = randomUniform(K * N, seed + 1);
          const C0 = randomUniform(M * N, seed + 2);
          const [alpha, beta] = accumulate ? [0.5, 2] : [1, 0];
          const want = C0.slice();
          referenceSgemm({ M, N, K, A, B, C: want, alpha, beta });
          const store = new Float32Array(2 * M * N + 8).fill(Number.NaN);
          const out =
            lc === "dense"
              ? ndarray(store, [M, N], [N, 1], 0)
              : lc === "padded"
                ? ndarray(store, [M, N], [N + 2, 1], 3)
                : ndarray(store, [N, M], [M, 1], 1).transpose(1, 0);
          for (let m = 0; m < M; m++) for (let n = 0; n < N; n++) out.set(m, n, C0[m * N + n]);
          const b = recording(ref);
          const [va, vb] = [view(A, M, K, la, seed), view(B, K, N, lb, seed)];
          const got = ndSgemm(b, va, vb, { out, alpha, beta });
          expect(got).toBe(out);
          expect(b.seen[2]).toBe(store); // out is written in place
          for (let m = 0; m < M; m++)
            for (let n = 0; n < N; n++) expect(got.get(m, n)).toBeCloseTo(want[m * N + n], 5);
          // operands with a unit stride reach the kernel as their own data (zero-copy)
          const unit = ["dense", "offset", "padded", "transposed"];
          if (unit.includes(la)) expect(b.seen.slice(0, 2)).toContain(va.data);
          if (unit.includes(lb)) expect(b.seen.slice(0, 2)).toContain(vb.data);
        },
      ),
      { seed: 22, numRuns: 200 },
    );
  });

  it("ndDequantize and ndQuantize: a transposed [in × out] weight quantizes as its dense copy", () => {
    fc.assert(
      fc.property(
        formats,
        fc.integer({ min: 1, max: 8 }),
        fc.integer({ min: 1, max: 70 }),
        fc.constantFrom(...LAYOUTS),
        fc.integer({ min: 0, max: 1000 }),
        (format, N, K, layout, seed) => {
          const W = randomWeights(N * K, seed);
          const plain = rtnQuantize(W, N, K, format);
          const q = ndQuantize(view(W, N, K, layout, seed), "rtn", format);
          expect(Array.from(q.qweight.words)).toEqual(Array.from(plain.qweight.words));
          expect(Array.from(q.scales)).toEqual(Array.from(plain.scales));
          const Wq = new Float32Array(N * K);
          ref.dequantize(plain, Wq);
          const nd = ndDequantize(ref, q);
          expect(nd.shape).toEqual([N, K]);
          expect(Array.from(nd.data)).toEqual(Array.from(Wq));
        },
      ),
      { seed: 23, numRuns: 100 },
    );
  });

  it("the wasm backend gives the reference's result on strided views within float32 rounding (qmatmul, sgemm)", async () => {
    const wasm = await createWasmBackend({ threads: 1 });
    try {
      const rng = makeRng(5);
      for (const layout of LAYOUTS) {
        const [N, K, rows] = [16, 128, 1 + Math.floor(rng() * 4)];
        const q = rtnQuantize(randomWeights(N * K, 6), N, K, "int4-g64-asym-f16");
        const x = randomUniform(rows * K, 7);
        const want = ndQmatmul(ref, ndarray(x, [rows, K]), q);
        const got = ndQmatmul(wasm, view(x, rows, K, layout), q);
        for (let i = 0; i < want.data.length; i++) expect(got.data[i]).toBeCloseTo(want.data[i], 4);
      }
      // sgemm through wasm: padded, transposed and gathered operands, row- and column-major out
      for (const la of LAYOUTS)
        for (const lb of LAYOUTS) {
          const [M, K, N] = [
            3 + Math.floor(rng() * 5),
            5 + Math.floor(rng() * 40),
            2 + Math.floor(rng() * 9),
          ];
          const [A, B] = [randomUniform(M * K, 8), randomUniform(K * N, 9)];
          const want = ndSgemm(ref, ndarray(A, [M, K]), ndarray(B, [K, N]));
          const colMajor = ndarray(new Float32Array(M * N), [N, M]).transpose(1, 0);
          for (const out of [undefined, colMajor]) {
            const got = ndSgemm(wasm, view(A, M, K, la), view(B, K, N, lb), { out });
            for (let m = 0; m < M; m++)
              for (let n = 0; n < N; n++) expect(got.get(m, n)).toBeCloseTo(want.get(m, n), 4);
          }
        }
    } finally {
      wasm.dispose();
    }
  });

  it("errors name the argument with its shape and strides", () => {
    const q = rtnQuantize(randomWeights(4 * 32, 1), 4, 32, "int4-g32-asym-f16");
    const xT = ndarray(new Float32Array(32 * 2), [32, 2]).transpose(1, 0);
    expect(() => ndQmatmul(ref, xT, q, { copy: false })).toThrow(
      /ndQmatmul: x \(shape \[2, 32\], strides \[1, 2\], offset 0, Float32Array data\) is not a row-major float32 view and \{ copy: false \}/,
    );
    expect(() => ndQmatmul(ref, ndarray(new Float32Array(2 * 31), [2, 31]), q)).toThrow(
      /x must have shape \[\.\.\., 32\] \(K = q\.inFeatures of int4-g32-asym-f16\), got \[2, 31\]/,
    );
    expect(() => ndQmatmul(ref, ndarray(new Float32Array(10), [2, 32]), q)).toThrow(
      /x \(shape \[2, 32\], strides \[32, 1\], offset 0, Float32Array data\) reaches elements 0\.\.63, outside its data of length 10/,
    );
    const outT = ndarray(new Float32Array(8), [4, 2]).transpose(1, 0);
    expect(() => ndQmatmul(ref, ndarray(new Float32Array(64), [2, 32]), q, { out: outT })).toThrow(
      /out \(shape \[2, 4\], strides \[1, 2\], offset 0, Float32Array data\) must be a row-major view over a Float32Array/,
    );
    expect(() =>
      ndQmatmul(ref, ndarray(new Float32Array(64), [2, 32]), q, {
        out: ndarray(new Float32Array(8), [4, 2]),
      }),
    ).toThrow(/out has shape \[4, 2\], the result has shape \[2, 4\]/);
    expect(() =>
      ndSgemm(ref, ndarray(new Float32Array(6), [2, 3]), ndarray(new Float32Array(6), [2, 3])),
    ).toThrow(/A \[M, K\] and B \[K, N\] must be 2-D with matching K, got A \[2, 3\] and B \[2, 3\]/);
    const broadcast = ndarray(new Float32Array(3), [2, 3], [0, 1]);
    expect(() =>
      ndSgemm(ref, ndarray(new Float32Array(4), [2, 2]), ndarray(new Float32Array(6), [2, 3]), {
        out: broadcast,
      }),
    ).toThrow(
      /out \(shape \[2, 3\], strides \[0, 1\], offset 0, Float32Array data\) must be a float32 view with one unit stride/,
    );
    expect(() =>
      ndSgemm(ref, ndarray(new Float32Array(4), [2, 2]), ndarray(new Float32Array(4), [2, 2]), { beta: 1 }),
    ).toThrow(/beta 1 accumulates into C: pass opts.out/);
    expect(() => ndQuantize(ndarray(new Float32Array(8), [8]), "rtn", "int4-g32-asym-f16")).toThrow(
      /w must be 2-D \[N, K\] \(out × in\), got \[8\]/,
    );
    expect(() => ndQuantize(ndarray(new Float32Array(64), [2, 32]), "nope", "int4-g32-asym-f16")).toThrow(
      /ndQuantize: unknown quantizer "nope"/,
    );
  });
});
