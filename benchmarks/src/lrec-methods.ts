// LREC methods on stories260K: how much of the INT2 (and INT3 / INT4) GPTQ gap each adapter initialisation
// and training variant recovers on held-out stories the run never trains on, at what effective bits.
//
// Run: npm run bench:lrec -w benchmarks              (every configuration; ≈ 1–3 min each on 2 cores)
//      INT21_LREC_CONFIGS=int2-r8-svd,int2-r8-chol npm run bench:lrec -w benchmarks   (a subset)
//      INT21_LREC_STEPS=20 INT21_LREC_HELD=10 …                                      (a smoke run)
// Each configuration's row is merged into benchmarks/results/lrec-methods.json (keyed by its name), and
// lrec-methods.md / .svg are rewritten from all rows, so configurations can be run one at a time.
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { setBackend } from "@int21/autograd";
import { barChartSvg, resultsDir, type Row } from "@int21/bench-utils";
import {
  adapterBitsAt,
  addLrecAdapter,
  allocateRanks,
  effectiveBits,
  formatLrecProgress,
  LLAMA_SHAPES,
  loftqQuantize,
  type LrecOptions,
  runLrec,
  storyTokens,
  TeacherCache,
  windowData,
} from "@int21/lrec";
import {
  calibrationWindows,
  evaluateNll,
  type LlamaWeights,
  type NllResult,
  quantizeModel,
} from "@int21/model-llama";
import { Llama2cTokenizer, loadLlama2c } from "@int21/loaders";
import { createWasmBackend } from "@int21/quant-kernels/wasm";
import { SHARED, sharedPath } from "@int21/shared-data";

/** One configuration of the table. */
interface Config {
  name: string;
  bits: 2 | 3 | 4;
  /** Rank (the mean rank with `alloc`). 0 = no adapter. */
  r: number;
  /** Adapter start: none (B = 0), plain SVD of W − Q, diagonal-weighted, Cholesky-whitened. */
  init: "zero" | "svd" | "diag" | "chol";
  /** LoftQ alternations (1 = none). */
  loftq?: number;
  /** Train group scales and zeros with the adapter (at this rate ρ; true = 1). */
  scales?: boolean | number;
  /** Ranks by layer sensitivity under the uniform-r budget. */
  alloc?: boolean;
  /** Teacher top-k cached on disk first. */
  cacheK?: number;
  /** LREC steps (0: init only). */
  steps: number;
  /** Peak Adam learning rate (default LR). */
  lr?: number;
  /** Warmup steps (default 10). */
  warmup?: number;
  /** Windows per step (default B). */
  batch?: number;
  /** λ (default LAMBDA[bits]). */
  lambda?: number;
  /** Train the zero points with the scales (default true). */
  zeros?: boolean;
}

const STEPS = Number(process.env.INT21_LREC_STEPS ?? 150);
const CONFIGS: Config[] = [
  { name: "int2-none", bits: 2, r: 0, init: "zero", steps: 0 },
  { name: "int2-r8-svd-only", bits: 2, r: 8, init: "svd", steps: 0 },
  { name: "int2-r8-chol-only", bits: 2, r: 8, init: "chol", steps: 0 },
  { name: "int2-r8-zero", bits: 2, r: 8, init: "zero", steps: STEPS },
  { name: "int2-r8-svd", bits: 2, r: 8, init: "svd", steps: STEPS },
  { name: "int2-r8-diag", bits: 2, r: 8, init: "diag", steps: STEPS },
  { name: "int2-r8-chol", bits: 2, r: 8, init: "chol", steps: STEPS },
  { name: "int2-r8-chol-loftq", bits: 2, r: 8, init: "chol", loftq: 3, steps: STEPS },
  { name: "int2-r8-chol-alloc", bits: 2, r: 8, init: "chol", alloc: true, steps: STEPS },
  { name: "int2-r8-chol-scales", bits: 2, r: 8, init: "chol", scales: true, steps: STEPS },
  { name: "int2-r8-chol-scales10", bits: 2, r: 8, init: "chol", scales: 10, steps: STEPS },
  { name: "int2-r8-chol-loftq-scales", bits: 2, r: 8, init: "chol", loftq: 3, scales: true, steps: STEPS },
  { name: "int2-r8-chol-loftq-scales10", bits: 2, r: 8, init: "chol", loftq: 3, scales: 10, steps: STEPS },
  {
    name: "int2-r8-chol-loftq-scales10-300",
    bits: 2,
    r: 8,
    init: "chol",
    loftq: 3,
    scales: 10,
    steps: 2 * STEPS,
  },
  ...(
    [
      ["int2-r8-chol-loftq-scales10-600", { steps: 600 }],
      ["int2-r8-chol-loftq-scales10-1000", { steps: 1000 }],
      ["int2-r8-chol-loftq-scales10-300-lr3e-3", { steps: 300, lr: 3e-3 }],
      ["int2-r8-chol-loftq-scales10-300-lr3e-3-w30", { steps: 300, lr: 3e-3, warmup: 30 }],
      ["int2-r8-chol-loftq-scales30-300", { steps: 300, scales: 30 }],
      ["int2-r8-chol-loftq-scales10-300-nozeros", { steps: 300, zeros: false }],
      ["int2-r8-chol-loftq6-scales10-300", { steps: 300, loftq: 6 }],
      ["int2-r8-chol-loftq-scales10-300-b8", { steps: 300, batch: 8 }],
      ["int2-r8-chol-loftq-scales10-300-l240", { steps: 300, lambda: 240 }],
      ["int2-r8-chol-loftq-scales10-300-l40", { steps: 300, lambda: 40 }],
    ] as const
  ).map(([name, o]): Config => ({ name, bits: 2, r: 8, init: "chol", loftq: 3, scales: 10, ...o })),
  { name: "int2-r8-chol-cache64", bits: 2, r: 8, init: "chol", cacheK: 64, steps: STEPS },
  { name: "int2-r8-chol-scales-alloc", bits: 2, r: 8, init: "chol", scales: true, alloc: true, steps: STEPS },
  { name: "int2-r16-svd", bits: 2, r: 16, init: "svd", steps: STEPS },
  { name: "int3-none", bits: 3, r: 0, init: "zero", steps: 0 },
  { name: "int3-r8-svd", bits: 3, r: 8, init: "svd", steps: STEPS },
  { name: "int3-r8-chol-scales", bits: 3, r: 8, init: "chol", scales: true, steps: STEPS },
  { name: "int3-r8-chol-loftq-scales10", bits: 3, r: 8, init: "chol", loftq: 3, scales: 10, steps: STEPS },
  ...(
    [
      ["int3-r8-chol-loftq-scales10-300", { steps: 300 }],
      ["int3-r8-chol-loftq-scales10-600", { steps: 600 }],
      ["int3-r8-chol-loftq-scales10-1000", { steps: 1000 }],
      ["int3-r8-chol-loftq-scales10-1500", { steps: 1500 }],
      ["int3-r8-chol-loftq-scales10-2000", { steps: 2000 }],
      ["int3-r8-chol-loftq-scales10-300-lr3e-3", { steps: 300, lr: 3e-3 }],
      ["int3-r8-chol-loftq-scales10-300-alloc", { steps: 300, alloc: true }],
      ["int3-r8-chol-loftq-scales10-300-cache64", { steps: 300, cacheK: 64 }],
      ["int3-r8-chol-loftq-scales30-300", { steps: 300, scales: 30 }],
      ["int3-r8-chol-loftq-scales3-300", { steps: 300, scales: 3 }],
      ["int3-r8-chol-loftq6-scales10-300", { steps: 300, loftq: 6 }],
      ["int3-r8-chol-loftq6-scales10-600", { steps: 600, loftq: 6 }],
      ["int3-r8-chol-loftq-scales10-300-l10", { steps: 300, lambda: 10 }],
      ["int3-r8-chol-loftq-scales10-300-l120", { steps: 300, lambda: 120 }],
      ["int3-r8-chol-loftq-scales10-1000-lr3e-3", { steps: 1000, lr: 3e-3 }],
      ["int3-r8-chol-loftq-scales10-2000-lr3e-3", { steps: 2000, lr: 3e-3 }],
    ] as const
  ).map(([name, o]): Config => ({ name, bits: 3, r: 8, init: "chol", loftq: 3, scales: 10, ...o })),
  { name: "int4-none", bits: 4, r: 0, init: "zero", steps: 0 },
  { name: "int4-r8-svd", bits: 4, r: 8, init: "svd", steps: STEPS },
  { name: "int4-r8-chol-scales", bits: 4, r: 8, init: "chol", scales: true, steps: STEPS },
  { name: "int4-r8-chol-loftq-scales10", bits: 4, r: 8, init: "chol", loftq: 3, scales: 10, steps: STEPS },
  {
    name: "int4-r8-chol-loftq-scales10-300",
    bits: 4,
    r: 8,
    init: "chol",
    loftq: 3,
    scales: 10,
    steps: 2 * STEPS,
  },
];
const wanted = process.env.INT21_LREC_CONFIGS?.split(",").map((s) => s.trim());
// in the order asked for
const run =
  process.env.INT21_LREC_REPORT === "1"
    ? []
    : wanted
      ? wanted.flatMap((w) => CONFIGS.filter((c) => c.name === w))
      : CONFIGS;
if (wanted)
  for (const w of wanted)
    if (!CONFIGS.some((c) => c.name === w))
      throw new Error(
        `INT21_LREC_CONFIGS: no configuration ${w} (have ${CONFIGS.map((c) => c.name).join(", ")})`,
      );

const backend = await createWasmBackend({ threads: 2 });
setBackend(backend);
const teacher = loadLlama2c(sharedPath(SHARED.stories260K), { backend });
const tok = Llama2cTokenizer.fromFile(sharedPath(SHARED.tok512));
const text = readFileSync(sharedPath(SHARED.tinystoriesValid), "utf8");
// held-out: stories 0–99; training and calibration: stories 100 onwards (disjoint)
const HELD = Number(process.env.INT21_LREC_HELD ?? 100);
const held = storyTokens(text, tok, { from: 0, to: HELD, ctx: teacher.config.seqLen });
const train = storyTokens(text, tok, { from: 100, ctx: 1 << 30 }).flat();
const calib = calibrationWindows(train, 16, 128, tok.bosId);
// INT21_LREC_REPORT=1: no run, only the md / svg rewritten from the JSON (and lrec-walltime.json)
const REPORT_ONLY = process.env.INT21_LREC_REPORT === "1";
const ref = REPORT_ONLY ? (undefined as unknown as NllResult) : evaluateNll(teacher, held);
const B = 4;
const T = 128;
const LR = 1.5e-3;
const LAMBDA: Record<number, number> = { 2: 120, 3: 40, 4: 10 };
const format = (bits: number) => `int${bits}-g64-asym-f16`;
const quantize = (bits: number) => (w: LlamaWeights) =>
  quantizeModel(w, { format: format(bits), method: "gptq", calib, backend }).weights;

const out = join(resultsDir(), "lrec-methods.json");
const prior: { rows: Row[] } = existsSync(out)
  ? (JSON.parse(readFileSync(out, "utf8")) as { rows: Row[] })
  : { rows: [] };
const rows = new Map<string, Row>(prior.rows.map((r) => [r.name, r]));
const floatPrior = rows.get("float");
// every token after each story's BOS is scored (what evaluateNll counts on story rows)
const heldTokens = held.reduce((n, story) => n + story.length - 1, 0);
const floatNll = REPORT_ONLY ? Number(floatPrior?.nll) : ref.meanNll;
const plainNll = new Map<number, number>();
for (const r of rows.values())
  if (r.adapter === "none" && typeof r.nll === "number") plainNll.set(Number(r.bits), r.nll);

const mine = new Set<string>();

function save(): void {
  // another process may have added rows since: merge, this process's rows winning
  if (existsSync(out)) {
    const now = JSON.parse(readFileSync(out, "utf8")) as { rows: Row[] };
    for (const r of now.rows) if (!mine.has(r.name)) rows.set(r.name, r);
  }
  const order = new Map(CONFIGS.map((c, i) => [c.name, i]));
  const all = [...rows.values()].sort((a, b) => (order.get(a.name) ?? -1) - (order.get(b.name) ?? -1));
  const notes = [
    `stories260K (a real model; the hf-families miniatures have random weights, so their table would mean nothing), GPTQ int{b}-g64-asym-f16 over 16 × 128 calibration tokens`,
    `held-out: TinyStories validation stories 0–${HELD - 1} (${heldTokens} tokens, float NLL ${floatNll.toFixed(4)}); training and calibration windows from stories 100 onwards`,
    `LREC: alpha 2r on q,k,v,o,gate,up,down; batch ${B}×${T} (b8: 8×${T}); steps as the steps column; Adam at the lr column's peak (warmup 10 steps, w30: 30; cosine to lr/10), L2 1e-5; KL summed + λ·CE averaged, λ ${JSON.stringify(LAMBDA)} (l40 / l240: λ 40 / 240); nozeros: scales trained, zeros fixed`,
    "gap recovered = (NLL_quant − NLL) / (NLL_quant − NLL_float) on the held-out stories",
    "bpw: packed codes + f16 scales and zeros + the adapter at f16 (bpw f32: the adapter at float32); learned scales are stored where the old ones were (no extra bits)",
    `adapter bpw at 1.1B / 7B: the same mean rank on every projection of TinyLlama-1.1B / LLaMA-2-7B, f16`,
    `machine: ${process.env.INT21_LOAD_NOTE ?? "a shared 2-core machine"}, load average ${loadavg()[0].toFixed(1)} at the last write`,
  ];
  const pct = (v: unknown) => (typeof v === "number" ? `${(100 * v).toFixed(1)}%` : "–");
  const f = (v: unknown, d: number) => (typeof v === "number" ? v.toFixed(d) : "–");
  const lines = [
    "| configuration | bits | rank | init | LoftQ | scales | rank alloc | teacher | steps | lr | NLL | KL | gap recovered | bpw (f16 adapter) | bpw (f32) | adapter bpw 1.1B | adapter bpw 7B | train s | wall s | CPU s | load |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ...all.map(
      (r) =>
        `| ${r.name} | ${r.bits} | ${r.r || "–"} | ${r.init} | ${r.loftq} | ${typeof r.scales === "string" ? r.scales : r.scales ? "yes" : "–"} | ${r.alloc ? "yes" : "–"} | ${r.teacher} | ${r.steps} | ${r.steps === 0 ? "–" : (r.lr ?? LR)} | ${f(r.nll, 4)} | ${f(r.kl, 4)} | ${pct(r.gapRecovered)} | ${f(r.bpw, 2)} | ${f(r.bpwF32, 2)} | ${f(r.adapterBpw1B, 3)} | ${f(r.adapterBpw7B, 3)} | ${f(r.trainSeconds, 0)} | ${f(r.wallSeconds, 0)} | ${f(r.cpuSeconds, 0)} | ${typeof r.loadStart === "number" ? `${f(r.loadStart, 1)}→${f(r.loadEnd, 1)}` : "–"} |`,
    ),
    "",
    ...notes.map((n) => `- ${n}`),
  ];
  const wallFile = join(resultsDir(), "lrec-walltime.json");
  if (existsSync(wallFile)) {
    const w = JSON.parse(readFileSync(wallFile, "utf8")) as {
      rows: Row[];
      loadAverage: number;
      notes: string[];
    };
    lines.push(
      "",
      "| LREC wall time | teacher | trained scales | tokens per step | steps | s per 1k tokens | first step (s) | peak RSS (MB) | load avg |",
      "|---|---|---|---|---|---|---|---|---|",
      ...w.rows.map(
        (r) =>
          `| ${r.shape} INT2 g64, r 8 | ${r.teacher ?? "f32"} | ${r.trainScales ? "yes" : "–"} | ${r.tokensPerStep} | ${r.steps} | ${f(r.secondsPer1kTokens, 1)} | ${f(Number(r.firstStepMs) / 1000, 0)} | ${f(r.peakRssMb, 0)} | ${f(r.loadAverage ?? w.loadAverage, 1)} |`,
      ),
      "",
      ...w.notes.map((n) => `- ${n}`),
      "- on a shared 2-core machine at the load average shown: an upper bound",
    );
  }
  writeFileSync(
    out,
    `${JSON.stringify({ suite: "lrec-methods", date: new Date().toISOString(), node: process.version, rows: all, notes }, null, 2)}\n`,
  );
  writeFileSync(join(resultsDir(), "lrec-methods.md"), `${lines.join("\n")}\n`);
  const withGap = all.filter((r) => typeof r.gapRecovered === "number");
  writeFileSync(
    join(resultsDir(), "lrec-methods.svg"),
    barChartSvg(
      "stories260K GPTQ g64 + LREC: held-out NLL gap recovered",
      withGap.map((r) => r.name),
      withGap.map((r) => 100 * Number(r.gapRecovered)),
      "%",
    ),
  );
}

if (!REPORT_ONLY) console.log(`float: NLL ${ref.meanNll.toFixed(4)} over ${ref.tokens} held-out tokens`);
if (!REPORT_ONLY)
  rows.set("float", {
    heldTokens: ref.tokens,
    name: "float",
    bits: 32,
    r: 0,
    init: "–",
    loftq: "–",
    scales: false,
    alloc: false,
    teacher: "–",
    steps: 0,
    nll: ref.meanNll,
    kl: 0,
    gapRecovered: null,
    bpw: 32,
    bpwF32: 32,
    adapterBpw1B: null,
    adapterBpw7B: null,
    trainSeconds: 0,
    adapter: "none",
  });

for (const c of run) {
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  const load0 = loadavg()[0];
  if (c.r > 0 && !plainNll.has(c.bits)) {
    // the gap needs the plain quantized model: measure it first (and keep its row)
    const plain = quantize(c.bits)(teacher);
    const p = evaluateNll(plain, held, { teacher });
    plainNll.set(c.bits, p.meanNll);
    const name = `int${c.bits}-none`;
    if (!rows.has(name)) {
      rows.set(name, {
        name,
        bits: c.bits,
        r: 0,
        init: "–",
        loftq: "–",
        scales: false,
        alloc: false,
        teacher: "–",
        steps: 0,
        nll: p.meanNll,
        kl: p.meanKl,
        gapRecovered: null,
        bpw: effectiveBits(plain),
        bpwF32: effectiveBits(plain),
        adapterBpw1B: 0,
        adapterBpw7B: 0,
        trainSeconds: 0,
        adapter: "none",
      });
      mine.add(name);
    }
  }
  const student = c.loftq
    ? loftqQuantize(teacher, {
        quantize: quantize(c.bits),
        r: c.r,
        alpha: 2 * c.r,
        iterations: c.loftq,
        calib,
        backend,
        onIteration: (i, e) =>
          console.log(`  ${c.name}: LoftQ iteration ${i}: mean relative weighted error ${e.toFixed(4)}`),
      })
    : quantize(c.bits)(teacher);
  const adapterOpts: Partial<LrecOptions> = {
    r: c.r,
    alpha: 2 * c.r,
    init: c.init === "zero" ? "zero" : "svd",
    backend,
    ...(c.init === "chol" || c.init === "diag"
      ? { calib, weighting: c.init === "chol" ? ("cholesky" as const) : ("diagonal" as const) }
      : {}),
    ...(c.alloc
      ? {
          rankPattern: allocateRanks(teacher, student, {
            r: c.r,
            calib,
            weighting: c.init === "diag" ? "diagonal" : "cholesky",
            backend,
          }),
        }
      : {}),
  };
  if (c.alloc) console.log(`  ${c.name}: ranks ${JSON.stringify(adapterOpts.rankPattern)}`);
  let trainSeconds = 0;
  let tmp: string | undefined;
  if (c.r > 0 && c.steps === 0) addLrecAdapter(student, { ...adapterOpts, r: c.r, teacher });
  else if (c.r > 0) {
    const data = windowData(train, { batch: c.batch ?? B, seq: T, seed: 1 });
    const lr = c.lr ?? LR;
    const opts: LrecOptions = {
      ...adapterOpts,
      steps: c.steps,
      lr,
      schedule: { warmupSteps: Math.min(c.warmup ?? 10, c.steps), kind: "cosine", minLr: lr / 10 },
      lambda: c.lambda ?? LAMBDA[c.bits],
      trainScales: c.scales
        ? { rate: typeof c.scales === "number" ? c.scales : 1, zeros: c.zeros ?? true }
        : false,
      onProgress: (p) => {
        if (p.step % 50 === 0 || p.step === p.totalSteps)
          console.log(`  ${c.name}: ${formatLrecProgress(p)}`);
      },
      log: (m) => console.warn(m),
    };
    const t1 = performance.now();
    if (c.cacheK) {
      // the SVD start needs the float weights: add it first, then train against the cache
      const { model } = addLrecAdapter(student, { ...adapterOpts, r: c.r, teacher });
      tmp = mkdtempSync(join(tmpdir(), "lrec-methods-"));
      const cache = await TeacherCache.build(join(tmp, "teacher.safetensors"), teacher, data, {
        steps: c.steps,
        k: c.cacheK,
      });
      await runLrec(cache, student, undefined, { ...opts, adapter: model });
    } else await runLrec(teacher, student, data, opts);
    trainSeconds = (performance.now() - t1) / 1000;
  }
  if (tmp) rmSync(tmp, { recursive: true, force: true });
  const ev = evaluateNll(student, held, { teacher });
  if (c.r === 0) plainNll.set(c.bits, ev.meanNll);
  const q = plainNll.get(c.bits) as number;
  const row: Row = {
    name: c.name,
    bits: c.bits,
    r: c.r,
    init: c.r === 0 ? "–" : c.init,
    loftq: c.loftq ? `${c.loftq} it` : "–",
    scales: typeof c.scales === "number" ? `ρ ${c.scales}` : (c.scales ?? false),
    alloc: c.alloc ?? false,
    teacher: c.cacheK ? `top-${c.cacheK} cache` : "live",
    steps: c.steps,
    lr: c.lr ?? LR,
    warmup: c.warmup ?? 10,
    batch: c.batch ?? B,
    lambda: c.lambda ?? LAMBDA[c.bits],
    zeros: c.scales ? (c.zeros ?? true) : null,
    nll: ev.meanNll,
    kl: ev.meanKl,
    gapRecovered: c.r === 0 ? null : (q - ev.meanNll) / (q - ref.meanNll),
    bpw: effectiveBits(student, { adapterDtype: "f16" }),
    bpwF32: effectiveBits(student, { adapterDtype: "f32" }),
    adapterBpw1B: c.r === 0 ? 0 : adapterBitsAt(LLAMA_SHAPES["1.1B"], c.r, "f16"),
    adapterBpw7B: c.r === 0 ? 0 : adapterBitsAt(LLAMA_SHAPES["7B"], c.r, "f16"),
    trainSeconds,
    // the whole configuration (quantize, LoftQ, init, train, evaluate): wall, this process's CPU (all threads), load
    wallSeconds: (performance.now() - t0) / 1000,
    cpuSeconds: ((u) => (u.user + u.system) / 1e6)(process.cpuUsage(cpu0)),
    loadStart: load0,
    loadEnd: loadavg()[0],
    adapter: c.r === 0 ? "none" : "lrec",
  };
  rows.set(c.name, row);
  mine.add(c.name);
  console.log(
    `${c.name}: NLL ${ev.meanNll.toFixed(4)} (quant ${q.toFixed(4)}, float ${ref.meanNll.toFixed(4)}) gap ${
      row.gapRecovered === null ? "–" : `${(100 * Number(row.gapRecovered)).toFixed(1)}%`
    } KL ${ev.meanKl.toFixed(4)} bpw ${Number(row.bpw).toFixed(2)} (${((performance.now() - t0) / 60000).toFixed(1)} min)`,
  );
  save();
}
save();
backend.dispose();
