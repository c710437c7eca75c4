// The int21 side of `npm run bench:gemm` (one process per round): argument a JSON task
// {"shapes": [[M, K, N, "nn"|"nt"|"tn"|"tt"], ...], "reps": n, "relaxedSimd": bool}; prints `RESULT {json}` with
// the CPU milliseconds of one sgemm per shape (median over reps, after warm-up calls that let the engine's
// optimizing tier take over the kernels). Operands live in wasm memory (allocF32), as the autograd ops keep them.
import { cpuUsage } from "node:process";

const task = JSON.parse(process.argv[2]);
const qk = await import("@int21/quant-kernels/wasm").catch(() => import("@int21/quant-kernels"));
const be = await qk.createWasmBackend({ threads: 1, relaxedSimd: task.relaxedSimd });
let seed = 1;
const rnd = () => {
  seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
  return seed / 2 ** 31 - 1;
};
const out = [];
for (const [M, K, N, t] of task.shapes) {
  const transA = t[0] === "t";
  const transB = t[1] === "t";
  const A = be.allocF32(M * K);
  const B = be.allocF32(K * N);
  const C = be.allocF32(M * N);
  for (let i = 0; i < A.length; i++) A[i] = rnd();
  for (let i = 0; i < B.length; i++) B[i] = rnd();
  const run = () => be.sgemm({ M, N, K, A, B, C, transA, transB });
  for (let i = 0; i < 3; i++) run();
  const cpu = [];
  const wall = [];
  for (let r = 0; r < task.reps; r++) {
    const c0 = cpuUsage();
    const t0 = performance.now();
    run();
    wall.push(performance.now() - t0);
    const d = cpuUsage(c0);
    cpu.push((d.user + d.system) / 1000);
  }
  cpu.sort((a, b) => a - b);
  wall.sort((a, b) => a - b);
  out.push({ shape: [M, K, N, t], cpuMs: cpu[cpu.length >> 1], wallMs: wall[wall.length >> 1] });
  be.freeF32(A);
  be.freeF32(B);
  be.freeF32(C);
}
console.log(`RESULT ${JSON.stringify({ relaxedSimd: be.relaxedSimd, results: out })}`);
be.dispose();
