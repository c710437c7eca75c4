import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { attention, createRng, gradCheck, linear, parameter, setBackend, tidy } from "@int21/autograd";
import { type GgufValue, type GgufWriteTensor, parseGguf, parseSafetensors, serializeGguf } from "@int21/io";
import { createReferenceBackend, type Linear } from "@int21/quant-kernels";
import { sharedPath } from "@int21/shared-data";
import { describe, expect, it } from "vitest";
import { loadInt21Checkpoint, saveInt21Checkpoint } from "./checkpoint";
import { exportHf } from "./export-hf";
import { ggufLoraTensors } from "./gguf-lora";
import { ggufConfigToLlama, loadGguf, serializeGgufModel } from "./gguf-model";
import { hfConfigToLlama, loadHf, permuteHfRows } from "./load-hf";
import {
  headSize,
  kvDim,
  layerWindow,
  qDim,
  addLlamaLoRA,
  finetune,
  forward,
  rmsnorm,
  softcap,
  linearParts,
  type QuantizeModelOptions,
  calibrationHiddenStates,
  quantizeModel,
  createRunState,
  ensureContext,
  gegluTensor,
  ropeScaled,
  softcapTensor,
  trainForward,
  windowAttention,
  type LlamaWeights,
} from "@int21/model-llama";
import { saveLlamaAdapter } from "./peft-adapter";
import { quantizeCheckpoint } from "./quantize-checkpoint";

// autograd has no default backend: its ops (trainForward, finetune, attention below) run on the reference one.
setBackend(createReferenceBackend());

/** The miniature checkpoints of shared/fixtures/hf-families, one per family, with transformers' logits. */
export const FAMILY_FIXTURES = [
  "llama2",
  "llama3",
  "smollm2",
  "qwen2",
  "qwen3",
  "mistral",
  "phi3",
  "gemma2",
] as const;

interface Reference {
  ids: number[];
  rows: number;
  vocab: number;
  greedy_prompt_ids: number[];
  greedy_ids: number[];
}

function fixture(name: string): { dir: string; ref: Reference; logits: Float32Array } {
  const dir = sharedPath(`fixtures/hf-families/${name}`);
  const ref = JSON.parse(readFileSync(join(dir, "reference.json"), "utf8")) as Reference;
  const buf = readFileSync(join(dir, "reference-logits.f32"));
  const logits = new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
  if (logits.length !== ref.rows * ref.vocab)
    throw new Error(`${dir}: reference-logits.f32 has ${logits.length} floats, expected rows × vocab`);
  return { dir, ref, logits };
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

function argmax(v: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < v.length; i++) if (v[i] > v[best]) best = i;
  return best;
}

/** Greedy continuation: prefill the prompt, then one token at a time through the decode path. */
function greedy(w: LlamaWeights, prompt: number[], steps: number, maxRows: number, ctx?: number): number[] {
  const state = createRunState(w.config, { maxRows, ...(ctx !== undefined ? { ctx } : {}) });
  let logits = forward(w, state, prompt, 0, "last");
  const out: number[] = [];
  for (let i = 0; i < steps; i++) {
    const next = argmax(logits);
    out.push(next);
    logits = forward(w, state, [next], prompt.length + i, "last");
  }
  return out;
}

describe.each(FAMILY_FIXTURES)("family %s matches transformers", (name) => {
  const { dir, ref, logits: expected } = fixture(name);
  const load = (() => {
    let w: Promise<LlamaWeights> | undefined;
    return () => {
      w ??= loadHf(dir);
      return w;
    };
  })();

  it("logits of all 48 positions within 1e-3 (one prefill)", async () => {
    const w = await load();
    const state = createRunState(w.config, { maxRows: ref.rows });
    const got = forward(w, state, ref.ids, 0, "all");
    expect(maxAbsDiff(got, expected)).toBeLessThan(1e-3);
  });

  it("logits within 1e-3 through small chunks, a growing cache and (windowed) ring buffers", async () => {
    const w = await load();
    const state = createRunState(w.config, { maxRows: 5, ctx: 8 });
    const V = ref.vocab;
    let worst = 0;
    for (let p = 0; p < ref.rows; p += 5) {
      const n = Math.min(5, ref.rows - p);
      const got = forward(w, state, ref.ids.slice(p, p + n), p, "all");
      worst = Math.max(worst, maxAbsDiff(got, expected.subarray(p * V, (p + n) * V)));
    }
    expect(worst).toBeLessThan(1e-3);
    expect(state.ctx).toBeGreaterThanOrEqual(ref.rows);
  });

  it("greedy ids identical to transformers' generate", async () => {
    const w = await load();
    expect(greedy(w, ref.greedy_prompt_ids, ref.greedy_ids.length, 8)).toEqual(ref.greedy_ids);
  });
});

describe.each(FAMILY_FIXTURES)("family %s: training and calibration forwards", (name) => {
  const { dir, ref } = fixture(name);
  const ids = ref.ids.slice(0, 24);
  let weights: Promise<LlamaWeights> | undefined;
  const load = () => {
    weights ??= loadHf(dir);
    return weights;
  };
  const inference = async (w: LlamaWeights) =>
    forward(w, createRunState(w.config, { maxRows: ids.length }), ids, 0, "all").slice();

  it("trainForward's logits equal the inference forward's", async () => {
    const w = await load();
    const want = await inference(w);
    const got = tidy(() => trainForward(w, ids).toArray());
    expect(maxAbsDiff(got, want)).toBeLessThan(2e-4);
  });

  it("the GPTQ calibration forward reaches the same logits", async () => {
    const w = await load();
    const want = await inference(w);
    const c = w.config;
    const x = calibrationHiddenStates(w, [ids]);
    const xn = new Float32Array(ids.length * c.dim);
    rmsnorm(xn, x, w.finalNorm, ids.length, c.dim, c.normEps);
    const got = new Float32Array(ids.length * c.vocabSize);
    w.classifier.forward(xn, ids.length, got);
    if (c.finalLogitSoftcap !== undefined) softcap(got, got.length, c.finalLogitSoftcap);
    expect(maxAbsDiff(got, want)).toBeLessThan(1e-4);
  });

  it("quantizes with GPTQ (8-bit: logits stay close) and fine-tunes a LoRA adapter for two steps", async () => {
    const w = await loadHf(dir);
    const want = await inference(w);
    const { weights: q } = quantizeModel(w, {
      format: "int8-g32-asym-f16",
      method: "gptq",
      calib: [Int32Array.from(ref.ids)],
    });
    for (const L of q.layers) expect(linearParts(L.wq, "wq").kind).toBe("quant");
    const got = await inference(q);
    expect(maxAbsDiff(got, want)).toBeLessThan(
      0.05 * Math.max(1, maxAbsDiff(want, new Float32Array(want.length))),
    );
    const input = Int32Array.from(ref.ids.slice(0, 16));
    const target = Int32Array.from(ref.ids.slice(1, 17));
    const res = await finetune(
      q,
      { train: [{ input, target }] },
      {
        lora: { targetModules: ["q_proj", "v_proj", "down_proj"], r: 4, alpha: 8 },
        steps: 2,
        lr: 1e-2,
        seed: 1,
      },
    );
    expect(res.steps).toBe(2);
    const losses = res.history.train.map(([, l]) => l);
    expect(losses.every(Number.isFinite)).toBe(true);
  }, 120_000);
});

describe("family ops: gradients", () => {
  const rng = createRng(7);
  const leaf = (shape: number[], s = 1) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const v = new Float32Array(n);
    for (let i = 0; i < n; i++) v[i] = s * rng.normal();
    return parameter(v, shape);
  };

  it("windowed, soft-capped GQA attention", () => {
    const [q, k, v] = [leaf([2, 7, 4 * 4]), leaf([2, 7, 2 * 4]), leaf([2, 7, 2 * 4])];
    const r = gradCheck(
      (a, b, c) =>
        windowAttention(a, b, c, { nHeads: 4, nKvHeads: 2, headSize: 4, scale: 0.7, cap: 2, window: 3 }),
      [q, k, v],
    );
    expect(r.worst).toBeLessThanOrEqual(1);
  });

  it("equals autograd's fused attention without window and cap", () => {
    const [q, k, v] = [leaf([1, 6, 2 * 4]), leaf([1, 6, 1 * 4]), leaf([1, 6, 1 * 4])];
    const a = tidy(() => attention(q, k, v, { nHeads: 2, nKvHeads: 1 }).toArray());
    const b = tidy(() =>
      windowAttention(q, k, v, {
        nHeads: 2,
        nKvHeads: 1,
        headSize: 4,
        scale: 0.5,
        cap: 0,
        window: 0,
      }).toArray(),
    );
    expect(maxAbsDiff(a, b)).toBeLessThan(1e-5);
  });

  it("GeGLU, soft-capping and scaled RoPE", () => {
    expect(gradCheck((a, b) => gegluTensor(a, b), [leaf([3, 5]), leaf([3, 5])]).worst).toBeLessThanOrEqual(1);
    expect(gradCheck((a) => softcapTensor(a, 1.5), [leaf([4, 6], 2)]).worst).toBeLessThanOrEqual(1);
    const c = hfConfigToLlama(
      JSON.parse(readFileSync(join(sharedPath("fixtures/hf-families/llama3"), "config.json"), "utf8")),
    );
    expect(gradCheck((a) => ropeScaled(a, c), [leaf([2, 5, 64])]).worst).toBeLessThanOrEqual(1);
  });
});

describe("family configs", () => {
  const hub = (name: string) =>
    JSON.parse(
      readFileSync(join(sharedPath(`fixtures/hf-families/${name}`), "config.json"), "utf8"),
    ) as Record<string, unknown>;
  /** The transformers ≥ 5 layout of a hub config: RoPE under `rope_parameters`. */
  const v5 = (c: Record<string, unknown>) => {
    const { rope_theta, rope_scaling, ...rest } = c;
    return {
      ...rest,
      rope_parameters: { rope_theta, ...((rope_scaling as object | null) ?? { rope_type: "default" }) },
    };
  };

  it.each(FAMILY_FIXTURES)("%s: hub and transformers-5 layouts give the same config", (name) => {
    const a = hfConfigToLlama(hub(name), `${name}/config.json`);
    expect(hfConfigToLlama(v5(hub(name)), `${name}/config.json`)).toEqual(a);
  });

  it("reads each family's features", () => {
    const llama3 = hfConfigToLlama(hub("llama3"));
    expect(llama3.ropeTheta).toBe(500000);
    expect(llama3.ropeScaling).toEqual({
      type: "llama3",
      factor: 32,
      lowFreqFactor: 1,
      highFreqFactor: 4,
      originalMaxPositionEmbeddings: 8192,
    });
    expect(headSize(llama3)).toBe(32);
    const qwen3 = hfConfigToLlama(hub("qwen3"));
    expect([qwen3.headDim, qDim(qwen3), qwen3.qkNorm]).toEqual([48, 192, true]);
    expect(hfConfigToLlama(hub("qwen2")).qkvBias).toBe(true);
    expect(hfConfigToLlama(hub("qwen2")).slidingWindow).toBeUndefined();
    expect(hfConfigToLlama(hub("mistral")).slidingWindow).toBe(16);
    const g = hfConfigToLlama(hub("gemma2"));
    expect(g).toMatchObject({
      family: "gemma2",
      slidingWindow: 16,
      slidingLayers: [true, false],
      hiddenAct: "gelu_tanh",
      postNorms: true,
      normOffset: 1,
      queryPreAttnScalar: 256,
      finalLogitSoftcap: 30,
      attnLogitSoftcap: 50,
      sharedClassifier: true,
    });
    expect(g.embedScale).toBeCloseTo(Math.sqrt(128), 12);
    expect([layerWindow(g, 0), layerWindow(g, 1)]).toEqual([16, 0]);
    // Without layer_types Gemma 2 alternates from layer 0; without the hub's rope_theta the default is 10000.
    const { layer_types: _lt, rope_theta: _rt, ...bare } = hub("gemma2");
    expect(hfConfigToLlama(bare)).toMatchObject({ slidingLayers: [true, false], ropeTheta: 10000 });
  });

  it("names the file and the field it cannot honour", () => {
    const l3 = hub("llama3");
    const bad: [Record<string, unknown>, RegExp][] = [
      [{ ...l3, rope_scaling: { rope_type: "yarn", factor: 4 } }, /c\.json: rope_scaling\.rope_type "yarn"/],
      [
        v5({ ...l3, rope_scaling: { rope_type: "dynamic", factor: 2 } }),
        /c\.json: rope_parameters\.rope_type "dynamic"/,
      ],
      [
        { ...l3, rope_scaling: { rope_type: "llama3", factor: 8 } },
        /c\.json: rope_scaling\.low_freq_factor is missing/,
      ],
      [{ ...l3, partial_rotary_factor: 0.5 }, /c\.json: partial_rotary_factor 0\.5/],
      [{ ...l3, mlp_bias: true }, /c\.json: mlp_bias/],
      [{ ...l3, hidden_act: "gelu" }, /c\.json: hidden_act "gelu"/],
      [{ ...l3, quantization_config: { quant_method: "gptq" } }, /c\.json: quantization_config/],
      [{ ...hub("gemma2"), hidden_activation: "gelu" }, /c\.json: hidden_activation "gelu"/],
      [
        { ...hub("gemma2"), layer_types: ["chunked_attention", "full_attention"] },
        /c\.json: layer_types\[0\]/,
      ],
      [{ ...hub("gemma2"), use_bidirectional_attention: true }, /c\.json: use_bidirectional_attention/],
      [{ ...l3, model_type: "gemma3" }, /c\.json: model_type "gemma3" is not supported \(Gemma 3/],
      [{ ...l3, model_type: "mixtral" }, /mixture-of-experts/],
      [{ ...hub("mistral"), attention_bias: true }, /c\.json: attention_bias/],
    ];
    for (const [cfg, re] of bad) expect(() => hfConfigToLlama(cfg, "c.json")).toThrow(re);
  });

  it("the features matter: dropping Mistral's window or Llama 3's scaling misses transformers' logits", async () => {
    for (const [name, strip] of [
      ["mistral", "slidingWindow"],
      ["llama3", "ropeScaling"],
      ["gemma2", "attnLogitSoftcap"],
    ] as const) {
      const { dir, ref, logits } = fixture(name);
      const w = await loadHf(dir);
      const config = { ...w.config };
      delete config[strip];
      const got = forward({ ...w, config }, createRunState(config, { maxRows: ref.rows }), ref.ids, 0, "all");
      expect(maxAbsDiff(got, logits), `${name} without ${strip}`).toBeGreaterThan(1e-2);
    }
  });
});

describe("run state: a KV cache sized by the run", () => {
  const config = hfConfigToLlama(
    JSON.parse(readFileSync(join(sharedPath("fixtures/hf-families/mistral"), "config.json"), "utf8")),
  );

  it("defaults to min(seqLen, 4096) positions, not max_position_embeddings", () => {
    expect(config.seqLen).toBe(32768);
    const s = createRunState({ ...config, slidingWindow: undefined }, { maxRows: 4 });
    expect(s.ctx).toBe(4096);
    expect(s.keyCache.length).toBe(config.nLayers * 4096 * kvDim(config));
    expect(createRunState({ ...config, slidingWindow: undefined }, { ctx: 100 }).keyCache.length).toBe(
      config.nLayers * 100 * kvDim(config),
    );
  });

  it("sliding layers keep a ring of window + maxRows − 1 positions", () => {
    const s = createRunState(config, { maxRows: 4, ctx: 1000 });
    expect([...s.cacheLen]).toEqual([19, 19]);
    expect(s.keyCache.length).toBe(2 * 19 * kvDim(config));
  });

  it("grows (keeping what is cached) and refuses positions beyond seqLen", () => {
    const s = createRunState({ ...config, seqLen: 40, slidingWindow: undefined }, { maxRows: 4, ctx: 8 });
    s.keyCache.fill(3);
    ensureContext(s, 9);
    expect(s.ctx).toBe(16);
    expect(s.keyCache[s.cacheOffset[1] + 7 * kvDim(config)]).toBe(3);
    expect(s.keyCache[s.cacheOffset[1] + 8 * kvDim(config)]).toBe(0);
    ensureContext(s, 40);
    expect(s.ctx).toBe(40);
    expect(() => ensureContext(s, 41)).toThrow(/41 positions exceed the model's context seqLen 40/);
  });
});

describe.each(FAMILY_FIXTURES)("family %s: Hugging Face export", (name) => {
  it("writes the family's own tensor names and config; loadHf reads it back to the same logits", async () => {
    const { dir, ref } = fixture(name);
    const w = await loadHf(dir);
    const out = mkdtempSync(join(tmpdir(), `int21-family-${name}-`));
    try {
      const report = await exportHf(out, w, { dtype: "BF16" });
      const names = (d: string) =>
        Object.keys(parseSafetensors(readFileSync(join(d, "model.safetensors"))).tensors).sort();
      expect(names(out)).toEqual(names(dir));
      const src = JSON.parse(readFileSync(join(dir, "config.json"), "utf8"));
      expect(report.config.model_type).toBe(src.model_type);
      expect(report.config.architectures).toEqual(src.architectures);
      const back = await loadHf(out);
      expect(back.config).toEqual(w.config);
      const a = forward(w, createRunState(w.config, { maxRows: 16 }), ref.ids.slice(0, 16), 0, "all").slice();
      const b = forward(back, createRunState(back.config, { maxRows: 16 }), ref.ids.slice(0, 16), 0, "all");
      expect(maxAbsDiff(a, b)).toBe(0);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });
});

/**
 * A GGUF of a loaded family model laid out as llama.cpp's convert_hf_to_gguf does: `llama` q/k rows
 * interleaved (int21's order), NEOX families (qwen2, qwen3, phi3, gemma2) in Hugging Face's rotate-half
 * order, Phi-3's attn_qkv / ffn_up fused, Gemma's norms stored as 1 + w, Llama 3's scaling as rope_freqs.
 */
function familyGguf(w: LlamaWeights, arch: string, llama3?: Record<string, number>): Uint8Array {
  const c = w.config;
  const hs = headSize(c);
  const u32 = (value: number): GgufValue => ({ type: "u32", value });
  const f32 = (value: number): GgufValue => ({ type: "f32", value });
  const md: Record<string, GgufValue> = {
    "general.architecture": { type: "string", value: arch },
    [`${arch}.vocab_size`]: u32(c.vocabSize),
    [`${arch}.context_length`]: u32(c.seqLen),
    [`${arch}.embedding_length`]: u32(c.dim),
    [`${arch}.block_count`]: u32(c.nLayers),
    [`${arch}.feed_forward_length`]: u32(c.hiddenDim),
    [`${arch}.rope.dimension_count`]: u32(hs),
    [`${arch}.attention.head_count`]: u32(c.nHeads),
    [`${arch}.attention.head_count_kv`]: u32(c.nKvHeads),
    [`${arch}.attention.key_length`]: u32(hs),
    [`${arch}.attention.value_length`]: u32(hs),
    [`${arch}.attention.layer_norm_rms_epsilon`]: f32(c.normEps),
    [`${arch}.rope.freq_base`]: f32(c.ropeTheta),
  };
  if (arch === "gemma2") {
    md["gemma2.attention.sliding_window"] = u32(c.slidingWindow!);
    md["gemma2.attn_logit_softcapping"] = f32(c.attnLogitSoftcap!);
    md["gemma2.final_logit_softcapping"] = f32(c.finalLogitSoftcap!);
  }
  const neox = arch !== "llama";
  const tensors: GgufWriteTensor[] = [];
  const put = (name: string, shape: number[], data: Float32Array) =>
    tensors.push({ name, type: "F32", shape, data });
  const lin = (l: Linear) => (linearParts(l, "w") as { weight: Float32Array }).weight;
  const rot = (v: Float32Array, cols: number) =>
    neox ? permuteHfRows(v, v.length / cols / hs, v.length / cols, cols) : v;
  put("token_embd.weight", [c.vocabSize, c.dim], w.tokenEmbedding as Float32Array);
  if (llama3) {
    const f = new Float32Array(hs / 2);
    const old = llama3.original_max_position_embeddings;
    for (let j = 0; j < hs / 2; j++) {
      const wavelen = (2 * Math.PI) / c.ropeTheta ** (-(2 * j) / hs);
      const smooth =
        (old / wavelen - llama3.low_freq_factor) / (llama3.high_freq_factor - llama3.low_freq_factor);
      f[j] =
        wavelen < old / llama3.high_freq_factor
          ? 1
          : wavelen > old / llama3.low_freq_factor
            ? llama3.factor
            : 1 / ((1 - smooth) / llama3.factor + smooth);
    }
    put("rope_freqs.weight", [hs / 2], f);
  }
  w.layers.forEach((L, i) => {
    const b = `blk.${i}.`;
    put(`${b}attn_norm.weight`, [c.dim], L.attnNorm);
    const q = rot(lin(L.wq), c.dim);
    const k = rot(lin(L.wk), c.dim);
    if (arch === "phi3") {
      const qkv = new Float32Array(q.length + 2 * k.length);
      qkv.set(q);
      qkv.set(k, q.length);
      qkv.set(lin(L.wv), q.length + k.length);
      put(`${b}attn_qkv.weight`, [qkv.length / c.dim, c.dim], qkv);
      const up = new Float32Array(2 * c.hiddenDim * c.dim);
      up.set(lin(L.w1));
      up.set(lin(L.w3), c.hiddenDim * c.dim);
      put(`${b}ffn_up.weight`, [2 * c.hiddenDim, c.dim], up);
    } else {
      put(`${b}attn_q.weight`, [q.length / c.dim, c.dim], q);
      put(`${b}attn_k.weight`, [k.length / c.dim, c.dim], k);
      put(`${b}attn_v.weight`, [k.length / c.dim, c.dim], lin(L.wv));
      put(`${b}ffn_gate.weight`, [c.hiddenDim, c.dim], lin(L.w1));
      put(`${b}ffn_up.weight`, [c.hiddenDim, c.dim], lin(L.w3));
    }
    put(`${b}attn_output.weight`, [c.dim, qDim(c)], lin(L.wo));
    put(`${b}ffn_down.weight`, [c.dim, c.hiddenDim], lin(L.w2));
    put(`${b}ffn_norm.weight`, [c.dim], L.ffnNorm);
    if (L.bq) put(`${b}attn_q.bias`, [L.bq.length], rot(L.bq, 1));
    if (L.bk) put(`${b}attn_k.bias`, [L.bk.length], rot(L.bk, 1));
    if (L.bv) put(`${b}attn_v.bias`, [L.bv.length], L.bv);
    if (L.qNorm) put(`${b}attn_q_norm.weight`, [hs], rot(L.qNorm, 1));
    if (L.kNorm) put(`${b}attn_k_norm.weight`, [hs], rot(L.kNorm, 1));
    if (L.postAttnNorm) put(`${b}post_attention_norm.weight`, [c.dim], L.postAttnNorm);
    if (L.postFfnNorm) put(`${b}post_ffw_norm.weight`, [c.dim], L.postFfnNorm);
  });
  put("output_norm.weight", [c.dim], w.finalNorm);
  if (!c.sharedClassifier) put("output.weight", [c.vocabSize, c.dim], lin(w.classifier));
  return serializeGguf({ metadata: md, tensors });
}

describe("GGUF of each family (llama.cpp's layout)", () => {
  const archOf: Record<string, string> = {
    llama2: "llama",
    llama3: "llama",
    smollm2: "llama",
    qwen2: "qwen2",
    qwen3: "qwen3",
    phi3: "phi3",
    gemma2: "gemma2",
  };
  // Mistral is absent: llama.cpp converts it to `llama`, which has no sliding window.
  it.each(Object.keys(archOf))(
    "%s: loadGguf matches transformers' logits within 1e-3",
    async (name) => {
      const { dir, ref, logits } = fixture(name);
      const w = await loadHf(dir);
      const hub = JSON.parse(readFileSync(join(dir, "config.json"), "utf8"));
      const bytes = familyGguf(w, archOf[name], name === "llama3" ? hub.rope_scaling : undefined);
      const { weights: g } = await loadGguf(bytes);
      expect(g.config.family ?? "llama").toBe(w.config.family ?? "llama");
      if (name === "llama3") expect(g.config.ropeFreqFactors).toHaveLength(16);
      const got = forward(g, createRunState(g.config, { maxRows: ref.rows }), ref.ids, 0, "all");
      if (name !== "gemma2") {
        expect(maxAbsDiff(got, logits)).toBeLessThan(1e-3);
        return;
      }
      // GGUF has no query_pre_attn_scalar: llama.cpp scales by 1/sqrt(head size) (real Gemma 2 2B/9B: both
      // 256). The fixture's 256 ≠ its head size 32, so the GGUF model is the fixture with that scale.
      expect(g.config.queryPreAttnScalar).toBe(32);
      const config = { ...w.config, queryPreAttnScalar: 32 };
      const want = forward(
        { ...w, config },
        createRunState(config, { maxRows: ref.rows }),
        ref.ids,
        0,
        "all",
      );
      expect(maxAbsDiff(got, want)).toBeLessThan(1e-4);
      expect(maxAbsDiff(got, logits)).toBeGreaterThan(1e-2);
    },
    60_000,
  );

  it("refuses what llama.cpp's writer cannot carry, and GGUF features it does not know", async () => {
    const { dir } = fixture("qwen2");
    const w = await loadHf(dir);
    expect(() => serializeGgufModel({ ...w, config: { ...w.config, slidingWindow: 8 } })).toThrow(
      /saveGguf: the model has a sliding window .*"qwen2" architecture cannot carry/,
    );
    const gemma = await loadHf(fixture("gemma2").dir);
    expect(() => serializeGgufModel(gemma)).toThrow(
      /queryPreAttnScalar 256 \(GGUF has no such key: llama\.cpp uses 32\)/,
    );
    const bytes = familyGguf(w, "qwen2");
    const f = parseGguf(bytes);
    const md = { ...f.metadata, "qwen2.rope.scaling.type": { type: "string", value: "yarn" } as GgufValue };
    expect(() => ggufConfigToLlama(md, { file: "q.gguf" })).toThrow(
      /q\.gguf: qwen2\.rope\.scaling\.type "yarn"/,
    );
  });
});

describe.each(FAMILY_FIXTURES)("family %s: int21 checkpoint", (name) => {
  it("an RTN int4 model saves and loads back to the same logits (extra tensors included)", async () => {
    const { dir, ref } = fixture(name);
    const { weights: q } = quantizeModel(await loadHf(dir), { format: "int4-g32-asym-f16", method: "rtn" });
    const out = mkdtempSync(join(tmpdir(), `int21-family-ckpt-${name}-`));
    try {
      const file = join(out, "m.safetensors");
      await saveInt21Checkpoint(file, q);
      const { weights: back } = await loadInt21Checkpoint(file);
      expect(back.config).toEqual(q.config);
      const ids = ref.ids.slice(0, 12);
      const a = forward(q, createRunState(q.config, { maxRows: 12 }), ids, 0, "all").slice();
      const b = forward(back, createRunState(back.config, { maxRows: 12 }), ids, 0, "all");
      expect(maxAbsDiff(a, b)).toBe(0);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  }, 60_000);
});

describe("quantizeCheckpoint streams a family folder", () => {
  it.each(["qwen2", "phi3", "gemma2"])(
    "%s: GPTQ from the folder equals GPTQ of the loaded model",
    async (name) => {
      const { dir, ref } = fixture(name);
      const opts: QuantizeModelOptions = {
        format: "int4-g32-asym-f16",
        method: "gptq",
        calib: [Int32Array.from(ref.ids)],
      };
      const streamed = await quantizeCheckpoint(dir, opts);
      const whole = quantizeModel(await loadHf(dir), opts);
      const ids = ref.ids.slice(0, 12);
      const a = forward(
        whole.weights,
        createRunState(whole.weights.config, { maxRows: 12 }),
        ids,
        0,
        "all",
      ).slice();
      const b = forward(
        streamed.weights,
        createRunState(streamed.weights.config, { maxRows: 12 }),
        ids,
        0,
        "all",
      );
      expect(maxAbsDiff(a, b)).toBe(0);
    },
    60_000,
  );
});

describe("trainForward gradients through each family's layers", () => {
  it.each(["llama3", "qwen2", "qwen3", "gemma2"])(
    "%s: d(logits)/d(layers.0.wq) matches finite differences (window, caps and norms in the path)",
    async (name) => {
      const { dir, ref } = fixture(name);
      const w = await loadHf(dir);
      const { dim } = w.config;
      const wq = w.layers[0].wq;
      const Wq = parameter(Float32Array.from((linearParts(wq, "wq") as { weight: Float32Array }).weight), [
        wq.outFeatures,
        wq.inFeatures,
      ]);
      // A 16-row read-out keeps the probed sum small (float32 noise stays far below the tolerance).
      const head = parameter((w.tokenEmbedding as Float32Array).slice(0, 16 * dim), [16, dim], {
        requiresGrad: false,
      });
      const ids = ref.ids.slice(0, 20); // past Gemma 2's window of 16
      const r = gradCheck(
        (q) =>
          trainForward(w, ids, {
            checkpoint: false,
            linearOp: (_lin, x, n) =>
              n === "layers.0.wq" ? linear(x, q) : n === "classifier" ? linear(x, head) : undefined,
          }),
        [Wq],
        { maxPerInput: 12 },
      );
      expect(r.checked).toBe(12);
      expect(r.worst).toBeLessThanOrEqual(1);
    },
    60_000,
  );
});

describe("saveGguf of each family", () => {
  const archOf: Record<string, string> = {
    llama2: "llama",
    llama3: "llama",
    smollm2: "llama",
    qwen2: "qwen2",
    qwen3: "qwen3",
    phi3: "phi3",
    gemma2: "gemma2",
  };
  it.each(Object.keys(archOf))(
    "%s: llama.cpp's tensor layout, and loadGguf reads it back to the same logits",
    async (name) => {
      const { dir, ref } = fixture(name);
      let w = await loadHf(dir);
      // GGUF has no query_pre_attn_scalar (see above): the Gemma 2 model written is the one with llama.cpp's scale.
      if (name === "gemma2") w = { ...w, config: { ...w.config, queryPreAttnScalar: 32 } };
      const { bytes, report } = serializeGgufModel(w, { type: "F32" });
      expect(report.tensors.every((t) => t.mode === "exact")).toBe(true);
      const hub = JSON.parse(readFileSync(join(dir, "config.json"), "utf8"));
      const ref2 = parseGguf(familyGguf(w, archOf[name], name === "llama3" ? hub.rope_scaling : undefined));
      const mine = parseGguf(bytes);
      expect([...mine.names].sort()).toEqual([...ref2.names].sort());
      for (const n of mine.names) expect(maxAbsDiff(mine.readTensorF32(n), ref2.readTensorF32(n)), n).toBe(0);
      const { weights: g } = await loadGguf(bytes);
      const ids = ref.ids.slice(0, 24);
      const a = forward(w, createRunState(w.config, { maxRows: 24 }), ids, 0, "all").slice();
      const b = forward(g, createRunState(g.config, { maxRows: 24 }), ids, 0, "all");
      expect(maxAbsDiff(a, b)).toBeLessThan(1e-4);
      // Q8_0 blocks: the rotate-half row move and the fusing work on encoded rows too.
      const { weights: g8 } = await loadGguf(serializeGgufModel(w, { type: "Q8_0" }).bytes);
      const c = forward(g8, createRunState(g8.config, { maxRows: 24 }), ids, 0, "all");
      expect(maxAbsDiff(a, c)).toBeLessThan(0.05 * Math.max(1, maxAbsDiff(a, new Float32Array(a.length))));
    },
    60_000,
  );
});

describe("Phi-3 PEFT adapters", () => {
  it("a split q/k/v adapter is saved fused (qkv_proj, as Hugging Face's Phi-3 has it); o/down stay as they are", async () => {
    const w = await loadHf(fixture("phi3").dir);
    const out = mkdtempSync(join(tmpdir(), "int21-phi3-peft-"));
    try {
      const split = addLlamaLoRA(w, { targetModules: ["q_proj", "o_proj", "down_proj"], r: 2, alpha: 4 });
      await saveLlamaAdapter(join(out, "a"), split, w);
      const cfg = JSON.parse(readFileSync(join(out, "a", "adapter_config.json"), "utf8"));
      expect([...cfg.target_modules].sort()).toEqual(["down_proj", "o_proj", "qkv_proj"]);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  }, 60_000);
});

describe("GGUF LoRA adapters of the families", () => {
  // (gguf-lora.test.ts reads each family's LoRA GGUF back to the adapted logits)
  it("saveGgufLora writes a NEOX family's adapter under its own architecture", async () => {
    const w = await loadHf(fixture("qwen3").dir);
    const model = addLlamaLoRA(w, { targetModules: ["q_proj"], r: 2, alpha: 4 });
    const { metadata, tensors } = ggufLoraTensors(model, w.config);
    expect(metadata["general.architecture"]).toEqual({ type: "string", value: "qwen3" });
    expect(tensors[0].name).toBe("blk.0.attn_q.weight.lora_a");
  });
});
