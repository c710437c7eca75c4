import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { packMatrix } from "@int21/bitpack";
import { openSafetensors, writeSafetensors } from "@int21/io";
import {
  type QuantizedLinear,
  createFloatLinear,
  createQuantLinear,
  createQuantizedLinear,
  createReferenceBackend,
  f16BitsToF32,
  getFormat,
  groupCount,
  referenceDequantize,
  roundToF16,
} from "@int21/quant-kernels";
import { SHARED, sharedPath } from "@int21/shared-data";
import { describe, expect, it } from "vitest";
import {
  exportGptqHf,
  gptqZeroGroups,
  loadGptqHf,
  packGptqLinear,
  parseGptqConfig,
  unpackGptqLinear,
} from "./gptq-hf";
import { loadHf, permuteHfRows } from "./load-hf";
import { loadLlama2c } from "./load-llama2c";
import { Llama2cTokenizer } from "./tokenizer";
import {
  type LlamaConfig,
  addLlamaLoRA,
  llamaModules,
  setLlamaModules,
  forward,
  linearParts,
  calibrationWindows,
  quantizeModel,
  createRunState,
  syntheticWeights,
  type LlamaWeights,
} from "@int21/model-llama";

const tmp = mkdtempSync(join(tmpdir(), "int21-gptq-hf-"));
const tok = Llama2cTokenizer.fromFile(sharedPath(SHARED.tok512));
const PROMPT = tok.encode("One day, Tim found a big red ball in the park.", { bos: true });
const backend = createReferenceBackend();

function logits(w: LlamaWeights, prompt: number[] = PROMPT): Float32Array {
  return forward(w, createRunState(w.config, { maxRows: prompt.length }), prompt, 0, "all").slice();
}

function packed(w: LlamaWeights, name: string): QuantizedLinear {
  const l = llamaModules(w).get(name);
  if (!l) throw new Error(`no module ${name}`);
  const p = linearParts(l, name);
  if (p.kind !== "quant") throw new Error(`${name} is not packed`);
  return p.q;
}

/** Every projection of `b` is `a`'s record: same format, words, scales, zeros and gIdx. */
function expectSameRecords(a: LlamaWeights, b: LlamaWeights): void {
  for (const [name, l] of llamaModules(a)) {
    if (name === "lm_head") continue;
    const p = linearParts(l, name);
    if (p.kind !== "quant") continue;
    const q = packed(b, name);
    expect(q.format.name, name).toBe(p.q.format.name);
    expect(q.qweight.words, name).toEqual(p.q.qweight.words);
    expect(q.scales, name).toEqual(p.q.scales);
    expect(q.zeros, name).toEqual(p.q.zeros);
    expect(q.gIdx, name).toEqual(p.q.gIdx);
  }
}

/** mulberry32, seeded. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * A packed record of random codes, f16 scales in [2^-9, 2^-5) and integer zeros in [minZero, qmax]
 * (symmetric formats: 2^(bits−1)); with `actOrder`, columns go to groups through a random permutation
 * (`gIdx[perm[j]] = floor(j / G)`, GPTQ's act-order map). Independent of every int21 quantizer.
 */
function randomRecord(
  format: string,
  N: number,
  K: number,
  rand: () => number,
  actOrder: boolean,
  minZero = 1,
): QuantizedLinear {
  const f = getFormat(format);
  const nG = groupCount(f, K);
  const codes = Uint8Array.from({ length: N * K }, () => Math.floor(rand() * (f.qmax + 1)));
  const scales = Float32Array.from({ length: N * nG }, () => roundToF16(2 ** (-9 + 4 * rand())));
  const zeros = Float32Array.from({ length: N * nG }, () =>
    f.symmetric ? 1 << (f.bits - 1) : minZero + Math.floor(rand() * (f.qmax + 1 - minZero)),
  );
  let gIdx: Int32Array | undefined;
  if (actOrder) {
    const perm = Array.from({ length: K }, (_, i) => i);
    for (let i = K - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      [perm[i], perm[j]] = [perm[j], perm[i]];
    }
    const G = f.groupSize === -1 ? K : f.groupSize;
    gIdx = new Int32Array(K);
    for (let j = 0; j < K; j++) gIdx[perm[j]] = Math.floor(j / G);
  }
  return createQuantizedLinear({
    format: f,
    outFeatures: N,
    inFeatures: K,
    qweight: packMatrix(codes, N, K, f.bits),
    scales,
    zeros,
    ...(gIdx ? { gIdx } : {}),
  });
}

const TINY: LlamaConfig = {
  dim: 64,
  hiddenDim: 128,
  nLayers: 1,
  nHeads: 4,
  nKvHeads: 2,
  vocabSize: 32,
  seqLen: 32,
  ropeTheta: 10000,
  normEps: 1e-5,
  sharedClassifier: true,
};

/** The tiny fixture model: float embedding and norms from `syntheticWeights`, random packed projections. */
function tinyModel(format: string, actOrder: boolean, seed: number): LlamaWeights {
  const w = syntheticWeights(TINY, { seed });
  const rand = rng(seed);
  const mods = new Map(llamaModules(w));
  for (const [name, l] of mods) {
    if (name === "lm_head") continue;
    const q = randomRecord(format, l.outFeatures, l.inFeatures, rand, actOrder);
    mods.set(name, createQuantLinear({ q, backend }));
  }
  setLlamaModules(w, mods);
  return w;
}

const FIXTURE_MODELS = [
  { dir: "int4-g32-asym-actorder", format: "int4-g32-asym-f16", actOrder: true, seed: 11 },
  { dir: "int2-g64-sym", format: "int2-g64-sym-f16", actOrder: false, seed: 12 },
  { dir: "int8-pc-asym", format: "int8-pc-asym-f16", actOrder: false, seed: 13 },
  { dir: "int3-g32-asym-actorder", format: "int3-g32-asym-f16", actOrder: true, seed: 14 },
] as const;

// The digests below were produced by an independent implementation of AutoGPTQ's documented dequantization, not
// by int21: numpy 2.4.6 + safetensors in a throwaway Python venv, run once on the folders this file writes with
// INT21_WRITE_GPTQ_FIXTURE=<dir> (never needed by CI). The script:
//
//   import hashlib, json, sys, numpy as np
//   from safetensors.numpy import load_file
//   out = {}
//   for name in ["int4-g32-asym-actorder", "int2-g64-sym", "int8-pc-asym", "int3-g32-asym-actorder"]:
//       d = f"{sys.argv[1]}/{name}"
//       qc = json.load(open(f"{d}/config.json"))["quantization_config"]
//       bits, v1 = qc["bits"], qc["checkpoint_format"] == "gptq"
//       t = load_file(f"{d}/model.safetensors")
//       wf = np.arange(0, 32, bits, dtype=np.uint32)          # shifts of the codes in one int32 word
//       mask = np.uint32(2**bits - 1)
//       for m in sorted({k.rsplit(".", 1)[0] for k in t if k.endswith(".qweight")}):
//           qw = t[m + ".qweight"].view(np.uint32)             # [K/pf, N], packed along the input dim
//           qz = t[m + ".qzeros"].view(np.uint32)              # [G, N/pf], packed along the output dim
//           if bits == 3:   # 32 codes in 3 words, straddling: read each column (zero row) as a little-endian bitstream
//               lsb = lambda a: np.unpackbits(np.ascontiguousarray(a, dtype="<u4").view(np.uint8).reshape(a.shape[0], -1), axis=1, bitorder="little")
//               q = (lsb(qw.T).reshape(qw.shape[1], -1, 3) * [1, 2, 4]).sum(-1).T                  # [K, N]
//               z = (lsb(qz).reshape(qz.shape[0], -1, 3) * [1, 2, 4]).sum(-1)                      # [G, N]
//           else:
//               q = ((qw[:, None, :] >> wf[None, :, None]) & mask).reshape(-1, qw.shape[1])      # [K, N]
//               z = ((qz[:, :, None] >> wf[None, None, :]) & mask).reshape(qz.shape[0], -1)      # [G, N]
//           z = z.astype(np.int64) + (1 if v1 else 0)          # checkpoint_format gptq stores zero - 1
//           g = t[m + ".g_idx"].astype(np.int64)               # [K] group of each input column
//           s = t[m + ".scales"].astype(np.float32)            # [G, N]
//           w = (s[g] * (q.astype(np.int64) - z[g]).astype(np.float32)).T.astype("<f4")   # [N, K]
//           out[f"{name}/{m}"] = hashlib.sha256(np.ascontiguousarray(w).tobytes()).hexdigest()[:16]
//   print(json.dumps(out, indent=1, sort_keys=True))
const NUMPY_SHA256: Record<string, string> = {
  "int2-g64-sym/model.layers.0.mlp.down_proj": "3e0d53fa937601a4",
  "int2-g64-sym/model.layers.0.mlp.gate_proj": "dc0a7dadf3de23c1",
  "int2-g64-sym/model.layers.0.mlp.up_proj": "c75784837570c3ea",
  "int2-g64-sym/model.layers.0.self_attn.k_proj": "9224167f0e9334f6",
  "int2-g64-sym/model.layers.0.self_attn.o_proj": "4f7255e7eed4e042",
  "int2-g64-sym/model.layers.0.self_attn.q_proj": "e01dd0023f2e2b60",
  "int2-g64-sym/model.layers.0.self_attn.v_proj": "5b78e3f9b452bef6",
  "int3-g32-asym-actorder/model.layers.0.mlp.down_proj": "42692f590d9846f9",
  "int3-g32-asym-actorder/model.layers.0.mlp.gate_proj": "f722824f2fda02e1",
  "int3-g32-asym-actorder/model.layers.0.mlp.up_proj": "5b2090cf184f0360",
  "int3-g32-asym-actorder/model.layers.0.self_attn.k_proj": "bc5e98cb5c0d2807",
  "int3-g32-asym-actorder/model.layers.0.self_attn.o_proj": "f67bbef4410f6749",
  "int3-g32-asym-actorder/model.layers.0.self_attn.q_proj": "85e1f18264b74e2c",
  "int3-g32-asym-actorder/model.layers.0.self_attn.v_proj": "48ad380e37360bf9",
  "int4-g32-asym-actorder/model.layers.0.mlp.down_proj": "536352dcde69fb39",
  "int4-g32-asym-actorder/model.layers.0.mlp.gate_proj": "596b837faacc0acc",
  "int4-g32-asym-actorder/model.layers.0.mlp.up_proj": "a4b553d36de73a07",
  "int4-g32-asym-actorder/model.layers.0.self_attn.k_proj": "f4af2cab8ad3039b",
  "int4-g32-asym-actorder/model.layers.0.self_attn.o_proj": "238002a0a256452e",
  "int4-g32-asym-actorder/model.layers.0.self_attn.q_proj": "6a7572e28464c02b",
  "int4-g32-asym-actorder/model.layers.0.self_attn.v_proj": "008fc0bd1a751275",
  "int8-pc-asym/model.layers.0.mlp.down_proj": "508cd3bec6df5a1a",
  "int8-pc-asym/model.layers.0.mlp.gate_proj": "4d3954766596bb65",
  "int8-pc-asym/model.layers.0.mlp.up_proj": "6fdecc452ea94f9c",
  "int8-pc-asym/model.layers.0.self_attn.k_proj": "62138584778f30d1",
  "int8-pc-asym/model.layers.0.self_attn.o_proj": "b954393fbcf12457",
  "int8-pc-asym/model.layers.0.self_attn.q_proj": "6be2f7e4b031ce72",
  "int8-pc-asym/model.layers.0.self_attn.v_proj": "bbabeb8f8da11f94",
};

describe("GPTQ Hugging Face export and import", () => {
  it("stories260K INT8 (RTN, g64 asym): qweight/qzeros/scales/g_idx + quantization_config → loadHf: the same records, identical logits", async () => {
    const w = loadLlama2c(sharedPath(SHARED.stories260K), { quantize: { format: "int8-g64-asym-f16" } });
    const dir = join(tmp, "int8");
    const r = await exportGptqHf(dir, w);
    expect(r.linears.filter((l) => l.source === "packed")).toHaveLength(35);
    const cfg = JSON.parse(readFileSync(join(dir, "config.json"), "utf8"));
    expect(cfg.quantization_config).toEqual({
      quant_method: "gptq",
      bits: 8,
      group_size: 64,
      desc_act: false,
      sym: false,
      checkpoint_format: "gptq",
      pack_dtype: "int32",
      lm_head: false,
      static_groups: false,
      true_sequential: true,
    });
    const f = await openSafetensors(join(dir, "model.safetensors"));
    const m = "model.layers.0.mlp.down_proj"; // K = 172: 43 words of 4 codes; 3 groups (64, 64, 44)
    expect(f.tensors[`${m}.qweight`]).toMatchObject({ dtype: "I32", shape: [43, 64] });
    expect(f.tensors[`${m}.qzeros`]).toMatchObject({ dtype: "I32", shape: [3, 16] });
    expect(f.tensors[`${m}.scales`]).toMatchObject({ dtype: "F16", shape: [3, 64] });
    expect(f.tensors[`${m}.g_idx`]).toMatchObject({ dtype: "I32", shape: [172] });
    expect(f.names).not.toContain(`${m}.weight`);
    await f.close();
    const back = await loadHf(dir);
    expect(back.config).toEqual(w.config);
    expectSameRecords(w, back);
    expect(logits(back)).toEqual(logits(w));
  });

  it("GPTQ with act-order (stories260K INT8 g32 sym): desc_act, g_idx kept, records and logits identical", async () => {
    const float = loadLlama2c(sharedPath(SHARED.stories260K));
    const text = readFileSync(sharedPath(SHARED.tinystoriesValid), "utf8").slice(0, 20_000);
    const calib = calibrationWindows(tok.encode(text), 4, 64, 1);
    const { weights: w } = quantizeModel(float, {
      format: "int8-g32-sym-f16",
      quantizer: "gptq",
      actOrder: true,
      calib,
    });
    expect(packed(w, "model.layers.0.self_attn.q_proj").gIdx).toBeDefined();
    const dir = join(tmp, "int8-actorder");
    await exportGptqHf(dir, w);
    const cfg = JSON.parse(readFileSync(join(dir, "config.json"), "utf8"));
    expect(cfg.quantization_config).toMatchObject({ bits: 8, group_size: 32, desc_act: true, sym: true });
    const back = await loadGptqHf(dir);
    expectSameRecords(w, back);
    expect(logits(back)).toEqual(logits(w));
  }, 60_000);

  it("4- and 2-bit (a 64/128-wide model), sharded, and checkpoint_format gptq_v2 read back bit for bit", async () => {
    for (const [format, checkpointFormat] of [
      ["int4-g32-asym-f16", "gptq"],
      ["int2-g64-asym-f16", "gptq_v2"],
      ["int4-g128-sym-f16", "gptq"],
      ["int3-g32-asym-f16", "gptq"],
    ] as const) {
      const w = tinyModel(format, format.startsWith("int4-g32"), 3);
      const dir = join(tmp, `tiny-${format}-${checkpointFormat}`);
      const r = await exportGptqHf(dir, w, { checkpointFormat, maxShardBytes: 8_000 });
      expect(r.files).toContain("model.safetensors.index.json");
      expect(r.config.quantization_config).toMatchObject({ checkpoint_format: checkpointFormat });
      const back = await loadHf(dir);
      expectSameRecords(w, back);
      const prompt = [1, 5, 9, 30, 2, 17];
      expect(logits(back, prompt)).toEqual(logits(w, prompt));
    }
  });

  it("every family (Llama 2/3, SmolLM2, Mistral, Qwen2 biases, Qwen3 q/k norms, Gemma 2, Phi-3's fused qkv_proj / gate_up_proj) round-trips at INT4", async () => {
    const formats = new Set<string>();
    for (const name of ["llama2", "llama3", "smollm2", "mistral", "qwen2", "qwen3", "gemma2", "phi3"]) {
      const src = sharedPath(`fixtures/hf-families/${name}`);
      const w = await loadHf(src, { quantize: { format: "int4-g32-asym-f16" } });
      const dir = join(tmp, `family-${name}`);
      // auto: AutoGPTQ's zero − 1 storage unless a group's zero point is 0 (then GPTQModel's gptq_v2)
      const zeroGroups = gptqZeroGroups(w);
      const r = await exportGptqHf(dir, w);
      const fmt = (r.config.quantization_config as { checkpoint_format: string }).checkpoint_format;
      expect(fmt, name).toBe(zeroGroups > 0 ? "gptq_v2" : "gptq");
      formats.add(fmt);
      if (zeroGroups > 0)
        await expect(exportGptqHf(`${dir}-v1`, w, { checkpointFormat: "gptq" })).rejects.toThrow(
          /is 0, which/,
        );
      const back = await loadHf(dir);
      expect(back.config, name).toEqual(w.config);
      expectSameRecords(w, back);
      const prompt = [1, 5, 9, 30, 2, 17];
      expect(logits(back, prompt), name).toEqual(logits(w, prompt));
    }
    expect([...formats].sort()).toEqual(["gptq", "gptq_v2"]); // both paths ran
  }, 120_000);

  it("a packed classifier as a GPTQ lm_head (lmHead: lm_head true) reads back; without lmHead it is written float", async () => {
    const w = syntheticWeights({ ...TINY, sharedClassifier: false }, { seed: 5 });
    const rand = rng(5);
    const mods = new Map(llamaModules(w));
    for (const [name, l] of mods)
      mods.set(
        name,
        createQuantLinear({
          q: randomRecord("int4-g32-asym-f16", l.outFeatures, l.inFeatures, rand, false),
          backend,
        }),
      );
    setLlamaModules(w, mods);
    const dir = join(tmp, "lm-head");
    const r = await exportGptqHf(dir, w, { lmHead: true });
    expect(r.config.quantization_config).toMatchObject({ lm_head: true });
    const f = await openSafetensors(join(dir, "model.safetensors"));
    expect(f.names).toContain("lm_head.qweight");
    await f.close();
    const back = await loadHf(dir);
    expectSameRecords(w, back);
    expect(packed(back, "lm_head").qweight.words).toEqual(packed(w, "lm_head").qweight.words);
    const prompt = [1, 5, 9, 30];
    expect(logits(back, prompt)).toEqual(logits(w, prompt));
    const plain = await exportGptqHf(join(tmp, "lm-head-float"), w);
    expect(plain.config.quantization_config).toMatchObject({ lm_head: false });
    expect(plain.linears.find((l) => l.name === "classifier")?.source).toBe("dequantized");
    const flt = syntheticWeights(
      { ...TINY, sharedClassifier: false },
      { seed: 5, format: "int4-g32-asym-f16" },
    );
    const cls = new Map(llamaModules(flt));
    cls.set(
      "lm_head",
      createFloatLinear({ weight: new Float32Array(32 * 64), outFeatures: 32, inFeatures: 64, backend }),
    );
    setLlamaModules(flt, cls);
    await expect(exportGptqHf(join(tmp, "lm-head-bad"), flt, { lmHead: true })).rejects.toThrow(
      /lmHead is set but the classifier is float/,
    );
  });

  it("an older AutoGPTQ folder (quantize_config.json, no quant_method, model_file_base_name) loads too", async () => {
    const w = tinyModel("int4-g32-asym-f16", true, 21);
    const dir = join(tmp, "legacy");
    await exportGptqHf(dir, w);
    const cfg = JSON.parse(readFileSync(join(dir, "config.json"), "utf8"));
    const { quant_method: _m, ...qc } = cfg.quantization_config;
    cfg.quantization_config = undefined;
    writeFileSync(join(dir, "config.json"), JSON.stringify(cfg));
    writeFileSync(
      join(dir, "quantize_config.json"),
      JSON.stringify({ ...qc, damp_percent: 0.01, model_file_base_name: "gptq_model-4bit-32g" }),
    );
    renameSync(join(dir, "model.safetensors"), join(dir, "gptq_model-4bit-32g.safetensors"));
    const back = await loadHf(dir);
    expectSameRecords(w, back);
    const prompt = [1, 5, 9, 30];
    expect(logits(back, prompt)).toEqual(logits(w, prompt));
  });

  it("the layout itself: AutoGPTQ's unpacking of qweight/qzeros (zero − 1) reproduces int21's dequantized weight", () => {
    // An independent decode written from AutoGPTQ's QuantLinear: w[k, n] = scales[g_idx[k], n] · (q[k, n] − (z[g, n] + 1)).
    const rand = rng(7);
    for (const format of ["int4-g32-asym-f16", "int2-g64-sym-f16", "int8-g128-asym-f16"]) {
      const q = randomRecord(format, 32, 256, rand, true);
      const t = packGptqLinear(q, format);
      const bits = q.format.bits;
      const pf = 32 / bits;
      const mask = (1 << bits) - 1;
      const N = 32;
      const want = new Float32Array(32 * 256);
      referenceDequantize(q, want);
      for (let k = 0; k < 256; k++) {
        for (let n = 0; n < N; n++) {
          const code = (t.qweight[Math.floor(k / pf) * N + n] >>> ((k % pf) * bits)) & mask;
          const g = t.gIdx[k];
          const z = ((t.qzeros[g * (N / pf) + Math.floor(n / pf)] >>> ((n % pf) * bits)) & mask) + 1;
          const scale = f16BitsToF32(t.scales[g * N + n]);
          expect(Math.fround(scale * (code - z)), `${format} [${n}, ${k}]`).toBe(want[n * 256 + k]);
        }
      }
    }
  });

  it("3-bit: AutoGPTQ's 32-codes-in-3-words packing (codes 10 and 21 straddle words) decodes to int21's weight", () => {
    // Decoded as AutoGPTQ's QuantLinear unpacks 3-bit words: per triple of rows (a, b, c), codes 0–9 from a, code 10
    // from a's top 2 bits and b's bit 0, codes 11–20 from b at 3j+1, code 21 from b's bit 31 and c's bits 0–1,
    // codes 22–31 from c at 3j+2; zeros the same along the output dimension, plus 1.
    const code3 = (w: Int32Array, base: number, stride: number, k: number): number => {
      const t = Math.floor(k / 32);
      const j = k % 32;
      const [a, b, c] = [0, 1, 2].map((i) => w[base + (3 * t + i) * stride] >>> 0);
      if (j < 10) return (a >>> (3 * j)) & 7;
      if (j === 10) return ((a >>> 30) & 3) | ((b & 1) << 2);
      if (j < 21) return (b >>> (3 * (j - 11) + 1)) & 7;
      if (j === 21) return ((b >>> 31) & 1) | ((c & 3) << 1);
      return (c >>> (3 * (j - 22) + 2)) & 7;
    };
    const N = 64;
    const K = 96;
    const q = randomRecord("int3-g32-asym-f16", N, K, rng(9), true);
    const t = packGptqLinear(q, "int3");
    expect(t.qweight).toHaveLength((K / 32) * 3 * N);
    expect(t.qzeros).toHaveLength(3 * ((N / 32) * 3));
    const want = new Float32Array(N * K);
    referenceDequantize(q, want);
    for (let k = 0; k < K; k++) {
      for (let n = 0; n < N; n++) {
        const g = t.gIdx[k];
        const z = code3(t.qzeros, g * ((N / 32) * 3), 1, n) + 1;
        const scale = f16BitsToF32(t.scales[g * N + n]);
        expect(Math.fround(scale * (code3(t.qweight, n, N, k) - z)), `[${n}, ${k}]`).toBe(want[n * K + k]);
      }
    }
  });

  it("the numpy peer (AutoGPTQ's dequantization) decodes int21's folders to int21's dequantized weights", async () => {
    const out = process.env.INT21_WRITE_GPTQ_FIXTURE;
    const mine: Record<string, string> = {};
    for (const fm of FIXTURE_MODELS) {
      const w = tinyModel(fm.format, fm.actOrder, fm.seed);
      const dir = join(out ?? tmp, fm.dir);
      await exportGptqHf(dir, w);
      const back = await loadGptqHf(dir);
      expectSameRecords(w, back);
      // int21's dequantization of its own records (before export), in Hugging Face's q/k row order
      for (const [name, l] of llamaModules(w)) {
        if (name === "lm_head") continue;
        const p = linearParts(l, name);
        if (p.kind !== "quant") throw new Error(`${name} not packed`);
        let deq: Float32Array = new Float32Array(l.outFeatures * l.inFeatures);
        referenceDequantize(p.q, deq);
        if (/\.(q|k)_proj$/.test(name))
          deq = permuteHfRows(deq, l.outFeatures / 16, l.outFeatures, l.inFeatures);
        const hash = createHash("sha256").update(new Uint8Array(deq.buffer)).digest("hex").slice(0, 16);
        mine[`${fm.dir}/${name}`] = hash;
      }
    }
    if (out !== undefined) writeFileSync(join(out, "int21.json"), JSON.stringify(mine, null, 1));
    expect(Object.keys(mine)).toHaveLength(28);
    expect(mine).toEqual(NUMPY_SHA256);
  });

  it("refuses what the layout cannot hold, naming the projection", async () => {
    const w = loadLlama2c(sharedPath(SHARED.stories260K), { quantize: { format: "int4-g32-asym-f16" } });
    await expect(exportGptqHf(join(tmp, "bad4"), w)).rejects.toThrow(
      /layers\.0\.w1: outFeatures 172 is not a multiple of 8/,
    );
    const float = loadLlama2c(sharedPath(SHARED.stories260K));
    await expect(exportGptqHf(join(tmp, "bad-float"), float)).rejects.toThrow(
      /layers\.0\.wq is a float projection/,
    );
    const q3 = randomRecord("int3-g32-asym-f16", 16, 32, rng(3), false);
    expect(() => packGptqLinear(q3, "odd3")).toThrow(/odd3: outFeatures 16 is not a multiple of 32/);
    const nf4 = syntheticWeights(TINY, { format: "nf4-g64-f16" });
    await expect(exportGptqHf(join(tmp, "bad-nf4"), nf4)).rejects.toThrow(/codebook format/);
    const lora = tinyModel("int4-g32-asym-f16", false, 1);
    addLlamaLoRA(lora, { targetModules: ["q_proj"], r: 2, seed: 1 });
    await expect(exportGptqHf(join(tmp, "bad-lora"), lora)).rejects.toThrow(/LoRA-wrapped/);
    // A zero of 0: AutoGPTQ's zero − 1 storage cannot hold it; gptq_v2 can.
    const q = randomRecord("int4-g32-asym-f16", 8, 32, rng(2), false, 0);
    const z0 = Float32Array.from(q.zeros);
    z0[3] = 0;
    const q0 = createQuantizedLinear({ ...q, zeros: z0 });
    expect(() => packGptqLinear(q0, "x")).toThrow(/x: zero of row 3, group 0 is 0.*gptq_v2/);
    const v2 = packGptqLinear(q0, "x", { checkpointFormat: "gptq_v2" });
    const cfg = parseGptqConfig(
      { quant_method: "gptq", bits: 4, group_size: 32, sym: false, checkpoint_format: "gptq_v2" },
      "c",
    );
    const back = unpackGptqLinear(v2, { name: "x", outFeatures: 8, inFeatures: 32, config: cfg });
    expect(back.zeros).toEqual(z0);
    expect(back.qweight.words).toEqual(q0.qweight.words);
  });

  it("the reader refuses configs and tensors it cannot read exactly", async () => {
    const c = (o: Record<string, unknown>) => () =>
      parseGptqConfig({ quant_method: "gptq", bits: 4, group_size: 128, ...o }, "cfg.json");
    expect(c({ bits: 5 })).toThrow(/cfg\.json: quantization_config\.bits: 5-bit codes have no GPTQ layout/);
    expect(c({ group_size: 256 })).toThrow(/group_size 256 has no int21 format/);
    expect(c({ checkpoint_format: "marlin" })).toThrow(/checkpoint_format "marlin" is not supported/);
    expect(c({ frobnicate: 1 })).toThrow(/quantization_config\.frobnicate is not a field/);
    expect(c({ quant_method: "awq" })).toThrow(/quant_method is "awq"/);
    // A v1 zero stored as 15 (4-bit) means zero point 16: AutoGPTQ's overflow of a zero of 0.
    const cfg = parseGptqConfig({ quant_method: "gptq", bits: 4, group_size: -1, sym: false }, "c");
    const t = {
      qweight: new Int32Array(4 * 8),
      qzeros: Int32Array.from([0x7777777f]),
      scales: new Uint16Array(8).fill(0x3c00),
    };
    expect(() => unpackGptqLinear(t, { name: "m", outFeatures: 8, inFeatures: 32, config: cfg })).toThrow(
      /m: row 0, group 0 stores zero 15, i\.e\. zero point 16/,
    );
    t.qzeros[0] = 0x77777777;
    const ok = unpackGptqLinear(t, {
      name: "m",
      outFeatures: 8,
      inFeatures: 32,
      config: { ...cfg, sym: true },
    });
    expect(ok.format.name).toBe("int4-pc-sym-f16");
    // A tensor the model does not use is refused by name.
    const w = tinyModel("int4-g32-asym-f16", false, 4);
    const dir = join(tmp, "extra");
    await exportGptqHf(dir, w);
    await writeSafetensors(join(dir, "model.safetensors"), {
      ...(await (async () => {
        const f = await openSafetensors(join(dir, "model.safetensors"));
        const all: Record<
          string,
          { dtype: "I32" | "F16" | "F32"; shape: number[]; data: ArrayLike<number> }
        > = {};
        for (const n of f.names) {
          const r = await f.readRaw(n);
          all[n] = {
            dtype: r.dtype as "I32" | "F16" | "F32",
            shape: [...r.shape],
            data: r.data as ArrayLike<number>,
          };
        }
        await f.close();
        return all;
      })()),
      "model.layers.0.mlp.extra.weight": { dtype: "F32", shape: [2], data: [1, 2] },
    });
    await expect(loadHf(dir)).rejects.toThrow(/unexpected tensor model\.layers\.0\.mlp\.extra\.weight/);
  });
});
