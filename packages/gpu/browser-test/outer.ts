// A worker of the page: blocks in Atomics.wait while the nested device worker (device.ts) runs the kernels.
import { createWebGpuSyncBackend } from "../src/index";
import { createReferenceBackend, rtnQuantize } from "@int21/quant-kernels";

const maxDiff = (a: Float32Array, r: Float32Array) =>
  a.reduce((m, v, i) => Math.max(m, Math.abs(v - r[i])), 0);

try {
  const b = await createWebGpuSyncBackend({
    fallback: createReferenceBackend(),
    warn: () => {},
    worker: () => new Worker(new URL("./device.ts", import.meta.url), { type: "module" }),
  });
  const ref = createReferenceBackend();
  const N = 48;
  const K = 200;
  const rows = 5;
  const W = Float32Array.from({ length: N * K }, (_, i) => Math.sin(i * 0.37) * 0.1);
  const q = rtnQuantize(W, N, K, "int3-g64-asym-f16");
  const x = Float32Array.from({ length: rows * K }, (_, i) => Math.cos(i * 0.11));
  const y = new Float32Array(rows * N);
  const yr = new Float32Array(rows * N);
  const g = Float32Array.from({ length: rows * N }, (_, i) => Math.sin(i));
  const dx = new Float32Array(rows * K);
  const dxr = new Float32Array(rows * K);
  const C = new Float32Array(rows * N);
  const Cr = new Float32Array(rows * N);
  if (!b.fallbackReason) {
    b.qmatmul(x, rows, q, y);
    b.qmatmulT(g, rows, q, dx);
    b.sgemm({ M: rows, N, K, A: x, B: W, C, transB: true });
  }
  ref.qmatmul(x, rows, q, yr);
  ref.qmatmulT(g, rows, q, dxr);
  ref.sgemm({ M: rows, N, K, A: x, B: W, C: Cr, transB: true });
  postMessage({
    isolated: (self as { crossOriginIsolated?: boolean }).crossOriginIsolated,
    name: b.name,
    reason: b.fallbackReason,
    adapter: b.context?.adapter ?? null,
    qmatmul: maxDiff(y, yr),
    qmatmulT: maxDiff(dx, dxr),
    sgemm: maxDiff(C, Cr),
    stats: b.stats(),
  });
  b.dispose();
} catch (e) {
  postMessage({ error: String((e as Error)?.stack ?? e) });
}
