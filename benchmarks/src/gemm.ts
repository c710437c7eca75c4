// `npm run bench:gemm`: the float GEMM on one thread — int21's wasm sgemm (plain SIMD, and relaxed SIMD where
// the engine has it) against torch.matmul (when a python with torch is found: INT21_PYTHON, default python3) —
// by CPU time, the programs interleaved round after round, one process each, with the load average around each.
// Never a CI requirement. Shapes: 1024³ and the stories110M LoRA step's (seq 512, d 768, FFN 2048), as
// M×K×N with the operand layouts the step uses: forward x·Wᵀ ("nt"), input gradient g·W ("nn"), weight
// gradient gᵀ·x ("tn").
// Environment: INT21_GEMM_ROUNDS (3), INT21_GEMM_REPS (5), INT21_BENCH_QUICK=1 (small shapes, one round).
import { spawnSync } from "node:child_process";
import { loadavg } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { type Row, report } from "@int21/bench-utils";

const here = dirname(fileURLToPath(import.meta.url));
const quick = process.env.INT21_BENCH_QUICK === "1";
const rounds = quick ? 1 : Number(process.env.INT21_GEMM_ROUNDS ?? "3");
const reps = quick ? 2 : Number(process.env.INT21_GEMM_REPS ?? "5");
type Shape = [number, number, number, "nn" | "nt" | "tn"];
const shapes: Shape[] = quick
  ? [
      [64, 64, 64, "nn"],
      [32, 48, 40, "nt"],
    ]
  : [
      [1024, 1024, 1024, "nn"],
      [512, 768, 768, "nt"],
      [512, 768, 2048, "nt"],
      [512, 2048, 768, "nt"],
      [512, 768, 768, "nn"],
      [512, 2048, 768, "nn"],
      [512, 768, 2048, "nn"],
      [768, 512, 768, "tn"],
      [2048, 512, 768, "tn"],
      [768, 512, 2048, "tn"],
    ];
const key = (s: Shape) => `${s[0]}×${s[1]}×${s[2]} ${s[3]}`;

interface Result {
  shape: Shape;
  cpuMs: number;
  wallMs: number;
}
interface Program {
  name: string;
  cmd: string;
  args: string[];
}

function findPython(): string | undefined {
  const py = process.env.INT21_PYTHON ?? "python3";
  const r = spawnSync(py, ["-c", "import torch; print(torch.__version__)"], { encoding: "utf8" });
  return r.status === 0 ? py : undefined;
}

function relaxedInNode(flag: boolean): boolean {
  const r = spawnSync(
    process.execPath,
    [
      ...(flag ? ["--experimental-wasm-relaxed-simd"] : []),
      "-e",
      "const b=new Uint8Array([0,97,115,109,1,0,0,0,1,5,1,96,0,1,123,3,2,1,0,10,61,1,59,0,...[0,1,2].flatMap(()=>[253,12,...new Array(16).fill(0)]),253,133,2,11]);process.exit(WebAssembly.validate(b)?0:1)",
    ],
    { stdio: "ignore" },
  );
  return r.status === 0;
}

const task = JSON.stringify({ shapes, reps });
const child = join(here, "gemm", "int21-child.mjs");
const programs: Program[] = [
  {
    name: "int21 plain SIMD",
    cmd: process.execPath,
    args: [child, JSON.stringify({ shapes, reps, relaxedSimd: false })],
  },
];
// Node 20 needs the flag for relaxed SIMD; later Node has it on.
const relaxedFlag = relaxedInNode(false)
  ? []
  : relaxedInNode(true)
    ? ["--experimental-wasm-relaxed-simd"]
    : null;
if (relaxedFlag !== null) {
  programs.push({
    name: "int21 relaxed SIMD",
    cmd: process.execPath,
    args: [...relaxedFlag, child, JSON.stringify({ shapes, reps, relaxedSimd: true })],
  });
}
const python = findPython();
if (python !== undefined)
  programs.push({ name: "torch.matmul", cmd: python, args: [join(here, "gemm", "torch_child.py"), task] });

const results = new Map<string, Result[][]>(programs.map((p) => [p.name, []]));
const loads: number[] = [];
for (let r = 0; r < rounds; r++) {
  for (const p of programs) {
    const l0 = loadavg()[0];
    const out = spawnSync(p.cmd, p.args, { encoding: "utf8", maxBuffer: 1 << 24 });
    loads.push((l0 + loadavg()[0]) / 2);
    const line = out.stdout.split("\n").find((s) => s.startsWith("RESULT "));
    if (out.status !== 0 || line === undefined) {
      throw new Error(`bench:gemm: ${p.name} failed (exit ${out.status}):\n${out.stderr}`);
    }
    results.get(p.name)?.push((JSON.parse(line.slice(7)) as { results: Result[] }).results);
    console.log(`round ${r + 1}/${rounds} ${p.name}: done (load ${loads.at(-1)?.toFixed(1)})`);
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const rows: Row[] = [];
for (const [i, s] of shapes.entries()) {
  const gflop = (2 * s[0] * s[1] * s[2]) / 1e9;
  const cpu = (name: string) => {
    const rs = results.get(name);
    return rs === undefined || rs.length === 0 ? undefined : median(rs.map((x) => x[i].cpuMs));
  };
  const torch = cpu("torch.matmul");
  for (const p of programs) {
    const ms = cpu(p.name) as number;
    const row: Row = { name: `${p.name} ${key(s)}`, cpuMs: ms, gflops: gflop / (ms / 1e3) };
    if (torch !== undefined) row.vsTorch = torch / ms;
    rows.push(row);
  }
}
const notes = [
  `1 thread; CPU time (process.cpuUsage / time.process_time) of one call, median of ${reps} calls per process and of ${rounds} interleaved rounds; load average ${Math.min(...loads).toFixed(1)}–${Math.max(...loads).toFixed(1)} (2 vCPUs shared with other work: compare the ratios, not absolute speeds).`,
  "vsTorch = torch.matmul's CPU time / this row's (1 = as fast as PyTorch). Shapes are M×K×N; nt = A·Bᵀ (forward x·Wᵀ), nn = A·B (input gradient), tn = Aᵀ·B (weight gradient).",
];
console.log(
  report("gemm", rows, {
    notes,
    chart: { title: "float GEMM, 1 thread, GFLOP/s of CPU time", value: "gflops", unit: "GFLOP/s" },
  }),
);
