// Plain-TypeScript baselines: the blocked sgemm (all four transposes) against the scalar reference
// sgemm, and the reference fused qmatvec against a plain float matvec over the same weight.
import { consume, report, type Row, time } from "@int21/bench-utils";
import {
  createReferenceBackend,
  plainBlockedSgemm,
  referenceDequantize,
  referenceSgemm,
  rtnQuantize,
} from "@int21/quant-kernels";
import { randomUniform, randomWeights } from "@int21/quant-kernels/testing";

const quick = process.env.INT21_BENCH_QUICK === "1";
const opts = { minTimeMs: quick ? 30 : 1000, minRuns: 3 };
const rows: Row[] = [];

// sgemm: M = N = K = S.
const S = quick ? 64 : 384;
const A = randomUniform(S * S, 1);
const B = randomUniform(S * S, 2);
const C = new Float32Array(S * S);
const C2 = new Float32Array(S * S);
const flops = 2 * S * S * S;
const refT = time("ref", () => referenceSgemm({ M: S, N: S, K: S, A, B, C }), opts);
rows.push({
  name: `quant-kernels:sgemm:reference:NN:${S}x${S}x${S}`,
  gflops: flops / refT.medianMs / 1e6,
  ratioToReference: 1,
});
for (const [transA, transB] of [
  [false, false],
  [false, true],
  [true, false],
  [true, true],
] as const) {
  const args = { M: S, N: S, K: S, A, B, transA, transB };
  referenceSgemm({ ...args, C });
  plainBlockedSgemm({ ...args, C: C2 });
  for (let i = 0; i < C.length; i += 31) {
    if (Math.abs(C[i] - C2[i]) > 1e-3 * (1 + Math.abs(C[i])))
      throw new Error(`plainBlockedSgemm mismatch at ${i}`);
  }
  const t = time("blocked", () => plainBlockedSgemm({ ...args, C: C2 }), opts);
  consume(C2);
  const tag = `${transA ? "T" : "N"}${transB ? "T" : "N"}`;
  rows.push({
    name: `quant-kernels:sgemm:plain-blocked:${tag}:${S}x${S}x${S}`,
    gflops: flops / t.medianMs / 1e6,
    ratioToReference: refT.medianMs / t.medianMs,
  });
}

// qmatvec: the reference fused kernel vs a float matvec over the dequantized weight.
const N = quick ? 256 : 4096;
const K = quick ? 256 : 4096;
const W = randomWeights(N * K, 3);
const q = rtnQuantize(W, N, K, "int4-g128-asym-f16");
const Wd = new Float32Array(N * K);
referenceDequantize(q, Wd);
const x = randomUniform(K, 4);
const y = new Float32Array(N);
const yf = new Float32Array(N);
const ref = createReferenceBackend();
ref.qmatmul(x, 1, q, y);
plainBlockedSgemm({ M: 1, N, K, A: x, B: Wd, C: yf, transB: true });
for (let n = 0; n < N; n += 17)
  if (Math.abs(y[n] - yf[n]) > 1e-3 * (1 + Math.abs(yf[n]))) throw new Error(`qmatvec mismatch at ${n}`);
const tf = time("float", () => plainBlockedSgemm({ M: 1, N, K, A: x, B: Wd, C: yf, transB: true }), opts);
const tq = time("qmatvec", () => ref.qmatmul(x, 1, q, y), opts);
rows.push({
  name: `quant-kernels:matvec:plain-blocked-f32:${N}x${K}`,
  gflops: (2 * N * K) / tf.medianMs / 1e6,
  ratioToFloat: 1,
});
rows.push({
  name: `quant-kernels:qmatvec:reference:int4g128:${N}x${K}`,
  gflops: (2 * N * K) / tq.medianMs / 1e6,
  ratioToFloat: tf.medianMs / tq.medianMs,
});
report("quant-kernels-reference", rows, {
  notes: ["plain TypeScript, one thread; the scalar reference is the correctness oracle, not a fast path"],
  chart: { title: "plain-TS kernels (GFLOP/s)", value: "gflops", unit: "GFLOP/s" },
});
