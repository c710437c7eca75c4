// `npm run bench:peers`: int21 against the tools people would otherwise use, on this CPU, with the same
// weights — PyTorch + PEFT for LoRA training (when a python with torch, transformers and peft is found) and
// llama.cpp for decoding (when LLAMA_CPP_DIR holds a build with llama-bench). Never a CI requirement.
//
// 1. writes each synthetic shape once (model-llama's syntheticWeights, seed 1) as a Hugging Face folder
//    (what int21 and PyTorch load) and as GGUF F32 / Q4_0 (+ Q2_K through llama-quantize) for llama.cpp;
// 2. runs every task in its own process, round after round, the programs interleaved inside each round,
//    recording wall and CPU time and the load average around each task;
// 3. reports medians over the rounds and the ratios int21 / peer (benchmarks/results/peers.{json,svg}).
//
// Environment: INT21_PEERS_SHAPES (default stories15M,stories110M), INT21_PEERS_ROUNDS (3),
// INT21_PEERS_SEQ (512), INT21_PEERS_STEPS (2 measured steps after a warm-up step), INT21_PEERS_THREADS (1),
// INT21_PYTHON (default: python3, used only if it imports torch, transformers and peft), LLAMA_CPP_DIR,
// INT21_PEERS_DIR (where the models are written; default <tmp>/int21-peers), INT21_BENCH_QUICK=1 (a smoke
// run: stories260K shape, seq 32, one round), INT21_PEERS_ONLY=decode (only the decode and prefill rows),
// =prefill (only the prefill rows) or =step (only the training-step rows). A run with INT21_PEERS_THREADS=N
// other than 1 names its rows "… N threads" and adds "scaling:" rows (N threads / 1 thread) against the
// 1-thread rows of the results file. A partial run (ONLY, or N threads) keeps the rows of an existing
// results/peers.json that it did not measure, each marked with its own date. INT21_PEERS_BASE=<dir>: also runs <dir>/int21-child.mjs (a copy of the child next
// to a node_modules/@int21 of an earlier build) as "int21-base", interleaved with the others, so a change
// is measured against its predecessor in the same run. INT21_PEERS_CHILD=<dir>: the same for the main int21
// rows (a frozen copy of the build, so packages rebuilt during a long run do not change what is measured).
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { type Row, barChartSvg, report, resultsDir } from "@int21/bench-utils";
import { type SyntheticModelName, syntheticConfig, syntheticWeights } from "@int21/model-llama";
import { Llama2cTokenizer, exportHf, saveGguf } from "@int21/loaders";
import { SHARED, hasShared, sharedPath } from "@int21/shared-data";

const here = dirname(fileURLToPath(import.meta.url));
const quick = process.env.INT21_BENCH_QUICK === "1";
const env = (k: string, d: string) => process.env[k] ?? d;
const shapes = (quick ? "stories260K" : env("INT21_PEERS_SHAPES", "stories15M,stories110M")).split(
  ",",
) as SyntheticModelName[];
const rounds = quick ? 1 : Number(env("INT21_PEERS_ROUNDS", "3"));
const seqWanted = quick ? 32 : Number(env("INT21_PEERS_SEQ", "512"));
const steps = quick ? 1 : Number(env("INT21_PEERS_STEPS", "2"));
const threads = Number(env("INT21_PEERS_THREADS", "1"));
const decodeTokens = quick ? 16 : 128;
const work = resolve(env("INT21_PEERS_DIR", join(tmpdir(), "int21-peers")));
const llamaCpp = process.env.LLAMA_CPP_DIR;
const only = process.env.INT21_PEERS_ONLY;
if (only !== undefined && !["decode", "prefill", "step"].includes(only))
  throw new Error(`INT21_PEERS_ONLY=${only}: expected decode, prefill or step`);
if (!Number.isInteger(threads) || threads < 1)
  throw new Error(`INT21_PEERS_THREADS=${process.env.INT21_PEERS_THREADS}: expected a positive integer`);
const doSteps = only === undefined || only === "step";
const doDecode = only === undefined || only === "decode";
const doPrefill = only === undefined || only === "decode" || only === "prefill";
const doGemm = only === undefined;
/** The suffix of every row this run measures: "" on 1 thread, " N threads" otherwise. */
const suffix = threads === 1 ? "" : ` ${threads} threads`;
/** `name` with `sfx` before a trailing " (CPU time)". */
const withSuffix = (name: string, sfx: string) =>
  name.endsWith(" (CPU time)") ? `${name.slice(0, -11)}${sfx} (CPU time)` : `${name}${sfx}`;
const baseDir = process.env.INT21_PEERS_BASE;
const childDir = process.env.INT21_PEERS_CHILD ?? join(here, "peers");

/** The python to use for PyTorch, when it imports torch, transformers and peft. */
function findPython(): string | undefined {
  const py = env("INT21_PYTHON", "python3");
  const r = spawnSync(py, ["-c", "import torch, transformers, peft; print(torch.__version__)"], {
    encoding: "utf8",
  });
  return r.status === 0 ? py : undefined;
}

/** A llama.cpp tool in LLAMA_CPP_DIR (build/bin/<name> or <name>). */
function llamaTool(name: string): string | undefined {
  if (!llamaCpp) return undefined;
  for (const p of [join(llamaCpp, "build", "bin", name), join(llamaCpp, "bin", name), join(llamaCpp, name)])
    if (existsSync(p)) return p;
  return undefined;
}

interface Measured {
  wallMs: number;
  /** CPU time of the whole child process (llama-bench), when known. */
  cpuMs?: number;
  load: number;
  out: Record<string, unknown>;
}

/** Runs one task in a child process; returns its RESULT json with the load around it. */
function runTask(cmd: string, args: string[]): Measured {
  const load0 = loadavg()[0];
  const t0 = performance.now();
  const r = spawnSync(cmd, args, {
    encoding: "utf8",
    maxBuffer: 64 * 2 ** 20,
    env: { ...process.env, OMP_NUM_THREADS: String(threads) },
  });
  const wallMs = performance.now() - t0;
  if (r.status !== 0)
    throw new Error(`${cmd} ${args.join(" ").slice(0, 200)} failed (${r.status}):\n${r.stderr.slice(-2000)}`);
  const line = r.stdout.split("\n").find((l) => l.startsWith("RESULT "));
  const out = line
    ? (JSON.parse(line.slice(7)) as Record<string, unknown>)
    : { stdout: r.stdout, stderr: r.stderr };
  return { wallMs, load: (load0 + loadavg()[0]) / 2, out };
}

/** The kernels the int21 children reported running (their RESULT's `relaxedSimd`), for the notes. */
const int21Kernels = new Set<string>();
function int21(task: Record<string, unknown>, dir = childDir): Measured {
  const m = runTask(process.execPath, [join(dir, "int21-child.mjs"), JSON.stringify({ threads, ...task })]);
  if (typeof m.out.relaxedSimd === "boolean")
    int21Kernels.add(m.out.relaxedSimd ? "wasm (relaxed SIMD)" : "wasm (SIMD)");
  return m;
}

function torch(py: string, task: Record<string, unknown>): Measured {
  return runTask(py, [join(here, "peers", "torch_child.py"), JSON.stringify({ threads, ...task })]);
}

/**
 * llama-bench's tokens per second for `model`, decode (`-n`) or prefill (`-p`) in its own process (3
 * repetitions), with the process's CPU time (through the shell's `times`): `cpuTokensPerSec` counts the
 * repetitions' tokens over that CPU time (llama-bench's one-token / 32-token warm-up and the model load are
 * in the CPU time too, so it is slightly pessimistic for llama.cpp).
 */
function llamaBench(bench: string, model: string, what: "decode" | "prefill", seq: number): Measured {
  const reps = 3;
  const tokens = what === "decode" ? decodeTokens : seq;
  const args = ["-m", model, "-p", what === "prefill" ? String(seq) : "0"];
  args.push("-n", what === "decode" ? String(decodeTokens) : "0", "-r", String(reps), "-t", String(threads));
  args.push("-o", "json");
  const m = runTask("/bin/sh", ["-c", '"$@"; times >&2', "sh", bench, ...args]);
  const rows = JSON.parse(String(m.out.stdout ?? "[]")) as { avg_ts: number }[];
  // `times`: the shell's user/system time, then its children's ("0m2.074s 0m0.042s")
  const last = String(m.out.stderr ?? "")
    .trim()
    .split("\n")
    .pop();
  const secs = [...(last ?? "").matchAll(/(\d+)m([\d.]+)s/g)].map((x) => Number(x[1]) * 60 + Number(x[2]));
  const cpuMs = secs.length === 2 ? (secs[0] + secs[1]) * 1000 : undefined;
  return {
    ...m,
    cpuMs,
    out: {
      tokensPerSec: rows[0]?.avg_ts,
      cpuTokensPerSec: cpuMs ? (reps * tokens * 1000) / cpuMs : undefined,
    },
  };
}

/** Writes the shape's HF folder and GGUFs once (a stamp file marks a complete write). */
async function writeModels(shape: SyntheticModelName): Promise<{ hf: string; gguf: Record<string, string> }> {
  const dir = join(work, shape);
  const hf = join(dir, "hf");
  const gguf = {
    F32: join(dir, "model-f32.gguf"),
    Q4_0: join(dir, "model-q4_0.gguf"),
    Q2_K: join(dir, "model-q2_k.gguf"),
  };
  const stamp = join(dir, "complete");
  if (!existsSync(stamp)) {
    mkdirSync(dir, { recursive: true });
    console.log(`writing the ${shape} models into ${dir}`);
    const w = syntheticWeights(syntheticConfig(shape), { seed: 1 });
    await exportHf(hf, w);
    const tokenizer =
      w.config.vocabSize === 32000 && hasShared(SHARED.llama2Tokenizer)
        ? Llama2cTokenizer.fromFile(sharedPath(SHARED.llama2Tokenizer))
        : undefined;
    if (tokenizer) {
      await saveGguf(gguf.F32, w, { type: "F32", tokenizer });
      await saveGguf(gguf.Q4_0, w, { type: "Q4_0", tokenizer });
    }
    writeFileSync(stamp, new Date().toISOString());
  }
  const quantize = llamaTool("llama-quantize");
  if (quantize && existsSync(gguf.F32) && !existsSync(gguf.Q2_K))
    spawnSync(quantize, [gguf.F32, gguf.Q2_K, "Q2_K"], { stdio: "ignore" });
  return { hf, gguf };
}

const median = (xs: number[]) => {
  const s = xs.filter(Number.isFinite).sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const h = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[h] : (s[h - 1] + s[h]) / 2;
};

const py = findPython();
const bench = llamaTool("llama-bench");
const notes: string[] = [
  `peers: PyTorch ${py ? `via ${py}` : "not found (set INT21_PYTHON to a python with torch, transformers and peft)"}; llama.cpp ${bench ? `at ${llamaCpp}` : "not found (set LLAMA_CPP_DIR to a build with llama-bench)"}`,
  ...(baseDir
    ? [`int21-base rows: the build in ${baseDir} (its int21-child.mjs), run right after int21 in each round`]
    : []),
  `${rounds} round(s), programs interleaved in each (medians; the mean of the middle two for an even count); ${threads} thread(s); LoRA r 8 on q,v, AdamW, batch 1, seq min(${seqWanted}, the shape's seqLen); medians of ${steps} step(s) after a warm-up step`,
];
const samples = new Map<
  string,
  { wall: number[]; cpu: number[]; load: number[]; rss: number[]; value: number[] }
>();
function record(measured: string, m: Measured, value: number, wall: number, cpu?: number) {
  const name = withSuffix(measured, suffix);
  const s = samples.get(name) ?? { wall: [], cpu: [], load: [], rss: [], value: [] };
  s.wall.push(wall);
  if (cpu !== undefined) s.cpu.push(cpu);
  s.load.push(m.load);
  if (typeof m.out.peakRssBytes === "number") s.rss.push(m.out.peakRssBytes);
  s.value.push(value);
  samples.set(name, s);
  console.log(`  ${name}: ${value.toFixed(2)} (load ${m.load.toFixed(1)})`);
}

/** A tokens-per-second row of int21 (wall clock) and its "(CPU time)" twin (tokens per CPU second). */
function recordRate(name: string, m: Measured, tokens: number, ms: number, cpuMs: number) {
  record(name, m, (tokens * 1000) / ms, ms, cpuMs);
  record(`${name} (CPU time)`, m, (tokens * 1000) / cpuMs, ms, cpuMs);
}

for (const shape of shapes) {
  const { hf, gguf } = await writeModels(shape);
  // stories15M's context is 256: its steps and prefill use min(seq, seqLen) tokens on every side
  const seq = Math.min(seqWanted, syntheticConfig(shape).seqLen);
  for (let r = 0; r < rounds; r++) {
    console.log(`${shape}: round ${r + 1}/${rounds}`);
    // training steps, interleaved: int21 f32, PyTorch, int21 int4, PyTorch (checkpointed), int21 int2
    const stepCases: [string, () => Measured][] = [
      [`${shape} step int21 f32`, () => int21({ task: "step", dir: hf, fmt: "f32", seq, steps })],
      ...(py
        ? ([[`${shape} step torch f32`, () => torch(py, { task: "step", dir: hf, seq, steps })]] as [
            string,
            () => Measured,
          ][])
        : []),
      [`${shape} step int21 int4`, () => int21({ task: "step", dir: hf, fmt: "int4", seq, steps })],
      ...(py
        ? ([
            [
              `${shape} step torch f32 ckpt`,
              () => torch(py, { task: "step", dir: hf, seq, steps, checkpoint: true }),
            ],
          ] as [string, () => Measured][])
        : []),
      [`${shape} step int21 int2`, () => int21({ task: "step", dir: hf, fmt: "int2", seq, steps })],
    ];
    for (const [name, run] of doSteps ? stepCases : []) {
      const m = run();
      record(name, m, Number(m.out.stepMs) / 1000, Number(m.out.stepMs), Number(m.out.stepCpuMs));
    }
    // decoding and prefill, interleaved with llama.cpp (and the baseline build, when given)
    const who: [string, string | undefined][] = [
      ["int21", undefined],
      ...(baseDir ? ([["int21-base", baseDir]] as [string, string][]) : []),
    ];
    for (const fmt of doPrefill ? ["f32", "int4", "int2"] : []) {
      if (!doDecode && fmt !== "f32") continue;
      for (const [label, dir] of doDecode ? who : []) {
        const d = int21({ task: "decode", dir: hf, fmt, tokens: decodeTokens }, dir);
        recordRate(`${shape} decode ${label} ${fmt}`, d, decodeTokens, Number(d.out.ms), Number(d.out.cpuMs));
      }
      if (fmt === "int4" && doDecode) {
        // the same INT4 weights decoded with int8 activations (opt-in; llama.cpp's Q4_0 runs Q8_0 ones)
        const d = int21({ task: "decode", dir: hf, fmt: "int4-a8", tokens: decodeTokens });
        recordRate(`${shape} decode int21 int4-a8`, d, decodeTokens, Number(d.out.ms), Number(d.out.cpuMs));
      }
      const peer = { f32: "F32", int4: "Q4_0", int2: "Q2_K" }[fmt] as "F32" | "Q4_0" | "Q2_K";
      if (bench && existsSync(gguf[peer]) && doDecode) {
        const l = llamaBench(bench, gguf[peer], "decode", seq);
        record(`${shape} decode llama.cpp ${peer}`, l, Number(l.out.tokensPerSec), l.wallMs, l.cpuMs);
        record(
          `${shape} decode llama.cpp ${peer} (CPU time)`,
          l,
          Number(l.out.cpuTokensPerSec),
          l.wallMs,
          l.cpuMs,
        );
      }
      if (bench && existsSync(gguf[peer]) && fmt === "f32") {
        const lp = llamaBench(bench, gguf[peer], "prefill", seq);
        record(`${shape} prefill llama.cpp ${peer}`, lp, Number(lp.out.tokensPerSec), lp.wallMs, lp.cpuMs);
        record(
          `${shape} prefill llama.cpp ${peer} (CPU time)`,
          lp,
          Number(lp.out.cpuTokensPerSec),
          lp.wallMs,
          lp.cpuMs,
        );
      }
    }
    for (const [label, dir] of doPrefill ? who : []) {
      const p = int21({ task: "prefill", dir: hf, fmt: "f32", tokens: seq }, dir);
      recordRate(`${shape} prefill ${label} f32`, p, seq, Number(p.out.ms), Number(p.out.cpuMs));
    }
  }
}
for (let r = 0; r < (doGemm ? rounds : 0); r++) {
  const n = quick ? 128 : 1024;
  const a = int21({ task: "gemm", n });
  record(`gemm ${n}³ int21`, a, Number(a.out.gflops), Number(a.out.ms));
  if (py) {
    const t = torch(py, { task: "gemm", n });
    record(`gemm ${n}³ torch`, t, Number(t.out.gflops), Number(t.out.ms));
  }
}

const rows: Row[] = [];
const unitOf = (name: string) =>
  name.includes(" step ") ? "s/step" : name.startsWith("gemm") ? "GFLOP/s" : "tok/s";
for (const [name, s] of samples) {
  rows.push({
    name,
    value: median(s.value),
    unit: unitOf(name),
    wallMs: median(s.wall),
    cpuMs: s.cpu.length ? median(s.cpu) : null,
    peakRssMB: s.rss.length ? median(s.rss) / 1e6 : null,
    load: median(s.load),
    runs: s.value.length,
  });
}
if (only !== undefined || threads !== 1) {
  // a partial run keeps the measured rows it did not measure again from the previous results, each dated
  // (ratio and scaling rows are computed again below)
  const prev = join(resultsDir(), "peers.json");
  if (existsSync(prev)) {
    const old = JSON.parse(readFileSync(prev, "utf8")) as {
      date?: string;
      rows: (Row & { date?: string })[];
    };
    const kept = old.rows
      .filter((r) => !r.name.startsWith("ratio: ") && !r.name.startsWith("scaling: ") && !samples.has(r.name))
      .map((r) => ({ ...r, date: r.date ?? old.date ?? "an earlier run" }));
    rows.push(...kept);
    if (kept.length > 0)
      notes.push(
        `${kept.length} row(s) not measured in this run (${only ?? "all"} rows, ${threads} thread(s)) are kept from earlier runs, each with its date`,
      );
  }
}
const val = (name: string) => rows.find((r) => r.name === name)?.value as number | undefined;
/** int21 / peer, "higher is better" quantities inverted so every ratio reads as "int21's speed / peer's". */
function ratio(label: string, ours: string, peer: string, lowerIsBetter: boolean) {
  const a = val(ours);
  const b = val(peer);
  if (a === undefined || b === undefined) return;
  rows.push({ name: `ratio: ${label}`, value: lowerIsBetter ? b / a : a / b, unit: "× peer speed" });
}
const suffixes = new Set([""]);
for (const r of rows) {
  const m = / (\d+) threads(?: \(CPU time\))?$/.exec(r.name);
  if (m) suffixes.add(` ${m[1]} threads`);
}
const ratioShapes = new Set(
  rows.map((r) => /^(stories\w+) /.exec(r.name)?.[1]).filter((x): x is string => x !== undefined),
);
for (const sfx of suffixes)
  for (const shape of ratioShapes) {
    for (const fmt of ["f32", "int4", "int2"])
      ratio(
        `${shape} step int21 ${fmt} vs torch f32${sfx}`,
        `${shape} step int21 ${fmt}${sfx}`,
        `${shape} step torch f32${sfx}`,
        true,
      );
    for (const who of baseDir ? ["int21", "int21-base"] : ["int21"]) {
      for (const clock of ["", " (CPU time)"]) {
        for (const [fmt, peer] of [
          ["f32", "F32"],
          ["int4", "Q4_0"],
          ...(who === "int21" ? [["int4-a8", "Q4_0"]] : []),
          ["int2", "Q2_K"],
        ])
          ratio(
            `${shape} decode ${who} ${fmt} vs llama.cpp ${peer}${sfx}${clock}`,
            `${shape} decode ${who} ${fmt}${sfx}${clock}`,
            `${shape} decode llama.cpp ${peer}${sfx}${clock}`,
            false,
          );
        ratio(
          `${shape} prefill ${who} f32 vs llama.cpp F32${sfx}${clock}`,
          `${shape} prefill ${who} f32${sfx}${clock}`,
          `${shape} prefill llama.cpp F32${sfx}${clock}`,
          false,
        );
      }
    }
  }
const n = quick ? 128 : 1024;
for (const sfx of suffixes)
  ratio(`gemm ${n}³ int21 vs torch${sfx}`, `gemm ${n}³ int21${sfx}`, `gemm ${n}³ torch${sfx}`, false);
// N threads / 1 thread, for every measured row that has both (speed ratios: > 1 = faster on N threads)
for (const r of [...rows]) {
  // (wall clock only: tokens per CPU second do not grow with threads)
  const m = /^(.*) (\d+) threads$/.exec(r.name);
  if (!m || r.name.startsWith("ratio: ")) continue;
  const one = val(m[1]);
  if (one === undefined) continue;
  rows.push({
    name: `scaling: ${m[1]} ${m[2]} threads / 1 thread`,
    value: r.unit === "s/step" ? one / (r.value as number) : (r.value as number) / one,
    unit: "× 1-thread speed",
  });
}
notes.push(
  "ratios read as int21's speed / the peer's (1 = as fast; 0.5 = half as fast); step rows are seconds per step, decode/prefill rows tokens per second",
);
if (int21Kernels.size > 0) notes.push(`int21 kernels: ${[...int21Kernels].join(", ")}`);
const file = report("peers", rows, { notes });
const ratios = rows.filter((r) => r.name.startsWith("ratio: ") && Number.isFinite(r.value as number));
writeFileSync(
  file.replace(/\.json$/, ".svg"),
  barChartSvg(
    "int21 speed / peer speed (1 = as fast)",
    ratios.map((r) => r.name.slice(7)),
    ratios.map((r) => r.value as number),
    "×",
  ),
);
