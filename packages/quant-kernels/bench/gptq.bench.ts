// GPTQ wall time for a 4096×4096 layer calibrated on 128×2048 tokens, in its phases:
// Hessian accumulation (plain TS vs a backend's sgemm), the GPTQ solve (Cholesky of H⁻¹ + column loop
// + trailing GEMMs, plain TS vs backend sgemm), and RTN on the same layer as the baseline.
// Activations are generated chunk by chunk (262,144 × 4096 floats would be 4.3 GB); only `add` is timed.
// Env: INT21_BENCH_QUICK=1 (smoke: 256×256, 512 tokens).
//      INT21_GPTQ_TS_ROWS (default 1024): rows the plain-TS Hessian is measured on; its total is a linear
//        projection to all rows (the accumulation cost is exactly linear in rows).
//      INT21_GPTQ_BACKEND_ROWS (default all 262,144): rows the backend Hessian is measured on.
import { type Row, report } from "@int21/bench-utils";
import {
  type Backend,
  createHessian,
  gptqQuantizeWithInfo,
  relativeOutputError,
  rtnQuantize,
} from "@int21/quant-kernels";
import { createWasmBackend } from "@int21/quant-kernels/wasm";
import { randomWeights } from "@int21/quant-kernels/testing";

const quick = process.env.INT21_BENCH_QUICK === "1";
const N = quick ? 256 : 4096;
const K = quick ? 256 : 4096;
const totalRows = quick ? 512 : 128 * 2048;
const tsRows = Math.min(totalRows, Number(process.env.INT21_GPTQ_TS_ROWS ?? (quick ? 512 : 1024)));
const backendRows = Math.min(totalRows, Number(process.env.INT21_GPTQ_BACKEND_ROWS ?? totalRows));
const format = "int4-g128-asym-f16";
const shape = `${N}x${K}`;
const CHUNK = 1024;

/**
 * Correlated synthetic activations: rank-32 mixture + noise with heavy per-column scales. The mixture
 * comes from `distSeed` (the "layer"), the samples from `sampleSeed` (the "tokens"); one chunk per call.
 */
function makeActivations(distSeed: number, sampleSeed: number) {
  const lcg = (seed: number) => {
    let s = seed >>> 0;
    return () => {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
      return s / 4294967296 - 0.5;
    };
  };
  const d = lcg(distSeed);
  const rnd = lcg(sampleSeed);
  const R = 32;
  const mix = Float32Array.from({ length: R * K }, d);
  const colScale = Float32Array.from({ length: K }, () => 0.2 + 8 * Math.abs(d()) ** 3);
  const z = new Float32Array(R);
  return (x: Float32Array, rows: number): void => {
    for (let r = 0; r < rows; r++) {
      for (let i = 0; i < R; i++) z[i] = rnd();
      for (let k = 0; k < K; k++) {
        let v = 0.3 * rnd();
        for (let i = 0; i < R; i++) v += z[i] * mix[i * K + k];
        x[r * K + k] = v * colScale[k];
      }
    }
  };
}

/** Accumulates `rows` generated rows; returns H and the seconds spent inside `add` only. */
function accumulate(rows: number, backend?: Backend): { H: Float64Array; seconds: number } {
  const gen = makeActivations(7, 11); // same stream for every path
  const h = createHessian(K, { backend, chunkRows: backend ? CHUNK : 64 });
  const x = new Float32Array(CHUNK * K);
  let ms = 0;
  for (let r0 = 0; r0 < rows; r0 += CHUNK) {
    const n = Math.min(CHUNK, rows - r0);
    gen(x, n);
    const t0 = performance.now();
    h.add(x.subarray(0, n * K), n);
    ms += performance.now() - t0;
  }
  return { H: h.matrix(), seconds: ms / 1000 };
}

const rows: Row[] = [];
const notes: string[] = [];
let wasm: Backend | null = null;
try {
  wasm = await createWasmBackend();
} catch (e) {
  notes.push(`wasm backend unavailable: ${(e as Error).message}`);
}
const flopsPerRow = 2 * K * K; // counted as the full xᵀx (both kernels exploit symmetry)

// Phase 1: Hessian accumulation.
const ts = accumulate(tsRows);
const tsProjected = (ts.seconds * totalRows) / tsRows;
rows.push({
  name: `quant-kernels:gptq-hessian:ts:${K}:${tsRows}rows`,
  seconds: ts.seconds,
  gflops: (flopsPerRow * tsRows) / ts.seconds / 1e9,
  secondsFor128x2048: tsProjected,
  projected: tsRows < totalRows,
  ratioToTs: 1,
});
let be: { H: Float64Array; seconds: number } | null = null;
let beTotal = 0;
if (wasm) {
  // Validate on the TS rows first: same activations, same Hessian.
  const check = accumulate(tsRows, wasm);
  let worst = 0;
  for (let i = 0; i < ts.H.length; i += 97) {
    const r = Math.floor(i / K);
    const c = i % K;
    worst = Math.max(worst, Math.abs(ts.H[i] - check.H[i]) / Math.sqrt(ts.H[r * K + r] * ts.H[c * K + c]));
  }
  notes.push(
    `max |H_ts − H_${wasm.name}| / √(H_ii·H_jj) on ${tsRows} rows (sampled): ${worst.toExponential(2)}`,
  );
  if (worst > 1e-4) throw new Error(`backend Hessian disagrees with the TS one (${worst})`);
  be = backendRows === tsRows ? check : accumulate(backendRows, wasm);
  beTotal = (be.seconds * totalRows) / backendRows;
  rows.push({
    name: `quant-kernels:gptq-hessian:${wasm.name}:${K}:${backendRows}rows`,
    seconds: be.seconds,
    gflops: (flopsPerRow * backendRows) / be.seconds / 1e9,
    secondsFor128x2048: beTotal,
    projected: backendRows < totalRows,
    ratioToTs: (ts.seconds / tsRows / be.seconds) * backendRows,
  });
}

// Phase 2: RTN baseline and the GPTQ solve, plain TS and with the backend's sgemm.
const W = randomWeights(N * K, 1);
const evalRows = 256;
const Xe = new Float32Array(evalRows * K);
makeActivations(7, 99)(Xe, evalRows); // held out: same distribution, other tokens
let t0 = performance.now();
const qRtn = rtnQuantize(W, N, K, format);
const rtnSec = (performance.now() - t0) / 1000;
const rtnErr = relativeOutputError(Xe, evalRows, W, qRtn);
rows.push({
  name: `quant-kernels:rtn:${format}:${shape}`,
  seconds: rtnSec,
  relOutputError: rtnErr,
  ratioToRtn: 1,
});
const solves: { name: string; H: Float64Array; backend?: Backend; hessianSec: number }[] = [
  { name: "ts", H: ts.H, hessianSec: tsProjected },
];
if (wasm && be) solves.push({ name: wasm.name, H: be.H, backend: wasm, hessianSec: beTotal });
let tsSolve = 0;
for (const p of solves) {
  t0 = performance.now();
  const { q, info } = gptqQuantizeWithInfo(W, N, K, format, p.H, { backend: p.backend, actOrder: true });
  const t = (performance.now() - t0) / 1000;
  if (p.name === "ts") tsSolve = t;
  const err = relativeOutputError(Xe, evalRows, W, q);
  if (!(err < rtnErr))
    throw new Error(`GPTQ (${p.name}) held-out output error ${err} is not below RTN's ${rtnErr}`);
  rows.push({
    name: `quant-kernels:gptq-solve:${p.name}:${format}:${shape}`,
    seconds: t,
    relOutputError: err,
    percDamp: info.percDamp,
    ratioToRtn: t / rtnSec,
    speedupVsTs: tsSolve / t,
  });
  rows.push({
    name: `quant-kernels:gptq-total:${p.name}:${shape}:${totalRows}tokens`,
    seconds: p.hessianSec + t,
    projected: p.name === "ts" ? tsRows < totalRows : backendRows < totalRows,
  });
}
notes.push(
  `format ${format}, act-order, block 128, damp 0.01; output errors on ${evalRows} held-out rows (RTN ${rtnErr.toExponential(3)})`,
);
notes.push(
  `totals = Hessian over ${totalRows} rows (measured, or projected where 'projected') + measured solve`,
);
report("quant-kernels-gptq", rows, {
  notes,
  chart: { title: `GPTQ ${shape} phases (s)`, value: "seconds", unit: "s" },
});
wasm?.dispose();
