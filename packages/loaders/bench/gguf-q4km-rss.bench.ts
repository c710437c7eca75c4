// Peak resident memory of loading a llama.cpp Q4_K_M GGUF packed (block types kept as int21 block formats,
// token_embd and output included) and generating a few greedy tokens, against the file's size: a synthetic
// GGUF of the Llama-2-7B shape (dim 4096, hidden 11008, 32 heads, vocab 32000, untied Q6_K output) with
// INT21_Q4KM_LAYERS layers (default 8, a 1.22 GB file: the 32-layer one is 3.9 GB; every tensor has 7B's shape), loaded
// in a fresh child process by `loadModel` as the CLI does. Reports peak RSS / file size, with and without
// the process's resident size before loading (node + tsx).
//
//   npx tsx packages/model-llama/bench/gguf-q4km-rss.bench.ts     (INT21_BENCH_QUICK=1: 1 layer, dim 2048)
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { report } from "@int21/bench-utils";
import { writeSyntheticQ4KM } from "../src/testing/q4km-gguf";

const quick = process.env.INT21_BENCH_QUICK === "1";
const layers = Number(process.env.INT21_Q4KM_LAYERS ?? (quick ? 1 : 8));
const config = quick
  ? { dim: 2048, hiddenDim: 5632, nHeads: 32, nKvHeads: 4 }
  : { dim: 4096, hiddenDim: 11008, nHeads: 32, nKvHeads: 32 };
const shape = `${quick ? "1.1B" : "7B"}-shape-${layers}-layer`;
const dir = mkdtempSync(join(tmpdir(), "int21-q4km-"));
const path = join(dir, "q4km.gguf");
await writeSyntheticQ4KM(path, {
  ...config,
  nLayers: layers,
  vocabSize: 32000,
  seqLen: 4096,
  ropeTheta: 10000,
  normEps: 1e-5,
  sharedClassifier: false,
});
const here = dirname(fileURLToPath(import.meta.url));
const child = spawnSync(
  process.execPath,
  ["--import", "tsx", join(here, "..", "src", "testing", "gguf-rss-child.ts"), path, "3"],
  { encoding: "utf8", cwd: here, maxBuffer: 1 << 20 },
);
rmSync(dir, { recursive: true, force: true });
if (child.status !== 0) throw new Error(`gguf-rss-child failed: ${child.stderr}`);
const r = JSON.parse(child.stdout);
const MB = 1e6;
report(
  "model-llama-gguf-q4km-rss",
  [
    {
      name: `model-llama:gguf-q4km-rss:${shape}`,
      fileMB: r.fileBytes / MB,
      peakRssMB: r.maxRss / MB,
      baselineRssMB: r.baselineRss / MB,
      peakRssOverFile: r.maxRss / r.fileBytes,
      growthOverFile: (r.maxRss - r.baselineRss) / r.fileBytes,
      loadMs: r.loadMs,
      msPerToken: r.genMs / 3,
    },
  ],
  {
    notes: [
      `${shape}: dim ${config.dim}, hidden ${config.hiddenDim}, ${config.nHeads}/${config.nKvHeads} heads, vocab 32000, Q4_K_M mix (Q4_K; Q6_K attn_v, ffn_down, output), random blocks.`,
      "peakRssOverFile counts the whole child process (node + tsx ≈ 110 MB before loading); growthOverFile only what loading and 3 greedy tokens added.",
      "Tokens run on the reference backend (block formats' reference kernels).",
    ],
    chart: { title: "Peak RSS / GGUF file size", value: "peakRssOverFile", unit: "×" },
  },
);
