import { describe, expect, it } from "vitest";
import { createFloatLinear, createQuantLinear } from "./linear";
import { bytes } from "./quantized-linear";
import { createReferenceBackend } from "./reference/backend";
import { referenceDequantize } from "./reference/dequantize";
import { rtnQuantize } from "./rtn";
import { randomUniform, randomWeights } from "./testing/random";

const N = 9;
const K = 70;
const rows = 5;
const W = randomWeights(N * K, 4);
const bias = randomUniform(N, 5);
const x = randomUniform(rows * K, 6);

function naive(Wm: Float32Array): Float64Array {
  const y = new Float64Array(rows * N);
  for (let r = 0; r < rows; r++)
    for (let n = 0; n < N; n++) {
      let s = bias[n];
      for (let k = 0; k < K; k++) s += x[r * K + k] * Wm[n * K + k];
      y[r * N + n] = s;
    }
  return y;
}

describe("Linear implementations", () => {
  it("FloatLinear: y = x·Wᵀ + b, dx = g·W, bytes", () => {
    const lin = createFloatLinear({
      weight: W,
      outFeatures: N,
      inFeatures: K,
      bias,
      backend: createReferenceBackend(),
    });
    const y = new Float32Array(rows * N);
    lin.forward(x, rows, y);
    const want = naive(W);
    for (let i = 0; i < y.length; i++) expect(y[i]).toBeCloseTo(want[i], 5);
    const g = randomUniform(rows * N, 8);
    const dx = new Float32Array(rows * K);
    lin.inputGrad(g, rows, dx);
    let s = 0;
    for (let n = 0; n < N; n++) s += g[n] * W[n * K + 3];
    expect(dx[3]).toBeCloseTo(s, 5);
    expect(lin.bytes()).toBe(4 * (N * K + N));
  });

  it("QuantLinear: forward equals the dequantized float layer; bytes count the packed record", () => {
    const q = rtnQuantize(W, N, K, "int3-g32-asym-f16");
    const lin = createQuantLinear({ q, bias, backend: createReferenceBackend() });
    const y = new Float32Array(rows * N);
    lin.forward(x, rows, y);
    const What = new Float32Array(N * K);
    referenceDequantize(q, What);
    const want = naive(What);
    for (let i = 0; i < y.length; i++) expect(y[i]).toBeCloseTo(want[i], 5);
    expect(lin.bytes()).toBe(bytes(q) + 4 * N);
    expect(lin.bytes()).toBeLessThan(
      createFloatLinear({
        weight: W,
        outFeatures: N,
        inFeatures: K,
        bias,
        backend: createReferenceBackend(),
      }).bytes() / 4,
    );
  });

  it("QuantLinear falls back to the reference when the backend does not support the format", () => {
    const q = rtnQuantize(W, N, K, "int2-g64-sym-f32");
    const calls: string[] = [];
    const ref = createReferenceBackend();
    const picky = {
      ...ref,
      name: "picky",
      supports: () => false,
      qmatmul: () => calls.push("qmatmul"),
      qmatmulT: () => calls.push("qmatmulT"),
    };
    const lin = createQuantLinear({ q, backend: picky });
    const y = new Float32Array(rows * N);
    lin.forward(x, rows, y);
    lin.inputGrad(new Float32Array(rows * N), rows, new Float32Array(rows * K));
    expect(calls).toEqual([]);
    expect(y.some((v) => v !== 0)).toBe(true);
  });

  it("errors name the buffer and shape", () => {
    const lin = createQuantLinear({
      q: rtnQuantize(W, N, K, "int4-g32-asym-f16"),
      backend: createReferenceBackend(),
    });
    expect(() => lin.forward(x, rows, new Float32Array(3))).toThrow(/QuantLinear.forward: y needs 5×9/);
    expect(() =>
      createFloatLinear({ weight: W, outFeatures: N, inFeatures: K + 1, backend: createReferenceBackend() }),
    ).toThrow(/N×K = 9×71/);
    expect(() =>
      createQuantLinear({
        q: rtnQuantize(W, N, K, "int4-g32-asym-f16"),
        bias: new Float32Array(2),
        backend: createReferenceBackend(),
      }),
    ).toThrow(/bias/);
  });
});
