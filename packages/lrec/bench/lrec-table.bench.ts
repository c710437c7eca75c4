// The LREC result table on stories260K: bits {2,3,4,8} × {RTN, GPTQ} × {none, SVD-init, LREC, SVD-init + LREC},
// plus the float baseline; held-out NLL / perplexity, KL to the teacher, effective bits per weight, a greedy sample.
// Run: npx tsx packages/lrec/bench/lrec-table.bench.ts   (INT21_BENCH_QUICK=1: INT2 + INT4 RTN, few steps)
// A subset (results to lrec-table-subset.*, README untouched): INT21_LREC_BITS=4 INT21_LREC_METHODS=rtn INT21_LREC_STEPS=400
import { readFileSync, writeFileSync } from "node:fs";
import { loadavg } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { setBackend } from "@int21/autograd";
import { lineChartSvg, report, resultsDir, type Row } from "@int21/bench-utils";
import {
  addLrecAdapter,
  effectiveBits,
  formatLrecProgress,
  runLrec,
  storyTokens,
  windowData,
} from "@int21/lrec";
import {
  calibrationWindows,
  evaluateNll,
  generate,
  type LlamaWeights,
  quantizeModel,
} from "@int21/model-llama";
import { Llama2cTokenizer, loadLlama2c } from "@int21/loaders";
import { createWasmBackend } from "@int21/quant-kernels/wasm";
import { SHARED, sharedPath } from "@int21/shared-data";

const QUICK = process.env.INT21_BENCH_QUICK === "1";
const backend = await createWasmBackend({ threads: 2 });
setBackend(backend);
const teacher = loadLlama2c(sharedPath(SHARED.stories260K), { backend });
const tok = Llama2cTokenizer.fromFile(sharedPath(SHARED.tok512));
const text = readFileSync(sharedPath(SHARED.tinystoriesValid), "utf8");

// held-out: stories 0–39 (the reference's 1.269-nat set); training: stories 100–999 (disjoint)
const HELD = QUICK ? 8 : 40;
const held = storyTokens(text, tok, { from: 0, to: HELD, ctx: teacher.config.seqLen });
const train = storyTokens(text, tok, { from: 100, ctx: 1 << 30 }).flat();
const calib = calibrationWindows(train, 8, 128, tok.bosId);
const ref = evaluateNll(teacher, held);

const R = 4;
const ALPHA = 16;
const B = 4;
const T = 128;
const SUBSET = process.env.INT21_LREC_BITS !== undefined || process.env.INT21_LREC_METHODS !== undefined;
const STEPS: Record<number, number> = QUICK ? { 2: 12, 4: 8 } : { 2: 200, 3: 120, 4: 300, 8: 30 };
if (process.env.INT21_LREC_STEPS)
  for (const b of [2, 3, 4, 8]) STEPS[b] = Number(process.env.INT21_LREC_STEPS);
const LAMBDA: Record<number, number> = { 2: 120, 3: 40, 4: 10, 8: 10 };
const BITS = process.env.INT21_LREC_BITS?.split(",").map(Number) ?? (QUICK ? [2, 4] : [2, 3, 4, 8]);
const METHODS = (process.env.INT21_LREC_METHODS?.split(",") ?? (QUICK ? ["rtn"] : ["rtn", "gptq"])) as (
  | "rtn"
  | "gptq"
)[];
const LR = 1.5e-3;

function sample(w: LlamaWeights): string {
  return generate(w, tok, { temperature: 0, steps: 48 }).generatedText.replace(/\s+/g, " ").trim();
}

const rows: Row[] = [];
const floatSample = sample(teacher);
rows.push({
  name: "lrec:stories260K:float32",
  bits: 32,
  quantizer: "float",
  variant: "-",
  nll: ref.meanNll,
  perplexity: Math.exp(ref.meanNll),
  kl: 0,
  bpw: effectiveBits(teacher),
  gapRecovered: null,
  steps: 0,
  trainSeconds: 0,
  sample: floatSample,
});
console.log(`float: NLL ${ref.meanNll.toFixed(4)} over ${ref.tokens} tokens | ${floatSample}`);
const charts: { name: string; points: [number, number][] }[] = [];
const t0 = performance.now();

for (const bits of BITS) {
  for (const method of METHODS) {
    const fmt = { bits: bits as 2 | 3 | 4 | 8, groupSize: 32 as const };
    const quant = () => quantizeModel(teacher, { format: fmt, method, calib, backend }).weights;
    let plainNll = Number.NaN;
    for (const variant of ["none", "svd", "lrec", "svd+lrec"] as const) {
      const student = quant();
      const data = windowData(train, { batch: B, seq: T, seed: 1 });
      const init = variant.startsWith("svd") ? "svd" : "zero";
      let steps = 0;
      let secs = 0;
      if (variant === "none") {
        // no adapter
      } else if (variant === "svd") {
        addLrecAdapter(student, { r: R, alpha: ALPHA, init: "svd", teacher, calib, backend });
      } else {
        steps = STEPS[bits];
        const res = await runLrec(teacher, student, data, {
          steps,
          r: R,
          alpha: ALPHA,
          init,
          calib,
          backend,
          lr: LR,
          schedule: { warmupSteps: Math.min(10, steps), kind: "cosine", minLr: LR / 10 },
          lambda: LAMBDA[bits],
          onProgress: (p) => {
            if (p.step % 50 === 0 || p.step === p.totalSteps)
              console.log(`  int${bits} ${method} ${variant}: ${formatLrecProgress(p)}`);
          },
        });
        secs = res.seconds;
        if (bits === 2) {
          charts.push({
            name: `${method} ${variant} KL/token`,
            points: res.history.map((h) => [h.step, h.klPerToken]),
          });
        }
      }
      const ev = evaluateNll(student, held, { teacher });
      if (variant === "none") plainNll = ev.meanNll;
      const s = sample(student);
      const gap = (plainNll - ev.meanNll) / (plainNll - ref.meanNll);
      rows.push({
        name: `lrec:stories260K:int${bits}g32-${method}:${variant}`,
        bits,
        quantizer: method.toUpperCase(),
        variant,
        nll: ev.meanNll,
        perplexity: ev.perplexity,
        kl: ev.meanKl,
        bpw: effectiveBits(student),
        // a gap under 0.01 nats (INT8) makes the ratio meaningless
        gapRecovered: variant === "none" || plainNll - ref.meanNll < 0.01 ? null : gap,
        steps,
        trainSeconds: secs,
        sample: s,
      });
      console.log(
        `int${bits} ${method} ${variant}: NLL ${ev.meanNll.toFixed(4)} ppl ${ev.perplexity.toFixed(3)} KL ${ev.meanKl.toFixed(4)} ` +
          `bpw ${effectiveBits(student).toFixed(2)} gap ${(100 * gap).toFixed(1)}% (${((performance.now() - t0) / 60000).toFixed(1)} min) | ${s}`,
      );
    }
  }
}

const get = (bits: number, m: string, v: string) =>
  rows.find((r) => r.name === `lrec:stories260K:int${bits}g32-${m}:${v}`);
const notes: string[] = [
  `stories260K, held-out TinyStories validation stories 0–${HELD - 1} (${ref.tokens} tokens), training windows from stories 100–999`,
  `formats int{b}-g32-asym-f16; LoRA r=${R}, alpha=${ALPHA} on q,k,v,o,gate,up,down; batch ${B}×${T}; Adam lr ${LR} (warmup 10, cosine to lr/10), L2 1e-5`,
  `loss: KL summed over positions + λ·CE averaged (λ = ${JSON.stringify(LAMBDA)} by bits); steps ${JSON.stringify(STEPS)}`,
  `bpw counts packed codes, f16 scales and zeros, and the float32 adapter`,
  `total ${((performance.now() - t0) / 60000).toFixed(1)} min, load average ${loadavg()[0].toFixed(1)} at the end, on ${process.env.INT21_LOAD_NOTE ?? "a shared 2-core machine"}`,
];
for (const m of METHODS) {
  const l2 = get(2, m, "lrec");
  const s2 = get(2, m, "svd+lrec");
  const l4 = get(4, m, "lrec");
  if (l2)
    notes.push(
      `acceptance int2 ${m} LREC gap recovered ${(100 * Number(l2.gapRecovered)).toFixed(1)}% (SVD+LREC ${(100 * Number(s2?.gapRecovered)).toFixed(1)}%) (need ≥ 50%)`,
    );
  if (l4)
    notes.push(
      `acceptance int4 ${m} LREC NLL ${Number(l4.nll).toFixed(4)} vs float ${ref.meanNll.toFixed(4)}: ${(100 * (Number(l4.nll) / ref.meanNll - 1)).toFixed(2)}% (need ≤ 2%)`,
    );
}
const SUITE = QUICK ? "lrec-table-quick" : SUBSET ? "lrec-table-subset" : "lrec-table";
report(SUITE, rows, {
  notes,
  chart: { title: "stories260K held-out perplexity per configuration", value: "perplexity", label: "name" },
});
if (charts.length > 0) {
  const svg = lineChartSvg("stories260K INT2: training-batch KL per token during LREC", charts, {
    x: "step",
    y: "KL (nats/token)",
  });
  writeFileSync(join(resultsDir(), `${SUITE.replace("table", "int2-kl")}.svg`), svg);
}

// the Results section of the README (full runs only)
if (!QUICK && !SUBSET) {
  const fmt = (v: unknown, d: number) => (typeof v === "number" ? v.toFixed(d) : "–");
  const lines = [
    "| bits | quantizer | variant | NLL | perplexity | KL to float | gap recovered | bits/weight | steps | greedy sample (48 tokens from BOS) |",
    "|---|---|---|---|---|---|---|---|---|---|",
    ...rows.map(
      (r) =>
        `| ${r.bits} | ${r.quantizer} | ${r.variant} | ${fmt(r.nll, 4)} | ${fmt(r.perplexity, 3)} | ${fmt(r.kl, 4)} | ${
          r.gapRecovered === null ? "–" : `${(100 * Number(r.gapRecovered)).toFixed(1)}%`
        } | ${fmt(r.bpw, 2)} | ${r.steps} | ${String(r.sample).replace(/\|/g, "\\|").slice(0, 140)} |`,
    ),
    "",
    ...notes.map((n) => `- ${n}`),
  ];
  const readme = join(dirname(fileURLToPath(import.meta.url)), "..", "README.md");
  const md = readFileSync(readme, "utf8");
  const a = "<!-- results:start -->";
  const b = "<!-- results:end -->";
  if (md.includes(a) && md.includes(b)) {
    writeFileSync(
      readme,
      `${md.slice(0, md.indexOf(a) + a.length)}\n${lines.join("\n")}\n${md.slice(md.indexOf(b))}`,
    );
  }
  writeFileSync(join(resultsDir(), "lrec-table.md"), `${lines.join("\n")}\n`);
}
backend.dispose();
