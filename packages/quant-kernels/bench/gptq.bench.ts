// GPTQ wall time for a 4096×4096 layer calibrated on 128×2048 tokens, in its three phases:
// Hessian accumulation (plain TS vs a backend's sgemm), the GPTQ solve (Cholesky of H⁻¹ + column
// loop + trailing GEMMs, plain TS vs backend sgemm), and RTN on the same layer as the baseline.
// Env: INT21_BENCH_QUICK=1 (smoke: 256×256, 512 tokens); INT21_GPTQ_CALIB_ROWS=<n> measures the
// Hessian on n rows (default 1024 in full mode) and projects linearly to 128×2048 = 262,144 rows
// (accumulation cost is exactly linear in rows); set it to 262144 to measure everything.
import { report, type Row } from "@int21/bench-utils";
import {
  type Backend,
  createHessian,
  createWasmBackend,
  gptqQuantizeWithInfo,
  relativeOutputError,
  rtnQuantize,
} from "@int21/quant-kernels";
import { randomWeights } from "@int21/quant-kernels/testing";

const quick = process.env.INT21_BENCH_QUICK === "1";
const N = quick ? 256 : 4096;
const K = quick ? 256 : 4096;
const totalRows = quick ? 512 : 128 * 2048;
const measRows = Math.min(totalRows, Number(process.env.INT21_GPTQ_CALIB_ROWS ?? (quick ? 512 : 1024)));
const format = "int4-g128-asym-f16";
const shape = `${N}x${K}`;

/** Correlated synthetic activations (rank-32 mixture + noise, heavy per-column scales), generated in chunks. */
function activations(rows: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const rnd = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 4294967296 - 0.5;
  };
  const R = 32;
  const mix = Float32Array.from({ length: R * K }, rnd);
  const colScale = Float32Array.from({ length: K }, () => 0.2 + 8 * Math.abs(rnd()) ** 3);
  const x = new Float32Array(rows * K);
  const z = new Float32Array(R);
  for (let r = 0; r < rows; r++) {
    for (let i = 0; i < R; i++) z[i] = rnd();
    for (let k = 0; k < K; k++) {
      let v = 0.05 * rnd();
      for (let i = 0; i < R; i++) v += z[i] * mix[i * K + k];
      x[r * K + k] = v * colScale[k];
    }
  }
  return x;
}

const secs = (t0: number) => (performance.now() - t0) / 1000;
const rows: Row[] = [];
const notes: string[] = [];

let wasm: Backend | null = null;
try {
  wasm = await createWasmBackend();
} catch (e) {
  notes.push(`wasm backend unavailable: ${(e as Error).message}`);
}

const W = randomWeights(N * K, 1);
const chunk = 256;
const flopsPerRow = 2 * K * K; // full xᵀx per row (the TS kernel does half of it: symmetric)

// Phase 1: Hessian accumulation on measRows rows (same activations for every path).
const X = activations(measRows, 7);
const phases: { name: string; backend?: Backend }[] = [{ name: "ts" }];
if (wasm) phases.push({ name: wasm.name, backend: wasm });
const hessians: Float64Array[] = [];
let tsHessianSec = 0;
for (const p of phases) {
  const h = createHessian(K, { backend: p.backend, chunkRows: p.backend ? 1024 : 64 });
  const t0 = performance.now();
  for (let r0 = 0; r0 < measRows; r0 += chunk) {
    const n = Math.min(chunk, measRows - r0);
    h.add(X.subarray(r0 * K, (r0 + n) * K), n);
  }
  const t = secs(t0);
  hessians.push(h.matrix());
  if (p.name === "ts") tsHessianSec = t;
  const projected = (t * totalRows) / measRows;
  rows.push({
    name: `quant-kernels:gptq-hessian:${p.name}:${K}:${measRows}rows`,
    seconds: t,
    gflops: (flopsPerRow * measRows) / t / 1e9,
    projectedSecondsFor128x2048: projected,
    ratioToTs: tsHessianSec / t,
  });
}
// Validate: the backend's Hessian equals the float64 TS one.
if (hessians.length > 1) {
  let worst = 0;
  const [a, b] = hessians;
  // Relative to the natural scale √(H_ii·H_jj) of each entry (off-diagonal entries may be near 0).
  for (let i = 0; i < a.length; i += 97) {
    const r = Math.floor(i / K);
    const c = i % K;
    worst = Math.max(worst, Math.abs(a[i] - b[i]) / Math.sqrt(a[r * K + r] * a[c * K + c]));
  }
  notes.push(`max |H_ts − H_backend| / √(H_ii·H_jj) (sampled): ${worst.toExponential(2)}`);
  if (worst > 1e-3) throw new Error(`backend Hessian disagrees with the TS one (rel ${worst})`);
}
const H = hessians[0];

// Phase 2: RTN baseline and the GPTQ solve, plain TS and with the backend's sgemm.
const t0 = performance.now();
const qRtn = rtnQuantize(W, N, K, format);
const rtnSec = secs(t0);
const evalRows = Math.min(256, measRows);
const Xe = X.subarray(0, evalRows * K);
const rtnErr = relativeOutputError(Xe, evalRows, W, qRtn);
rows.push({
  name: `quant-kernels:rtn:${format}:${shape}`,
  seconds: rtnSec,
  relOutputError: rtnErr,
  ratioToRtn: 1,
});
let tsSolve = 0;
for (const p of phases) {
  const t1 = performance.now();
  const { q, info } = gptqQuantizeWithInfo(W, N, K, format, H, { backend: p.backend, actOrder: true });
  const t = secs(t1);
  if (p.name === "ts") tsSolve = t;
  const err = relativeOutputError(Xe, evalRows, W, q);
  if (!(err < rtnErr)) throw new Error(`GPTQ (${p.name}) output error ${err} is not below RTN's ${rtnErr}`);
  rows.push({
    name: `quant-kernels:gptq-solve:${p.name}:${format}:${shape}`,
    seconds: t,
    relOutputError: err,
    percDamp: info.percDamp,
    ratioToRtn: t / rtnSec,
    speedupVsTs: tsSolve / t,
  });
}
const hessRow = rows.filter((r) => r.name.startsWith("quant-kernels:gptq-hessian"));
const solveRow = rows.filter((r) => r.name.startsWith("quant-kernels:gptq-solve"));
for (let i = 0; i < phases.length; i++) {
  rows.push({
    name: `quant-kernels:gptq-total:${phases[i].name}:${shape}:${totalRows}tokens`,
    seconds: (hessRow[i].projectedSecondsFor128x2048 as number) + (solveRow[i].seconds as number),
    projected: measRows < totalRows,
  });
}
notes.push(
  `Hessian measured on ${measRows} of ${totalRows} calibration rows; totals add the linear projection of the Hessian phase to ${totalRows} rows and the measured solve.`,
);
notes.push(
  `format ${format}, act-order, block 128, damp 0.01; RTN output error ${rtnErr.toExponential(3)} on ${evalRows} calibration rows`,
);
report("quant-kernels-gptq", rows, {
  notes,
  chart: { title: `GPTQ ${shape} phases (s)`, value: "seconds", unit: "s" },
});
wasm?.dispose();
