// @int21/io read throughput: ggml dequantizers (weights/s for each type, ratio to the F32 copy) and streamed
// safetensors reads (GB/s for F32 and F16 tensors, ratio to fs.readFile of the same file), same run.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { consume, report, time, timeAsync } from "@int21/bench-utils";
import { GGML_TYPES, type GgmlTypeName, openSafetensors, writeSafetensors } from "@int21/io";

const quick = process.env.INT21_BENCH_QUICK === "1";
const rows = quick ? 64 : 2048;
const cols = quick ? 256 : 2048; // a 2048 × 2048 weight (4M weights) in the full run
const n = rows * cols;
const opts = { minTimeMs: quick ? 50 : 1000, minRuns: 3 };

let seed = 12345;
const rand = () => {
  seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
  return seed / 2 ** 32;
};
const x = Float32Array.from({ length: n }, () => (rand() - 0.5) * 0.1);
const out = new Float32Array(n);

const results = [];
let copyRate = 0;
for (const name of [
  "F32",
  "F16",
  "BF16",
  "Q8_0",
  "Q4_0",
  "Q4_1",
  "Q5_0",
  "Q5_1",
  "Q2_K",
  "Q3_K",
  "Q4_K",
  "Q5_K",
  "Q6_K",
] as GgmlTypeName[]) {
  const type = GGML_TYPES[name];
  const bytes = new Uint8Array((n / type.blockSize) * type.blockBytes);
  if (type.quantize) type.quantize(x, bytes);
  else {
    // types io cannot write: random blocks; only speed is measured.
    for (let i = 0; i < bytes.length; i++) bytes[i] = (rand() * 256) | 0;
  }
  const dequantize = type.dequantize as NonNullable<typeof type.dequantize>;
  // Validate before timing: the writable types must come back within a few quantization steps.
  dequantize(bytes, out, n);
  if (type.quantize) {
    let err = 0;
    for (let i = 0; i < n; i++) err = Math.max(err, Math.abs(out[i] - x[i]));
    // 4 bits and more: a quarter of the ±0.05 range; Q2_K / Q3_K: one quantization step of it
    const bound = name === "Q2_K" ? 0.1 / 3 : name === "Q3_K" ? 0.1 / 7 : 0.05 * 0.25;
    if (err > bound) throw new Error(`${name}: max error ${err} is above ${bound}`);
  }
  const t = time(name, () => dequantize(bytes, out, n)[n - 1], opts);
  const rate = n / (t.medianMs / 1000);
  if (name === "F32") copyRate = rate;
  results.push({
    name: `io:dequantize:${name}:${rows}x${cols}`,
    weightsPerSec: rate,
    gbPerSecOut: (4 * rate) / 1e9,
    bitsPerWeight: type.bitsPerWeight,
    ratioToF32Copy: rate / copyRate,
  });
}

const dir = mkdtempSync(join(tmpdir(), "int21-io-bench-"));
try {
  const path = join(dir, "bench.safetensors");
  await writeSafetensors(path, {
    f32: { dtype: "F32", shape: [rows, cols], data: x },
    f16: { dtype: "F16", shape: [rows, cols], data: x },
  });
  const whole = await timeAsync("readFile", async () => readFileSync(path).length, opts);
  const fileBytes = readFileSync(path).length;
  const baseline = fileBytes / (whole.medianMs / 1000);
  results.push({ name: `io:fs-readFile:${fileBytes}`, gbPerSecIn: baseline / 1e9, ratioToReadFile: 1 });
  const f = await openSafetensors(path);
  const check = await f.readF32("f32", out);
  for (let i = 0; i < n; i += 997) if (check[i] !== x[i]) throw new Error(`safetensors F32 mismatch at ${i}`);
  for (const name of ["f32", "f16"]) {
    const t = await timeAsync(name, async () => (await f.readF32(name, out))[0], opts);
    const rate = f.tensors[name].byteLength / (t.medianMs / 1000);
    results.push({
      name: `io:safetensors-readF32:${name.toUpperCase()}:${rows}x${cols}`,
      gbPerSecIn: rate / 1e9,
      ratioToReadFile: rate / baseline,
    });
  }
  await f.close();
} finally {
  rmSync(dir, { recursive: true, force: true });
}
consume(out);
report("io-read", results, {
  notes: [
    `${n} weights; ratioToF32Copy = weights/s ÷ the F32 "dequantize" (a copy), same run`,
    "ratioToReadFile = bytes/s of a streamed safetensors tensor read ÷ fs.readFileSync of the whole file, same run",
  ],
  chart: { title: "ggml dequantize throughput (weights/s)", value: "weightsPerSec" },
});
