// Checkpoint loading throughput: a synthetic Hugging Face checkpoint (bf16, 2 shards, GQA, 1.1B layer
// shapes) loaded to float32 and straight to int4 (RTN per tensor while streaming), and a llama2.c file
// of the same weights; each as file MB/s and as a ratio to reading the same bytes raw in the same run.
// Also reports the peak resident-memory growth of the quantizing load against the float model's size,
// the streaming claim: the float model never exists whole.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Row, report, timeAsync } from "@int21/bench-utils";
import { type SafetensorsWriteTensor, writeSafetensors } from "@int21/io";
import { type LlamaConfig, llamaTensorSpecs, syntheticConfig, tokenEmbeddingBytes } from "@int21/model-llama";
import {
  encodeLlama2c,
  hfTensorName,
  llamaToHfConfig,
  loadHf,
  loadLlama2c,
  permuteHfRows,
} from "@int21/loaders";

const quick = process.env.INT21_BENCH_QUICK === "1";
const config: LlamaConfig = quick
  ? syntheticConfig("stories260K")
  : { ...syntheticConfig("1.1B"), nLayers: 1, vocabSize: 8192, sharedClassifier: true };
const shape = quick ? "stories260K" : "1.1B-1layer-v8192";
const dir = mkdtempSync(join(tmpdir(), "int21-load-bench-"));
const hfDir = join(dir, "hf");
mkdirSync(hfDir);

// Write the checkpoint tensor by tensor (never the whole float model at once).
let seed = 1;
const rand = () => {
  seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
  return seed / 2 ** 32 - 0.5;
};
const specs = llamaTensorSpecs(config);
const hs = config.dim / config.nHeads;
const weightMap: Record<string, string> = {};
const tensorsForBin = new Map<string, Float32Array>();
const half = Math.ceil(specs.length / 2);
for (let s = 0; s < 2; s++) {
  const file = `model-0000${s + 1}-of-00002.safetensors`;
  const out: Record<string, SafetensorsWriteTensor> = {};
  for (const spec of specs.slice(s * half, (s + 1) * half)) {
    const n = spec.shape.reduce((a, b) => a * b, 1);
    const w = new Float32Array(n);
    for (let i = 0; i < n; i++) w[i] = rand() * 0.1;
    tensorsForBin.set(spec.name, w);
    const data = /\.w[qk]$/.test(spec.name)
      ? permuteHfRows(w, spec.shape[0] / hs, spec.shape[0], spec.shape[1])
      : w;
    out[hfTensorName(spec.name)] = { dtype: "BF16", shape: spec.shape, data };
    weightMap[hfTensorName(spec.name)] = file;
  }
  await writeSafetensors(join(hfDir, file), out);
}
writeFileSync(join(hfDir, "config.json"), JSON.stringify(llamaToHfConfig(config)));
writeFileSync(
  join(hfDir, "model.safetensors.index.json"),
  JSON.stringify({ metadata: {}, weight_map: weightMap }),
);
// The same weights as a llama2.c legacy file (float32).
const bin = join(dir, "model.bin");
writeFileSync(bin, encodeLlama2c(config, tensorsForBin, 0));
tensorsForBin.clear();
const binBytes = statSync(bin).size;
const shardFiles = Object.values(weightMap).filter((v, i, a) => a.indexOf(v) === i);
const hfBytes = shardFiles.reduce((s, f) => s + statSync(join(hfDir, f)).size, 0);
const params = specs.reduce((s, t) => s + t.shape.reduce((a, b) => a * b, 1), 0);

const opts = { minTimeMs: quick ? 50 : 0, minRuns: 1, maxRuns: quick ? 20 : 1 };
const raw = await timeAsync(
  "raw read",
  async () => {
    let n = 0;
    for (const f of shardFiles) n += readFileSync(join(hfDir, f)).byteLength;
    return n;
  },
  opts,
);
const rawMBs = hfBytes / 1e6 / (raw.medianMs / 1000);

// Validate before timing: the loaded model has the config's shapes.
const check = await loadHf(hfDir, { quantize: { format: "int4-g128-asym-f16" } });
if (
  check.layers.length !== config.nLayers ||
  check.layers[0].wk.outFeatures !== (config.dim * config.nKvHeads) / config.nHeads
) {
  throw new Error("load bench: loaded model does not match the written config");
}

// Peak memory of one quantizing load, measured before any float load so that no earlier garbage counts.
const gc = (globalThis as { gc?: () => void }).gc;
gc?.();
let peak = 0;
const rssBase = process.memoryUsage().rss;
const sampler = setInterval(() => {
  peak = Math.max(peak, process.memoryUsage().rss - rssBase);
}, 2);
const once = await loadHf(hfDir, { quantize: { format: "int4-g128-asym-f16" } });
clearInterval(sampler);
const peakInt4 = peak;
const packedMB =
  (once.layers.reduce(
    (s, L) => s + [L.wq, L.wk, L.wv, L.wo, L.w1, L.w2, L.w3].reduce((a, l) => a + l.bytes(), 0),
    0,
  ) +
    tokenEmbeddingBytes(once.tokenEmbedding) +
    4 * config.dim * (2 * config.nLayers + 1)) /
  1e6;
const largestTensorMB = Math.max(...specs.map((t) => t.shape.reduce((a, b) => a * b, 1) * 4)) / 1e6;

const hfFloat = await timeAsync("hf bf16 → f32", () => loadHf(hfDir), opts);
const hfInt4 = await timeAsync(
  "hf bf16 → int4",
  () => loadHf(hfDir, { quantize: { format: "int4-g128-asym-f16" } }),
  opts,
);

const rows: Row[] = [
  {
    name: `model-llama:read-raw:${shape}`,
    fileMB: hfBytes / 1e6,
    ms: raw.medianMs,
    fileMBPerSec: rawMBs,
    ratioToRawRead: 1,
  },
  {
    name: `model-llama:load-hf:bf16-f32:${shape}`,
    fileMB: hfBytes / 1e6,
    ms: hfFloat.medianMs,
    fileMBPerSec: hfBytes / 1e6 / (hfFloat.medianMs / 1000),
    ratioToRawRead: raw.medianMs / hfFloat.medianMs,
    floatModelMB: (params * 4) / 1e6,
  },
  {
    name: `model-llama:load-hf:bf16-int4g128:${shape}`,
    fileMB: hfBytes / 1e6,
    ms: hfInt4.medianMs,
    fileMBPerSec: hfBytes / 1e6 / (hfInt4.medianMs / 1000),
    ratioToRawRead: raw.medianMs / hfInt4.medianMs,
    peakRssGrowthMB: peakInt4 / 1e6,
    floatModelMB: (params * 4) / 1e6,
    loadedModelMB: packedMB,
    largestFloatTensorMB: largestTensorMB,
  },
];
{
  const t = await timeAsync("llama2c f32", async () => loadLlama2c(bin), opts);
  rows.push({
    name: `model-llama:load-llama2c:f32:${shape}`,
    fileMB: binBytes / 1e6,
    ms: t.medianMs,
    fileMBPerSec: binBytes / 1e6 / (t.medianMs / 1000),
    ratioToRawRead: rawMBs > 0 ? binBytes / 1e6 / (t.medianMs / 1000) / rawMBs : 0,
    floatModelMB: (params * 4) / 1e6,
  });
}
rmSync(dir, { recursive: true, force: true });
report("model-llama-load", rows, {
  notes: [
    `${params.toLocaleString()} parameters (${shape}: dim ${config.dim}, hidden ${config.hiddenDim}, ${config.nLayers} layers, ${config.nHeads}/${config.nKvHeads} heads, vocab ${config.vocabSize}), bf16 in 2 shards.`,
    "ratioToRawRead = raw readFileSync time of the same shard bytes / load time (1 = as fast as reading the bytes).",
    "peakRssGrowthMB: resident-memory growth during one quantizing load, sampled every 2 ms (GC-dependent; run with --expose-gc for a cleaner base).",
    "loadedModelMB: the loaded int4 model (packed projections + float embedding and norms); largestFloatTensorMB: the biggest float tensor alive at once.",
  ],
  chart: { title: "Checkpoint load throughput (file MB/s)", value: "fileMBPerSec", unit: "MB/s" },
});
