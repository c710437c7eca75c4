// Quantize a float matrix to 4-bit codes by hand, pack them with @int21/bitpack, wrap them in a
// QuantizedLinear record and multiply by it with the fused kernels — checked against dequantize + sgemm.
import { packMatrix } from "@int21/bitpack";
import {
  createQuantizedLinear,
  createReferenceBackend,
  getFormat,
  referenceDequantize,
  referenceSgemm,
  roundUpToF16,
} from "@int21/quant-kernels";
import { createWasmBackend } from "@int21/quant-kernels/wasm";

const quick = process.env.INT21_EXAMPLE_QUICK === "1";
const N = quick ? 128 : 1024; // output features
const K = quick ? 256 : 1024; // input features
const rows = 8; // a batch of 8 input vectors
const format = getFormat("int4-g64-asym-f16");
const G = format.groupSize;
const nGroups = K / G;

// a deterministic float weight and input
let s = 42;
const rand = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32) * 2 - 1;
const W = Float32Array.from({ length: N * K }, rand);
const x = Float32Array.from({ length: rows * K }, rand);

// asymmetric round-to-nearest per group of 64 columns: w ≈ scale · (q − zero), q in [0, 15]
const codes = new Uint8Array(N * K);
const scales = new Float32Array(N * nGroups);
const zeros = new Float32Array(N * nGroups);
for (let n = 0; n < N; n++) {
  for (let g = 0; g < nGroups; g++) {
    let lo = 0;
    let hi = 0;
    for (let k = g * G; k < (g + 1) * G; k++) {
      lo = Math.min(lo, W[n * K + k]);
      hi = Math.max(hi, W[n * K + k]);
    }
    const scale = roundUpToF16((hi - lo) / format.qmax); // scales are stored as f16
    const zero = Math.round(-lo / scale);
    scales[n * nGroups + g] = scale;
    zeros[n * nGroups + g] = zero;
    for (let k = g * G; k < (g + 1) * G; k++)
      codes[n * K + k] = Math.min(format.qmax, Math.max(0, Math.round(W[n * K + k] / scale) + zero));
  }
}
const qweight = packMatrix(codes, N, K, format.bits);
const q = createQuantizedLinear({ format, outFeatures: N, inFeatures: K, qweight, scales, zeros });

// the plain path: dequantize to floats, then y = x·Wᵀ with the reference sgemm
const Wq = new Float32Array(N * K);
referenceDequantize(q, Wq);
const yPlain = new Float32Array(rows * N);
referenceSgemm({ M: rows, N, K, A: x, B: Wq, C: yPlain, transB: true });

let maxErr = 0;
for (let i = 0; i < W.length; i++) maxErr = Math.max(maxErr, Math.abs(W[i] - Wq[i]));
const packedBytes = qweight.words.byteLength + scales.length * 2 * 2;
console.log(
  `W: ${N}×${K} float32 (${(N * K * 4) / 1024} KiB) → ${format.name}: ${(packedBytes / 1024).toFixed(1)} KiB packed (${((8 * packedBytes) / (N * K)).toFixed(2)} bits/weight)`,
);
console.log(`max |W − dequantize(Q)| = ${maxErr.toFixed(4)} (half a quantization step at most)`);

const wasm = await createWasmBackend({ threads: 1 });
let failed = false;
try {
  for (const backend of [createReferenceBackend(), wasm]) {
    const y = new Float32Array(rows * N);
    const t0 = performance.now();
    const reps = quick ? 2 : 10;
    for (let r = 0; r < reps; r++) backend.qmatmul(x, rows, q, y);
    const ms = (performance.now() - t0) / reps;
    let diff = 0;
    for (let i = 0; i < y.length; i++) diff = Math.max(diff, Math.abs(y[i] - yPlain[i]));
    const gflops = (2 * rows * N * K) / (ms * 1e6);
    console.log(
      `${backend.name.padEnd(9)} qmatmul [${rows}×${K}]·Qᵀ: max |y − y_plain| = ${diff.toExponential(2)}, ${ms.toFixed(2)} ms (${gflops.toFixed(2)} GFLOP/s)`,
    );
    if (!(diff < 1e-3)) failed = true;
  }
} finally {
  wasm.dispose();
}
if (failed) {
  console.error("FAIL: the fused kernel disagrees with dequantize + sgemm");
  process.exit(1);
}
console.log("ok: fused 4-bit matmul equals dequantize-then-matmul");
