// A user's scijs ndarrays through int21's quantized kernels, without reshaping anything by hand:
// a weight stored the PyTorch-Conv1D / numpy way ([in × out], float64) is quantized through its transposed
// view, and activations that live as views into larger buffers go through the fused dequantize-matmul.
import {
  bitsPerWeight,
  gatherNdarray,
  ndDequantize,
  ndQmatmul,
  ndQuantize,
  ndSgemm,
} from "@int21/quant-kernels";
import { createWasmBackend } from "@int21/quant-kernels/wasm";
import ndarray from "ndarray";

const quick = process.env.INT21_EXAMPLE_QUICK === "1";
const [IN, OUT, T] = quick ? [256, 128, 12] : [1024, 1024, 64]; // features in, features out, tokens

let s = 7;
const rand = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32) * 2 - 1;

// The user's data: a float64 weight [in × out], and a [tokens × 2·in] buffer whose left half is our input.
const weight = ndarray(
  Float64Array.from({ length: IN * OUT }, () => rand() * 0.05),
  [IN, OUT],
);
const packed = ndarray(Float32Array.from({ length: T * 2 * IN }, rand), [T, 2 * IN]);
const x = packed.hi(T, IN); // [T × in], row stride 2·in: a view, not a copy

const backend = await createWasmBackend({ threads: 1 });
try {
  // ŵ [out × in] from the transposed view (gathered into float32 once: documented copy of a non-row-major input)
  const q = ndQuantize(weight.transpose(1, 0), "rtn", "int4-g64-asym-f16");
  console.log(
    `weight ndarray [${weight.shape.join(", ")}] float64 → ${q.format.name}: ${q.outFeatures}×${q.inFeatures}, ${bitsPerWeight(q).toFixed(2)} bits/weight`,
  );

  // y = x · ŵᵀ with the fused kernel; x's padded rows are gathered, a row-major x would be read in place
  const y = ndQmatmul(backend, x, q);
  // the same rows one at a time: each row of `packed` is row-major, so this path copies nothing
  const yRows = ndarray(new Float32Array(T * OUT), [T, OUT]);
  for (let t = 0; t < T; t++) ndQmatmul(backend, x.pick(t, null), q, { out: yRows.pick(t, null) });

  // reference: dequantize ŵ and multiply in float with ndSgemm, reading ŵ through its transposed view in place
  const wq = ndDequantize(backend, q); // [out × in]
  const want = ndSgemm(backend, x, wq.transpose(1, 0));

  const diff = (a: Float32Array, b: Float32Array) =>
    a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);
  const [dFused, dRows] = [diff(gatherNdarray(y), want.data), diff(yRows.data, want.data)];
  let maxW = 0;
  for (let i = 0; i < IN; i++)
    for (let o = 0; o < OUT; o++) maxW = Math.max(maxW, Math.abs(weight.get(i, o) - wq.get(o, i)));
  console.log(
    `x: view [${x.shape.join(", ")}] strides [${x.stride.join(", ")}] of a [${packed.shape.join(", ")}] buffer → y [${y.shape.join(", ")}]`,
  );
  console.log(`max |w − ŵ| = ${maxW.toFixed(5)} (half a 4-bit step)`);
  console.log(
    `max |y − x·ŵᵀ| = ${dFused.toExponential(2)} (whole batch), ${dRows.toExponential(2)} (row by row, zero-copy)`,
  );
  const ok = dFused < 1e-4 && dRows < 1e-4 && maxW < 0.01;
  console.log(
    ok ? "ok: ndarray views through qmatmul equal dequantize-then-matmul" : "FAIL: the results disagree",
  );
  if (!ok) process.exitCode = 1;
} finally {
  backend.dispose();
}
