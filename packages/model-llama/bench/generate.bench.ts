// Prefill and decode tokens/s of the inference forward at the stories260K / 15M / 110M shapes with
// synthetic weights: float32 vs INT8 / INT4 / INT2 packed (every projection and the classifier
// quantized, as llama2.c's runq.c does), on the wasm backend with 1 and 2 threads, and the reference
// backend at the smallest shape. The ratio column compares each row with float32 on the same backend
// and thread count, measured in this run. Outputs are checked against the reference backend first.
//
//   npx tsx packages/model-llama/bench/generate.bench.ts            (INT21_BENCH_QUICK=1: stories260K only)
import { consume, report, time } from "@int21/bench-utils";
import {
  createFloatLinear,
  createQuantLinear,
  createReferenceBackend,
  rtnQuantize,
} from "@int21/quant-kernels";
import { createWasmBackend } from "@int21/quant-kernels/wasm";
import type { Backend, Linear, QuantizedLinear } from "@int21/quant-kernels";
import {
  type LlamaWeights,
  type SyntheticModelName,
  argmax,
  createRunState,
  denseTokenEmbedding,
  forward,
  syntheticConfig,
  syntheticWeights,
} from "@int21/model-llama";

const quick = process.env.INT21_BENCH_QUICK === "1";
const loadAtStart = (await import("node:os")).loadavg()[0].toFixed(2);
const shapes: SyntheticModelName[] = quick ? ["stories260K"] : ["stories260K", "stories15M", "stories110M"];
const FORMATS = ["f32", "int8-g64-asym-f16", "int4-g64-asym-f16", "int2-g64-asym-f16"] as const;
type Fmt = (typeof FORMATS)[number];
const PREFILL = quick ? 16 : 64;
const DECODE = quick ? 8 : 48;
const opts = { minTimeMs: quick ? 50 : 1200, minRuns: quick ? 1 : 2, maxRuns: 20 };

/** The same model with every linear moved onto `backend` (weights and packed records shared). */
function onBackend(w: LlamaWeights, backend: Backend): LlamaWeights {
  const move = (lin: Linear): Linear => {
    const l = lin as Linear & { q?: QuantizedLinear; weight?: Float32Array };
    if (l.q) return createQuantLinear({ q: l.q, backend });
    if (l.weight)
      return createFloatLinear({
        weight: l.weight,
        outFeatures: l.outFeatures,
        inFeatures: l.inFeatures,
        backend,
      });
    throw new Error("bench: unknown Linear kind");
  };
  return {
    ...w,
    layers: w.layers.map((L) => ({
      ...L,
      wq: move(L.wq),
      wk: move(L.wk),
      wv: move(L.wv),
      wo: move(L.wo),
      w1: move(L.w1),
      w2: move(L.w2),
      w3: move(L.w3),
    })),
    classifier: move(w.classifier),
  };
}

function buildModel(shape: SyntheticModelName, fmt: Fmt): LlamaWeights {
  const config = syntheticConfig(shape);
  if (fmt === "f32") return syntheticWeights(config, { seed: 7 });
  const w = syntheticWeights(config, { seed: 7, format: fmt });
  // the shared classifier stays a float view of the embeddings in syntheticWeights; quantize it too
  const q = rtnQuantize(denseTokenEmbedding(w.tokenEmbedding), config.vocabSize, config.dim, fmt);
  return { ...w, classifier: createQuantLinear({ q, backend: createReferenceBackend() }) };
}

const prompt = (n: number, vocab: number) => Array.from({ length: n }, (_, i) => (i * 7919 + 1) % vocab);

/** Logits of a 2-token prefill and one decode step. */
function probe(w: LlamaWeights): Float32Array {
  const st = createRunState(w.config, { maxRows: 8 });
  forward(w, st, prompt(2, w.config.vocabSize), 0, "none");
  return forward(w, st, [5], 2).slice();
}

function maxRelErr(a: Float32Array, b: Float32Array): number {
  let err = 0;
  let mag = 0;
  for (let i = 0; i < a.length; i++) {
    err = Math.max(err, Math.abs(a[i] - b[i]));
    mag = Math.max(mag, Math.abs(b[i]));
  }
  return err / mag;
}

/**
 * bench-utils `time` (median wall time) plus the process CPU time per run over the same runs: on a
 * machine shared with other work, tokens per CPU-second of a 1-thread run estimates the unloaded rate.
 */
function timeWithCpu(name: string, fn: () => unknown): { medianMs: number; cpuMsPerRun: number } {
  const c0 = process.cpuUsage();
  let runs = 0;
  const t = time(
    name,
    () => {
      runs++;
      return fn();
    },
    opts,
  );
  const c = process.cpuUsage(c0);
  return { medianMs: t.medianMs, cpuMsPerRun: (c.user + c.system) / 1000 / runs };
}

const rows: Parameters<typeof report>[1] = [];
const backends: { name: string; threads: number; make: () => Promise<Backend> }[] = [
  { name: "wasm", threads: 1, make: () => createWasmBackend({ threads: 1 }) },
  { name: "wasm", threads: 2, make: () => createWasmBackend({ threads: 2 }) },
  { name: "reference", threads: 1, make: async () => createReferenceBackend() },
];

for (const shape of shapes) {
  for (const fmt of FORMATS) {
    const base = buildModel(shape, fmt);
    const refLogits = probe(onBackend(base, createReferenceBackend()));
    const c = base.config;
    for (const b of backends) {
      if (b.name === "reference" && shape !== "stories260K") continue; // minutes per row at 15M+
      const backend = await b.make();
      const w = onBackend(base, backend);
      const err = maxRelErr(probe(w), refLogits);
      if (!(err < 1e-3))
        throw new Error(`${shape} ${fmt} ${b.name}×${b.threads}: logits differ from the reference by ${err}`);
      const st = createRunState(c, { maxRows: PREFILL });
      const toks = prompt(PREFILL, c.vocabSize);
      const tp = timeWithCpu(`${shape}:${fmt}:prefill`, () => forward(w, st, toks, 0, "last")[0]);
      const td = timeWithCpu(`${shape}:${fmt}:decode`, () => {
        let t = 1;
        for (let p = 0; p < DECODE; p++) t = argmax(forward(w, st, [t], PREFILL + p), c.vocabSize);
        return t;
      });
      consume(st.logits[0]);
      rows.push({
        name: `model-llama:generate:${shape}:${fmt}:${b.name}x${b.threads}`,
        shape,
        format: fmt,
        backend: b.name,
        threads: b.threads,
        prefillTokPerSec: PREFILL / (tp.medianMs / 1000),
        decodeTokPerSec: DECODE / (td.medianMs / 1000),
        prefillTokPerCpuSec: PREFILL / (tp.cpuMsPerRun / 1000),
        decodeTokPerCpuSec: DECODE / (td.cpuMsPerRun / 1000),
        maxRelErrVsReference: err,
      });
      const last = rows[rows.length - 1];
      console.error(
        `${last.name}: prefill ${(last.prefillTokPerSec as number).toFixed(1)} tok/s, decode ${(last.decodeTokPerSec as number).toFixed(1)} tok/s`,
      );
      backend.dispose();
    }
  }
}

// ratios to float32 on the same backend and thread count
for (const r of rows) {
  const f32 = rows.find(
    (x) => x.shape === r.shape && x.backend === r.backend && x.threads === r.threads && x.format === "f32",
  );
  r.decodeRatioToF32 = f32 ? (r.decodeTokPerSec as number) / (f32.decodeTokPerSec as number) : null;
  r.prefillRatioToF32 = f32 ? (r.prefillTokPerSec as number) / (f32.prefillTokPerSec as number) : null;
}

report("model-llama-generate", rows, {
  notes: [
    `prefill: ${PREFILL} tokens in one forward (GEMM path); decode: ${DECODE} single-token forwards after it (matvec path) with argmax`,
    "synthetic weights (syntheticWeights, seed 7); quantized rows quantize every projection and the classifier (RTN)",
    "llama2.c run.c -Ofast on this 2-core machine (issue 5): stories15M ~355 tok/s, stories110M ~60 tok/s on one thread",
    "targets: stories15M float32 decode >= 250 tok/s, stories110M >= 35; INT4/INT2 decode faster than float32",
    "*TokPerCpuSec: tokens per second of process CPU time (all threads); for 1-thread rows on a busy machine it estimates the unloaded rate",
    `load average at start: ${loadAtStart}`,
  ],
  chart: { title: "decode tokens/s", value: "decodeTokPerSec", unit: "tok/s" },
});
