// Wall time of LREC steps at a real shape (stories110M; random weights: a synthetic teacher and its
// round-to-nearest INT2 g64 student), per 1k training tokens: teacher forward + student forward/backward
// (EMEF: fused packed kernels, per-layer checkpointing) + Adam, with and without trainable scales.
// Run: npx tsx benchmarks/src/lrec-walltime.ts   (INT21_LREC_WALL_STEPS, INT21_LREC_WALL_SEQ, INT21_LREC_WALL_SHAPE)
// Writes benchmarks/results/lrec-walltime.json; lrec-methods.md shows it.
import { writeFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { join } from "node:path";
import { setBackend } from "@int21/autograd";
import { resultsDir, type Row } from "@int21/bench-utils";
import { runLrec } from "@int21/lrec";
import { type SyntheticModelName, syntheticConfig, syntheticWeights } from "@int21/model-llama";
import { createWasmBackend } from "@int21/quant-kernels";

const SHAPE = (process.env.INT21_LREC_WALL_SHAPE ?? "stories110M") as SyntheticModelName;
const STEPS = Number(process.env.INT21_LREC_WALL_STEPS ?? 3);
const SEQ = Number(process.env.INT21_LREC_WALL_SEQ ?? 128);
const backend = await createWasmBackend({ threads: 2 });
setBackend(backend);
const config = syntheticConfig(SHAPE);
const teacher = syntheticWeights(config, { seed: 1, backend });
const rows: Row[] = [];
for (const trainScales of [false, true]) {
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
  rows.push({
    name: `lrec-walltime:${SHAPE}:int2-g64:r8${trainScales ? ":scales" : ""}`,
    shape: SHAPE,
    trainScales,
    tokensPerStep: SEQ,
    steps: STEPS,
    msPerStep: ms,
    secondsPer1kTokens: ms / SEQ,
    firstStepMs: stepMs[0],
  });
  console.log(`${SHAPE} scales ${trainScales}: ${(ms / SEQ).toFixed(2)} s per 1k tokens`);
}
writeFileSync(
  join(resultsDir(), "lrec-walltime.json"),
  `${JSON.stringify(
    {
      suite: "lrec-walltime",
      date: new Date().toISOString(),
      node: process.version,
      cpus: cpus().length,
      loadAverage: loadavg()[0],
      rows,
      notes: [
        `${SHAPE} shape, random weights (synthetic teacher), student RTN INT2 g64; batch 1 × ${SEQ} random tokens, r 8 on all seven projections, zero init`,
        "per step: teacher forward (no graph) + student forward/backward through the fused packed kernels with per-layer checkpointing + Adam; mean of steps 2…",
      ],
    },
    null,
    2,
  )}\n`,
);
backend.dispose();
