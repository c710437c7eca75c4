// exportHf of every miniature family in shared/fixtures/hf-families: the config.json's fields and JSON number kinds
// are those transformers itself wrote (its strict config classes refuse `30` where they declare float), and the
// exported weights read back give transformers' logits. A peer check outside CI (transformers 5.18 loading each
// exported folder with AutoModelForCausalLM, float / INT4-RTN-dequantized / LoRA-merged) is in the package README.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sharedPath } from "@int21/shared-data";
import { afterAll, describe, expect, it } from "vitest";
import { type HfSpecialTokens, exportHf } from "./export-hf";
import { HF_FLOAT_FIELDS, hfConfigJson, llamaToHfConfig, loadHf } from "./load-hf";
import { addLlamaLoRA, forward, createRunState, type LlamaWeights } from "@int21/model-llama";

const FAMILIES = ["llama2", "llama3", "smollm2", "qwen2", "qwen3", "mistral", "phi3", "gemma2"] as const;

/**
 * Fields of the fixtures' config.json that int21 does not write: training-only settings and bookkeeping whose
 * config-class defaults are what the fixtures hold (or, for Qwen's window fields, that only matter with a window).
 */
const NOT_WRITTEN = new Set([
  "attention_dropout",
  "initializer_range",
  "dtype",
  "transformers_version",
  "use_cache",
  "mlp_bias",
  "pretraining_tp",
  "embd_pdrop",
  "resid_pdrop",
  "use_bidirectional_attention",
  "original_max_position_embeddings",
  "attention_bias",
  "rope_scaling",
  "max_window_layers",
  "use_sliding_window",
  "sliding_window",
  "layer_types",
  "pad_token_id",
]);

const tmp = mkdtempSync(join(tmpdir(), "int21-hf-families-export-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** The JSON number kind of every `"key": number` in `text` (`float` when written with `.` or an exponent). */
function numberKinds(text: string): Map<string, "int" | "float"> {
  const out = new Map<string, "int" | "float">();
  for (const m of text.matchAll(/"(\w+)":\s*(-?\d[\d.eE+-]*)/g))
    out.set(m[1], /[.eE]/.test(m[2]) ? "float" : "int");
  return out;
}

function logits(w: LlamaWeights, ids: number[]): Float32Array {
  return forward(w, createRunState(w.config, { maxRows: ids.length }), ids, 0, "all").slice();
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

describe("hfConfigJson", () => {
  it("writes transformers' float fields as floats (also nested) and keeps integers integral", () => {
    const text = hfConfigJson({
      final_logit_softcapping: 30,
      rope_theta: 10000,
      rms_norm_eps: 1e-6,
      query_pre_attn_scalar: 256,
      rope_scaling: { rope_type: "llama3", factor: 32, original_max_position_embeddings: 8192 },
      name: "x30",
    });
    const kinds = numberKinds(text);
    expect(kinds.get("final_logit_softcapping")).toBe("float");
    expect(kinds.get("rope_theta")).toBe("float");
    expect(kinds.get("factor")).toBe("float");
    expect(kinds.get("query_pre_attn_scalar")).toBe("int");
    expect(kinds.get("original_max_position_embeddings")).toBe("int");
    expect(text).toContain('"final_logit_softcapping": 30.0');
    expect(JSON.parse(text)).toEqual({
      final_logit_softcapping: 30,
      rope_theta: 10000,
      rms_norm_eps: 1e-6,
      query_pre_attn_scalar: 256,
      rope_scaling: { rope_type: "llama3", factor: 32, original_max_position_embeddings: 8192 },
      name: "x30",
    });
  });

  it("refuses a fraction in an integer field and a non-finite number, naming the field", () => {
    expect(() => hfConfigJson({ query_pre_attn_scalar: 16.5 })).toThrow(
      /query_pre_attn_scalar must be an integer/,
    );
    expect(() => hfConfigJson({ rope_theta: Number.NaN })).toThrow(/rope_theta is NaN/);
  });
});

describe.each(FAMILIES)("exportHf of the %s fixture", (name) => {
  const dir = sharedPath(`fixtures/hf-families/${name}`);
  const ref = JSON.parse(readFileSync(join(dir, "reference.json"), "utf8")) as {
    ids: number[];
    rows: number;
    vocab: number;
  };
  const buf = readFileSync(join(dir, "reference-logits.f32"));
  const expected = new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
  const srcText = readFileSync(join(dir, "config.json"), "utf8");
  const src = JSON.parse(srcText) as Record<string, unknown>;
  const gen = JSON.parse(readFileSync(join(dir, "generation_config.json"), "utf8")) as HfSpecialTokens;
  const specialTokens: HfSpecialTokens = {
    ...(gen.bos_token_id != null ? { bos_token_id: gen.bos_token_id } : {}),
    ...(gen.eos_token_id != null ? { eos_token_id: gen.eos_token_id } : {}),
    ...(gen.pad_token_id != null ? { pad_token_id: gen.pad_token_id } : {}),
  };

  it("config.json: every shared field equal to transformers' own, with the same JSON number kind; none missing", async () => {
    const w = await loadHf(dir);
    const out = join(tmp, `${name}-cfg`);
    await exportHf(out, w, { specialTokens });
    const text = readFileSync(join(out, "config.json"), "utf8");
    const cfg = JSON.parse(text) as Record<string, unknown>;
    const kinds = numberKinds(text);
    const srcKinds = numberKinds(srcText);
    const shared = Object.keys(src).filter((k) => k in cfg);
    expect(shared.length).toBeGreaterThan(12);
    for (const k of shared) {
      expect({ field: k, value: cfg[k] }).toEqual({ field: k, value: src[k] });
      if (srcKinds.has(k))
        expect({ field: k, kind: kinds.get(k) }).toEqual({ field: k, kind: srcKinds.get(k) });
    }
    // nested numbers (rope_scaling) too
    for (const [k, kind] of srcKinds)
      if (kinds.has(k)) expect({ field: k, kind: kinds.get(k) }).toEqual({ field: k, kind });
    // every float field the fixture holds is one hfConfigJson knows
    for (const [k, kind] of srcKinds) if (kind === "float") expect(HF_FLOAT_FIELDS.has(k), k).toBe(true);
    // what int21 leaves out is bookkeeping, or a value the config class defaults to
    const missing = Object.keys(src).filter((k) => !(k in cfg) && !NOT_WRITTEN.has(k));
    expect(missing).toEqual([]);
    // a scaling, a window and its layer pattern are written whenever the model has them
    const windowed = typeof src.sliding_window === "number";
    for (const k of ["rope_scaling", "sliding_window", ...(windowed ? ["layer_types"] : [])])
      if (src[k] !== null && src[k] !== undefined)
        expect({ field: k, value: cfg[k] }).toEqual({ field: k, value: src[k] });
  }, 60_000);

  it("read back by int21: transformers' logits within 1e-3", async () => {
    const w = await loadHf(dir);
    const out = join(tmp, `${name}-f32`);
    await exportHf(out, w, { specialTokens });
    const back = await loadHf(out);
    expect(back.config).toEqual(w.config);
    expect(maxAbsDiff(logits(back, ref.ids), expected)).toBeLessThan(1e-3);
  }, 60_000);

  it("INT4 RTN with a LoRA merged: the dequantized export reads back to the quantized model's logits", async () => {
    const w = await loadHf(dir, { quantize: { format: "int4-g32-asym-f16" } });
    const model = addLlamaLoRA(w, { targetModules: ["q_proj", "v_proj", "down_proj"], r: 2, seed: 3 });
    for (const [, a] of model.adapters())
      for (let i = 0; i < a.loraB.length; i++) a.loraB[i] = 0.02 * Math.sin(i + a.outFeatures);
    const ids = ref.ids.slice(0, 24);
    const want = logits(w, ids);
    const out = join(tmp, `${name}-int4-lora`);
    const r = await exportHf(out, w, { specialTokens });
    expect(r.linears.find((l) => l.name === "layers.0.wq")).toMatchObject({
      source: "dequantized",
      adapters: ["default"],
    });
    expect(numberKinds(readFileSync(join(out, "config.json"), "utf8")).get("rope_theta")).toBe("float");
    const back = await loadHf(out);
    expect(maxAbsDiff(logits(back, ids), want)).toBeLessThan(1e-4);
  }, 60_000);
});

it("llamaToHfConfig writes head_dim for the families whose config class defaults it to a constant", () => {
  const base = {
    dim: 128,
    hiddenDim: 320,
    nLayers: 2,
    nHeads: 4,
    nKvHeads: 2,
    vocabSize: 64,
    seqLen: 64,
    sharedClassifier: true,
  };
  expect(
    llamaToHfConfig({ ...base, family: "gemma2", ropeTheta: 1e4, normEps: 1e-6 } as never).head_dim,
  ).toBe(32);
  expect(llamaToHfConfig({ ...base, family: "qwen3", ropeTheta: 1e4, normEps: 1e-6 } as never).head_dim).toBe(
    32,
  );
  expect(
    llamaToHfConfig({ ...base, family: "mistral", ropeTheta: 1e4, normEps: 1e-6 } as never).sliding_window,
  ).toBe(null);
});
