// Wall time of LREC steps at a real shape (stories110M; random weights: a synthetic teacher and its
// round-to-nearest INT2 g64 student), per 1k training tokens: teacher forward + student forward/backward
// (EMEF: fused packed kernels, per-layer checkpointing) + Adam, with and without trainable scales.
// Run: npx tsx benchmarks/src/lrec-walltime.ts   (INT21_LREC_WALL_STEPS, INT21_LREC_WALL_SEQ, INT21_LREC_WALL_SHAPE,
//      INT21_LREC_WALL_SCALES=0|1|both (default both))
//      e.g. INT21_LREC_WALL_SHAPE=1.1B INT21_LREC_WALL_SEQ=16 INT21_LREC_WALL_STEPS=2 INT21_LREC_WALL_SCALES=0
// Merges its rows (by shape, seq and scales) into benchmarks/results/lrec-walltime.json; lrec-methods.md shows it.
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { join } from "node:path";
import { setBackend } from "@int21/autograd";
import { resultsDir, type Row } from "@int21/bench-utils";
import { runLrec } from "@int21/lrec";
import { type SyntheticModelName, syntheticConfig, syntheticWeights } from "@int21/model-llama";
import { createWasmBackend } from "@int21/quant-kernels/wasm";

const SHAPE = (process.env.INT21_LREC_WALL_SHAPE ?? "stories110M") as SyntheticModelName;
const STEPS = Number(process.env.INT21_LREC_WALL_STEPS ?? 3);
const SEQ = Number(process.env.INT21_LREC_WALL_SEQ ?? 128);
const SCALES = process.env.INT21_LREC_WALL_SCALES ?? "both";
// the teacher's format (default float32); a float32 1.1B teacher overflows the 4 GB wasm heap's resident
// weight cache, so that shape runs with an int8 teacher (INT21_LREC_WALL_TEACHER=int8-g64-asym-f16)
const TEACHER = process.env.INT21_LREC_WALL_TEACHER;
const variants = SCALES === "0" ? [false] : SCALES === "1" ? [true] : [false, true];
if (!["0", "1", "both"].includes(SCALES))
  throw new Error(`INT21_LREC_WALL_SCALES must be 0, 1 or both, got ${SCALES}`);
const backend = await createWasmBackend({ threads: 2 });
setBackend(backend);
const config = syntheticConfig(SHAPE);
const teacher = syntheticWeights(config, { seed: 1, backend, ...(TEACHER ? { format: TEACHER } : {}) });
const out = join(resultsDir(), "lrec-walltime.json");
const prior = existsSync(out)
  ? (JSON.parse(readFileSync(out, "utf8")) as { rows: Row[]; loadAverage: number })
  : { rows: [], loadAverage: 0 };
// rows written before rows kept their own load average carry the file's
const rows: Row[] = prior.rows.map((r) => ({ loadAverage: prior.loadAverage, ...r }));
const rssMb = () => process.resourceUsage().maxRSS / 1024;
console.log(`${SHAPE}: teacher built, peak RSS ${rssMb().toFixed(0)} MB`);
for (const trainScales of variants) {
  // the same seed gives the same random values: the student is the teacher, packed
  const student = syntheticWeights(config, { seed: 1, format: "int2-g64-asym-f16", backend });
  let seed = 7;
  const rand = () => {
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
    return seed % config.vocabSize;
  };
  const batches = Array.from({ length: STEPS }, () => Array.from({ length: SEQ + 1 }, rand));
  const stepMs: number[] = [];
  let last = 0;
  await runLrec(
    teacher,
    student,
    (s) => ({ input: [batches[s].slice(0, SEQ)], target: Int32Array.from(batches[s].slice(1)) }),
    {
      steps: STEPS,
      r: 8,
      alpha: 16,
      lr: 1e-3,
      lambda: 120,
      trainScales,
      onProgress: (p) => {
        stepMs.push(p.elapsedMs - last);
        last = p.elapsedMs;
        console.log(
          `${SHAPE} scales ${trainScales}: step ${p.step}: ${(stepMs.at(-1) as number).toFixed(0)} ms`,
        );
      },
    },
  );
  // the first step pays one-time costs (weight layouts, buffers): the mean of the others
  const steady = stepMs.length > 1 ? stepMs.slice(1) : stepMs;
  const ms = steady.reduce((a, b) => a + b, 0) / steady.length;
  const name = `lrec-walltime:${SHAPE}:int2-g64:r8${trainScales ? ":scales" : ""}${SEQ === 128 ? "" : `:seq${SEQ}`}${TEACHER ? `:teacher-${TEACHER}` : ""}`;
  const at = rows.findIndex((r) => r.name === name);
  if (at >= 0) rows.splice(at, 1);
  rows.push({
    name,
    shape: SHAPE,
    teacher: TEACHER ?? "f32",
    trainScales,
    tokensPerStep: SEQ,
    steps: STEPS,
    msPerStep: ms,
    secondsPer1kTokens: ms / SEQ,
    firstStepMs: stepMs[0],
    // peak resident memory of the whole process so far (teacher, students, training)
    peakRssMb: rssMb(),
    loadAverage: loadavg()[0],
    date: new Date().toISOString(),
  });
  console.log(`${SHAPE} scales ${trainScales}: ${(ms / SEQ).toFixed(2)} s per 1k tokens`);
}
writeFileSync(
  out,
  `${JSON.stringify(
    {
      suite: "lrec-walltime",
      date: new Date().toISOString(),
      node: process.version,
      cpus: cpus().length,
      loadAverage: loadavg()[0],
      rows,
      notes: [
        "random weights at the named shape (synthetic teacher, float32 unless the row says), student RTN INT2 g64; batch 1 × the row's tokens per step of random tokens, r 8 on all seven projections, zero init",
        "per step: teacher forward (no graph) + student forward/backward through the fused packed kernels with per-layer checkpointing + Adam; mean of steps 2…",
      ],
    },
    null,
    2,
  )}\n`,
);
backend.dispose();
