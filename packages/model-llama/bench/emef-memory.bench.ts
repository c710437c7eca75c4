// EMEF memory, the INT2.1 headline: peak RSS of ONE training step (batch 1, seq 512, LoRA r = 8 on
// q_proj and v_proj, per-layer checkpointing on, AdamW) with synthetic weights generated straight into
// packed form, float32 LoRA vs INT4 / INT2 EMEF, at the stories110M, 1.1B and LLaMA-7B shapes.
// Each case runs in its own plain-Node child process (emef-step-child.mjs, on the built packages, so no
// TypeScript loader is measured) and reports `process.resourceUsage().maxRSS`, so one case's memory
// never counts toward another's. Step time is reported beside it.
//
// Token embedding: packed cases keep it packed (a QuantizedLinear, rows = tokens; the step gathers and
// dequantizes only the T rows it needs), int8-g64-asym-f16 unless the case names another format with
// `emb` (e.g. {"shape":"1.1B","fmt":"int2","seq":512,"emb":"int4"}); float cases keep float32. Each
// result records the embedding format and its bytes (`embFormat`, `embeddingBytes`).
//
// Backend: the wasm backend keeps resident (re-packed) copies of packed layers and of constant float
// weights; by default a case would then hold every weight twice. The cases create it with
// `maxResidentBytes: 0` (what a user training near the memory limit sets): only the layer in use has a
// resident copy, so the JS-side weights are held once (the same for float and packed cases). Nothing builds a float copy of a packed weight: the forward
// is the fused qmatmul, the input gradient qmatmulT.
//
// Runtime settings of the child (both float and packed cases): `--expose-gc` with a collection after
// every weight kernel call (V8 otherwise lets hundreds of MB of dead activation buffers wait for a GC;
// INT21_EMEF_GC_EVERY=7 collects about once per layer instead, as the first measurements did), and
// MALLOC_MMAP_THRESHOLD_=131072 (glibc returns freed large buffers to the OS instead of keeping them).
//
//   npx tsx packages/model-llama/bench/emef-memory.bench.ts          (INT21_BENCH_QUICK=1: stories260K / 15M)
//   INT21_EMEF_CASES=7B:int2,7B:int4 npx tsx …                      (only these cases; 1.1B:int2:int4 = emb int4)
//   INT21_EMEF_THREADS=1 …                                            (wasm threads of each case)
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { report } from "@int21/bench-utils";
import type { SyntheticModelName } from "@int21/model-llama";

type Fmt = "f32" | "int4" | "int2" | "int2g128";

interface Case {
  shape: SyntheticModelName;
  fmt: Fmt;
  seq: number;
  /** Packed token embedding format of a packed case (emef-step-child.mjs EMB_FORMATS key or a format name); default int8. */
  emb?: string;
}

/** What emef-step-child.mjs prints. */
interface CaseResult extends Case {
  /** The token embedding's format (`f32` for a float32 table). */
  embFormat: string;
  embeddingBytes: number;
  peakRssBytes: number;
  rssAfterWeights: number;
  stepMs: number;
  genMs: number;
  weightBytes: number;
  bitsPerWeight: number | null;
  ledgerPeakBytes: number;
  loss: number;
  threads: number;
}

function cases(): Case[] {
  const only = process.env.INT21_EMEF_CASES?.split(",").map((s) => s.trim());
  const all: Case[] =
    process.env.INT21_BENCH_QUICK === "1"
      ? [
          { shape: "stories260K", fmt: "f32", seq: 128 },
          { shape: "stories260K", fmt: "int4", seq: 128 },
          { shape: "stories260K", fmt: "int2", seq: 128 },
          { shape: "stories15M", fmt: "f32", seq: 256 },
          { shape: "stories15M", fmt: "int4", seq: 256 },
        ]
      : [
          { shape: "stories110M", fmt: "f32", seq: 512 },
          { shape: "stories110M", fmt: "int4", seq: 512 },
          { shape: "stories110M", fmt: "int2", seq: 512 },
          { shape: "1.1B", fmt: "f32", seq: 512 },
          { shape: "1.1B", fmt: "int2", seq: 512 },
          { shape: "1.1B", fmt: "int2", seq: 512, emb: "int4" },
          { shape: "1.1B", fmt: "int2g128", seq: 512 },
          { shape: "7B", fmt: "int2", seq: 512 },
          { shape: "7B", fmt: "int4", seq: 512 },
        ];
  return only ? all.filter((c) => only.includes(caseKey(c)) || only.includes(`${c.shape}:${c.fmt}`)) : all;
}

/** `shape:fmt`, plus `:emb` when the case names an embedding format. */
function caseKey(c: Case): string {
  return c.emb === undefined ? `${c.shape}:${c.fmt}` : `${c.shape}:${c.fmt}:${c.emb}`;
}

const GB = 1e9;

async function main(): Promise<void> {
  const child = fileURLToPath(new URL("./emef-step-child.mjs", import.meta.url));
  const results: CaseResult[] = [];
  for (const c of cases()) {
    let line: string | undefined;
    for (let attempt = 1; attempt <= 2 && line === undefined; attempt++) {
      const p = spawnSync(process.execPath, ["--expose-gc", child, JSON.stringify(c)], {
        env: { ...process.env, MALLOC_MMAP_THRESHOLD_: "131072" },
        encoding: "utf8",
        maxBuffer: 1 << 24,
        stdio: ["ignore", "pipe", "inherit"],
      });
      line = p.stdout.split("\n").find((l) => l.startsWith("RESULT "));
      if (p.status !== 0 || !line) {
        line = undefined;
        if (attempt === 2)
          throw new Error(`emef-memory: case ${caseKey(c)} failed (exit ${p.status}, signal ${p.signal})`);
        console.error(`emef-memory: case ${caseKey(c)} failed (exit ${p.status}), retrying once`);
      }
    }
    const r = JSON.parse((line as string).slice(7)) as CaseResult;
    results.push(r);
    console.error(
      `${r.shape} ${r.fmt} (embedding ${r.embFormat}): peak RSS ${(r.peakRssBytes / GB).toFixed(3)} GB, step ${(r.stepMs / 1000).toFixed(1)} s, weights ${(r.weightBytes / GB).toFixed(3)} GB, loss ${r.loss.toFixed(3)}`,
    );
  }
  const f32 = new Map(results.filter((r) => r.fmt === "f32").map((r) => [r.shape, r]));
  const rows = results.map((r) => {
    const base = f32.get(r.shape);
    return {
      name: `model-llama:emef-step:${r.shape}:${r.fmt}:seq${r.seq}${r.emb === undefined ? "" : `:emb-${r.emb}`}`,
      embedding: r.embFormat,
      embeddingMB: Number((r.embeddingBytes / 1e6).toFixed(1)),
      peakRssGB: Number((r.peakRssBytes / GB).toFixed(3)),
      stepSeconds: Number((r.stepMs / 1000).toFixed(2)),
      tokensPerSec: Number(((r.seq * 1000) / r.stepMs).toFixed(1)),
      weightsGB: Number((r.weightBytes / GB).toFixed(3)),
      bitsPerWeight: r.bitsPerWeight === null ? 32 : Number(r.bitsPerWeight.toFixed(3)),
      tensorLedgerPeakMB: Number((r.ledgerPeakBytes / 1e6).toFixed(1)),
      memoryRatioVsF32: base ? Number((base.peakRssBytes / r.peakRssBytes).toFixed(2)) : null,
      stepTimeRatioVsF32: base ? Number((r.stepMs / base.stepMs).toFixed(2)) : null,
      threads: r.threads,
    };
  });
  const notes = [
    "One training step per case in its own process: batch 1, LoRA r=8 alpha=16 on q_proj,v_proj, per-layer checkpointing, AdamW; peak RSS = process.resourceUsage().maxRSS of that process (includes Node itself and weight generation).",
    "Synthetic weights: float cases from syntheticWeights; packed cases written straight into packed words as random codes with f16 scales (emef-step-child.mjs), no float matrix ever built: int4 = int4-g128-asym-f16, int2 = int2-g64-asym-f16, int2g128 = int2-g128-asym-f16 (scales and zeros are held as f32 in memory, so in RAM these take 4.5 / 3.0 / 2.5 bits per weight); token embedding packed in packed cases (int8-g64-asym-f16 unless the case says otherwise: column embedding), float32 in float cases.",
    "wasm backend created with maxResidentBytes: 0 (only the layer in use has a re-packed copy; see the file header); garbage collected after every weight kernel call.",
    "memoryRatioVsF32 = float32 LoRA peak RSS / this case's, same shape, same run. Targets: 1.1B ratio >= 5.6; 7B INT2 <= 4 GB, INT4 <= 5.5 GB.",
  ];
  report("emef-memory", rows, {
    notes,
    chart: { title: "EMEF: peak RSS of one training step (seq 512)", value: "peakRssGB", unit: "GB" },
  });
}

await main();
