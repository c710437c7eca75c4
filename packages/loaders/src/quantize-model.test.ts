import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { serializeSafetensors } from "@int21/io";
import { SHARED, sharedPath } from "@int21/shared-data";
import {
  type QuantizeOptions,
  type Quantizer,
  gptq,
  registerQuantizer,
  rtnQuantize,
  unregisterQuantizer,
} from "@int21/quant-kernels";
import { type WasmBackend, createWasmBackend } from "@int21/quant-kernels/wasm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { saveInt21Checkpoint } from "./checkpoint";
import { saveGguf } from "./gguf-model";
import { hfTensorName, llamaToHfConfig, permuteHfRows } from "./load-hf";
import { loadLlama2c } from "./load-llama2c";
import { Llama2cTokenizer } from "./tokenizer";
import {
  denseTokenEmbedding,
  llamaTensorSpecs,
  linearParts,
  forward,
  rmsnorm,
  type QuantizeProgress,
  calibrationHiddenStates,
  calibrationWindows,
  quantizeModel,
  createRunState,
  type LlamaWeights,
} from "@int21/model-llama";
import { quantizeCheckpoint } from "./quantize-checkpoint";

const stories = loadLlama2c(sharedPath(SHARED.stories260K));
const tmp = mkdtempSync(join(tmpdir(), "int21-quantize-"));

/** Calibration: real TinyStories validation text, tokenized with the model's own tokenizer. */
function tinyStoriesWindows(count: number, length: number, first = 0): Int32Array[] {
  const tok = Llama2cTokenizer.fromFile(sharedPath(SHARED.tok512));
  const text = readFileSync(sharedPath(SHARED.tinystoriesValid), "utf8");
  const stories40 = text
    .split("<|endoftext|>")
    .slice(first, first + 40)
    .join("\n");
  const ids = tok.encode(stories40);
  return calibrationWindows(ids, count, length, tok.bosId);
}

describe("quantizeModel on the real stories260K", () => {
  const calib = tinyStoriesWindows(8, 128);
  const heldOut = tinyStoriesWindows(4, 128, 500); // stories 500..539, never seen in calibration
  // The WebAssembly backend (one thread) runs the calibration GEMMs ~8× faster than the reference.
  let wasm: WasmBackend;
  beforeAll(async () => {
    wasm = await createWasmBackend({ threads: 1 });
  });
  afterAll(() => wasm.dispose());

  it("GPTQ's layer output error is below RTN's on all 35 projections at 2, 3 and 4 bits, held-out too", () => {
    type Row = {
      gptq: number;
      rtn: number;
      ratio: number;
      heldOutGptq: number;
      heldOutRtn: number;
      heldOutRatio: number;
    };
    const table: Record<string, Record<string, Row>> = {};
    for (const bits of [2, 3, 4]) {
      const format = `int${bits}-g32-asym-f16`;
      const { weights, report } = quantizeModel(stories, {
        format,
        method: "gptq",
        calib,
        heldOut,
        backend: wasm,
      });
      expect(report).toHaveLength(35);
      table[format] = {};
      for (const r of report) {
        const key = `layers.${r.layer}.${r.name}`;
        expect(r.relError, `${format} ${key}`).toBeLessThan(r.rtnRelError!);
        // ... and on activations of held-out stories, propagated through the same quantized layers.
        expect(r.heldOutRelError, `${format} ${key} held-out`).toBeLessThan(r.heldOutRtnRelError!);
        expect(r.relError).toBeGreaterThan(0);
        table[format][key] = {
          gptq: r.relError!,
          rtn: r.rtnRelError!,
          ratio: r.relError! / r.rtnRelError!,
          heldOutGptq: r.heldOutRelError!,
          heldOutRtn: r.heldOutRtnRelError!,
          heldOutRatio: r.heldOutRelError! / r.heldOutRtnRelError!,
        };
        expect(linearParts(weights.layers[r.layer][r.name], key).kind).toBe("quant");
      }
      const ratios = Object.values(table[format]).map((v) => v.ratio);
      console.log(
        `${format}: GPTQ/RTN output-error ratio per projection — mean ${(ratios.reduce((a, b) => a + b) / ratios.length).toFixed(3)}, ` +
          `max ${Math.max(...ratios).toFixed(3)}; held-out max ${Math.max(...Object.values(table[format]).map((v) => v.heldOutRatio)).toFixed(3)}\n` +
          Object.entries(table[format])
            .map(
              ([k, v]) =>
                `  ${k.padEnd(12)} gptq ${v.gptq.toFixed(4)}  rtn ${v.rtn.toFixed(4)}  ratio ${v.ratio.toFixed(3)}` +
                `  | held-out gptq ${v.heldOutGptq.toFixed(4)}  rtn ${v.heldOutRtn.toFixed(4)}  ratio ${v.heldOutRatio.toFixed(3)}`,
            )
            .join("\n"),
      );
    }
    writeFileSync(join(tmp, "gptq-vs-rtn.json"), JSON.stringify(table, null, 2));
    console.log(`per-layer ratios written to ${join(tmp, "gptq-vs-rtn.json")}`);
    // Fewer bits, more error.
    const mean = (f: string) => Object.values(table[f]).reduce((s, v) => s + v.gptq, 0) / 35;
    expect(mean("int2-g32-asym-f16")).toBeGreaterThan(mean("int3-g32-asym-f16"));
    expect(mean("int3-g32-asym-f16")).toBeGreaterThan(mean("int4-g32-asym-f16"));
  }, 30_000);

  it("RTN without calibration is rtnQuantize per projection; progress reaches 35 of 35", () => {
    const seen: QuantizeProgress[] = [];
    const { weights, report } = quantizeModel(stories, {
      format: { bits: 4, groupSize: 64 },
      method: "rtn",
      onProgress: (p) => seen.push(p),
    });
    expect(seen).toHaveLength(35);
    expect(seen[34]).toMatchObject({ done: 35, total: 35, layer: 4, name: "w2", etaMs: 0 });
    expect(report.every((r) => r.relError === undefined)).toBe(true);
    const w = (linearParts(stories.layers[2].w3, "w3") as { weight: Float32Array }).weight;
    const p = linearParts(weights.layers[2].w3, "w3");
    expect(p.kind === "quant" && p.q.qweight.words).toEqual(
      rtnQuantize(w, 172, 64, "int4-g64-asym-f16").qweight.words,
    );
    expect(weights.tokenEmbedding).toBe(stories.tokenEmbedding);
    expect(linearParts(stories.layers[2].w3, "w3").kind).toBe("float"); // the input model is untouched
  });

  it("GPTQ with act-order stores gIdx; 8-bit errors are tiny", () => {
    const { weights, report } = quantizeModel(stories, {
      format: "int8-g32-asym-f16",
      method: "gptq",
      actOrder: true,
      calib: calib.slice(0, 2),
    });
    const p = linearParts(weights.layers[0].w2, "w2");
    expect(p.kind === "quant" && p.q.gIdx?.length).toBe(172);
    for (const r of report) expect(r.relError).toBeLessThan(0.01);
  }, 30_000);

  it("rejects GPTQ without calibration, bad windows and already-quantized models", () => {
    expect(() => quantizeModel(stories, { format: "int4-g32-asym-f16", method: "gptq" })).toThrow(
      /GPTQ needs calibration/,
    );
    expect(() =>
      quantizeModel(stories, {
        format: "int4-g32-asym-f16",
        method: "gptq",
        calib: [new Int32Array([1, 999])],
      }),
    ).toThrow(/window 0 token 1 = 999 is outside \[0, 512\)/);
    expect(() =>
      quantizeModel(stories, { format: "int4-g32-asym-f16", method: "rtn", heldOut: calib }),
    ).toThrow(/heldOut windows need calibration windows/);
    const q = quantizeModel(stories, { format: "int4-g32-asym-f16", method: "rtn" }).weights;
    expect(() => quantizeModel(q, { format: "int4-g32-asym-f16", method: "rtn" })).toThrow(
      /layers\.0\.wq is already quantized/,
    );
  });
});

describe("quantizeModel takes a Quantizer", () => {
  const calib = tinyStoriesWindows(2, 64);
  let backend: WasmBackend;
  beforeAll(async () => {
    backend = await createWasmBackend({ threads: 1 });
  });
  afterAll(() => backend.dispose());
  const words = (w: LlamaWeights) =>
    w.layers.flatMap((L) =>
      (["wq", "wk", "wv", "wo", "w1", "w2", "w3"] as const).map((n) => {
        const p = linearParts(L[n], n);
        return p.kind === "quant" ? [...p.q.qweight.words, ...p.q.scales, ...(p.q.gIdx ?? [])] : [];
      }),
    );
  /** A quantizer that records what the pipeline handed it (RTN underneath). */
  const spy = (flags: Partial<Pick<Quantizer, "needsHessian" | "needsActivations">>) => {
    const seen: { K: number; hessianK?: number; rows?: number; values?: number }[] = [];
    const q: Quantizer = {
      name: "spy",
      ...flags,
      quantize(w, N, K, f, o: QuantizeOptions = {}) {
        seen.push({
          K,
          ...(o.hessian ? { hessianK: o.hessian.K } : {}),
          ...(o.activations ? { rows: o.activations.rows, values: o.activations.data.length } : {}),
        });
        return rtnQuantize(w, N, K, f);
      },
    };
    return { q, seen };
  };

  it("gptq({ actOrder }) is method: 'gptq' with actOrder; the name and the value give the same model", () => {
    const byValue = quantizeModel(stories, {
      quantizer: gptq({ actOrder: true, dampening: 0.02 }),
      format: "int3-g32-asym-f16",
      calib,
      backend,
    });
    const byName = quantizeModel(stories, {
      method: "gptq",
      actOrder: true,
      damp: 0.02,
      format: "int3-g32-asym-f16",
      calib,
      backend,
    });
    expect(words(byValue.weights)).toEqual(words(byName.weights));
    expect(byValue.report).toEqual(byName.report);
    expect(byValue.quantizer).toBe("gptq");
    const plain = quantizeModel(stories, { quantizer: gptq(), format: "int3-g32-asym-f16", calib, backend });
    expect(words(plain.weights)).not.toEqual(words(byValue.weights)); // act-order changed something
  }, 60_000);

  it("runs the calibration only for what the quantizer needs; method: <Quantizer> works too", () => {
    const none = spy({});
    const r0 = quantizeModel(stories, { method: none.q, format: "int4-g32-asym-f16", backend });
    expect(r0.quantizer).toBe("spy");
    expect(none.seen).toHaveLength(35);
    expect(none.seen.every((s) => s.hessianK === undefined && s.rows === undefined)).toBe(true);
    // with calibration windows (to measure the error) but no needs: no Hessian, no activations, RTN baseline
    const measured = spy({});
    const r1 = quantizeModel(stories, { quantizer: measured.q, format: "int4-g32-asym-f16", calib, backend });
    expect(measured.seen.every((s) => s.hessianK === undefined && s.rows === undefined)).toBe(true);
    for (const r of r1.report) {
      expect(r.relError).toBeGreaterThan(0);
      expect(r.relError).toBeCloseTo(r.rtnRelError!, 6); // it is RTN underneath
    }
    const rows = calib.reduce((a, w) => a + w.length, 0);
    const hes = spy({ needsHessian: true });
    quantizeModel(stories, { quantizer: hes.q, format: "int4-g32-asym-f16", calib, backend });
    expect(hes.seen.map((s) => [s.K, s.hessianK, s.rows])).toEqual(
      // q/k/v, o, gate/up take dim = 64 inputs, down takes hidden = 172
      Array.from({ length: 5 }, () => [64, 64, 64, 64, 64, 64, 172].map((K) => [K, K, undefined])).flat(),
    );
    const act = spy({ needsActivations: true });
    quantizeModel(stories, { quantizer: act.q, format: "int4-g32-asym-f16", calib, backend });
    expect(
      act.seen.every((s) => s.hessianK === undefined && s.rows === rows && s.values === rows * s.K),
    ).toBe(true);
    expect(() => quantizeModel(stories, { quantizer: act.q, format: "int4-g32-asym-f16" })).toThrow(
      /the spy quantizer needs calibration windows \(opts\.calib\) for its activations/,
    );
    // RTN itself reports no baseline
    const rtn = quantizeModel(stories, { quantizer: "rtn", format: "int4-g32-asym-f16", calib, backend });
    expect(rtn.report.every((r) => r.relError! > 0 && r.rtnRelError === undefined)).toBe(true);
  }, 60_000);

  it("finds registered quantizers by name; unknown ones are errors listing the names", () => {
    registerQuantizer("half-range", () => ({
      name: "half-range",
      quantize: (w, N, K, f) => rtnQuantize(w, N, K, f, { mseClip: true, maxShrink: 0.5 }),
    }));
    try {
      const r = quantizeModel(stories, {
        quantizer: "half-range",
        format: "int2-g32-asym-f16",
        calib,
        backend,
      });
      expect(r.quantizer).toBe("half-range");
      // a range search that includes the full range never loses to RTN on the weights; on outputs it mostly wins
      const wins = r.report.filter((e) => e.relError! < e.rtnRelError!).length;
      expect(wins).toBeGreaterThan(r.report.length / 2);
      expect(() => quantizeModel(stories, { method: "hqq", format: "int4-g32-asym-f16" })).toThrow(
        /quantizeModel: unknown quantizer "hqq"; registered quantizers: rtn, gptq, half-range/,
      );
    } finally {
      unregisterQuantizer("half-range");
    }
    expect(() => quantizeModel(stories, { method: {} as Quantizer, format: "int4-g32-asym-f16" })).toThrow(
      /registered name \(rtn, gptq\) or a Quantizer value, got an object without a quantize function/,
    );
    expect(() => quantizeModel(stories, { format: "int4-g32-asym-f16" })).toThrow(
      /opts\.quantizer is required: a Quantizer or a registered name \(rtn, gptq\)/,
    );
    expect(() =>
      quantizeModel(stories, { quantizer: "rtn", method: "rtn", format: "int4-g32-asym-f16" }),
    ).toThrow(/not both/);
    expect(() =>
      quantizeModel(stories, { quantizer: gptq(), actOrder: true, format: "int4-g32-asym-f16", calib }),
    ).toThrow(/actOrder configure a quantizer given by name/);
    expect(() =>
      quantizeModel(stories, { method: "rtn", actOrder: true, format: "int4-g32-asym-f16" }),
    ).toThrow(/quantizer rtn takes no option actOrder/);
  }, 60_000);
});

describe("quantizeCheckpoint", () => {
  it("streams llama2.c and Hugging Face files layer by layer, bit-identical to quantizeModel", async () => {
    const calib = tinyStoriesWindows(2, 64);
    const opts = { format: "int3-g32-asym-f16", method: "gptq", calib } as const;
    const ref = quantizeModel(stories, opts);
    const words = (w: LlamaWeights) =>
      w.layers.flatMap((L) =>
        (["wq", "wk", "wv", "wo", "w1", "w2", "w3"] as const).map((n) => {
          const p = linearParts(L[n], n);
          return p.kind === "quant" ? [...p.q.qweight.words, ...p.q.scales] : [];
        }),
      );
    const fromBin = await quantizeCheckpoint(sharedPath(SHARED.stories260K), opts);
    expect(words(fromBin.weights)).toEqual(words(ref.weights));
    expect(fromBin.report).toEqual(ref.report);
    expect(fromBin.weights.tokenEmbedding).toEqual(stories.tokenEmbedding);

    const dir = join(tmp, "hf");
    mkdirSync(dir);
    writeFileSync(join(dir, "config.json"), JSON.stringify(llamaToHfConfig(stories.config)));
    const st: Record<string, { dtype: "F32"; shape: number[]; data: Float32Array }> = {};
    for (const spec of llamaTensorSpecs(stories.config)) {
      const [, l, f] = spec.name.split(".");
      let d =
        spec.name === "tokenEmbedding"
          ? denseTokenEmbedding(stories.tokenEmbedding)
          : spec.name === "finalNorm"
            ? stories.finalNorm
            : ((v) =>
                v instanceof Float32Array
                  ? v
                  : (linearParts(v, spec.name) as { weight: Float32Array }).weight)(
                stories.layers[Number(l)][f as "wq"],
              );
      if (/\.w[qk]$/.test(spec.name)) d = permuteHfRows(d, spec.shape[0] / 8, spec.shape[0], spec.shape[1]);
      st[hfTensorName(spec.name)] = { dtype: "F32", shape: spec.shape, data: d };
    }
    writeFileSync(join(dir, "model.safetensors"), serializeSafetensors(st));
    const fromHf = await quantizeCheckpoint(dir, opts);
    expect(words(fromHf.weights)).toEqual(words(ref.weights));

    const gguf = join(tmp, "stories.gguf");
    await saveGguf(gguf, stories, { type: "F32" });
    const fromGguf = await quantizeCheckpoint(gguf, opts);
    expect(words(fromGguf.weights)).toEqual(words(ref.weights));

    const ck = join(tmp, "q.safetensors");
    await saveInt21Checkpoint(ck, ref.weights);
    await expect(quantizeCheckpoint(ck, opts)).rejects.toThrow(
      /q\.safetensors: an int21 checkpoint is already quantized/,
    );
  }, 30_000);
});

describe("quantizeCheckpoint takes a Quantizer", () => {
  it("checks the quantizer before reading the file", async () => {
    const missing = join(tmp, "no-such-model.bin");
    await expect(quantizeCheckpoint(missing, { format: "int4-g32-asym-f16", method: "awq" })).rejects.toThrow(
      /unknown quantizer "awq"; registered quantizers: rtn, gptq/,
    );
    await expect(
      quantizeCheckpoint(missing, { format: "int4-g32-asym-f16", quantizer: gptq() }),
    ).rejects.toThrow(/GPTQ needs calibration windows/);
    const calls: number[] = [];
    const r = await quantizeCheckpoint(sharedPath(SHARED.stories260K), {
      format: "int4-g32-asym-f16",
      quantizer: {
        name: "counting",
        quantize: (w, N, K, f) => {
          calls.push(N * K);
          return rtnQuantize(w, N, K, f);
        },
      },
    });
    expect(r.quantizer).toBe("counting");
    expect(calls).toHaveLength(35);
  });
});

describe("the calibration forward", () => {
  it("matches the inference forward's logits on real windows", () => {
    const windows = tinyStoriesWindows(2, 40);
    const x = calibrationHiddenStates(stories, windows);
    const { dim, vocabSize } = stories.config;
    for (let i = 0; i < windows.length; i++) {
      const state = createRunState(stories.config, { maxRows: 40 });
      const logits = forward(stories, state, windows[i], 0, "all");
      const xn = new Float32Array(40 * dim);
      rmsnorm(
        xn,
        x.subarray(i * 40 * dim, (i + 1) * 40 * dim),
        stories.finalNorm,
        40,
        dim,
        stories.config.normEps,
      );
      const mine = new Float32Array(40 * vocabSize);
      stories.classifier.forward(xn, 40, mine);
      let maxDiff = 0;
      for (let j = 0; j < mine.length; j++) maxDiff = Math.max(maxDiff, Math.abs(mine[j] - logits[j]));
      expect(maxDiff).toBeLessThan(1e-4);
    }
  });
});

describe("calibrationWindows", () => {
  it("cuts evenly spaced windows, BOS first", () => {
    const ids = Array.from({ length: 100 }, (_, i) => i + 10);
    const w = calibrationWindows(ids, 3, 11, 1);
    expect(w.map((x) => [x[0], x[1], x[10]])).toEqual([
      [1, 10, 19],
      [1, 55, 64],
      [1, 100, 109],
    ]);
    expect(() => calibrationWindows(ids, 2, 200)).toThrow(/shorter than one window/);
  });
});

describe("ggml block formats whose blocks do not fit a row (llama-quantize's fallback)", () => {
  // stories260K: dim 64 (q/k/v/o, gate/up rows), hidden 172 (down rows): no 256-weight k-quant block fits.
  it("q2_k falls back to iq4_nl-ggml where 32 divides K, keeps the rest float, and the report says so", () => {
    const res = quantizeModel(stories, { quantizer: "rtn", format: "q2_k" });
    for (const r of res.report) {
      const L = res.weights.layers[r.layer][r.name];
      const p = linearParts(L, r.name);
      if (L.inFeatures % 32 === 0) {
        expect(r.fallback).toBe("iq4_nl-ggml");
        expect(p.kind === "quant" && p.q.format.name).toBe("iq4_nl-ggml");
      } else {
        expect(r.fallback).toBe("float");
        expect(p.kind).toBe("float");
        // kept exactly: the float projection of the input model
        expect(p.kind === "float" && p.weight).toBe(
          (linearParts(stories.layers[r.layer][r.name], r.name) as { weight: Float32Array }).weight,
        );
      }
    }
    expect(res.report.filter((r) => r.fallback === "float").map((r) => r.name)).toContain("w2");
  }, 60_000);

  it("with GPTQ too (calibration skips the float projections), and q4_0 (no fallback type) keeps K=172 float", () => {
    const calib = tinyStoriesWindows(2, 64);
    const res = quantizeModel(stories, { quantizer: gptq(), format: "q6_k", calib });
    const w1 = linearParts(res.weights.layers[0].w1, "w1");
    expect(w1.kind === "quant" && w1.q.format.name).toBe("q8_0");
    expect(res.report.find((r) => r.name === "w2")).toMatchObject({ fallback: "float", relError: 0 });
    const q40 = quantizeModel(stories, { quantizer: "rtn", format: "q4_0" });
    expect(q40.report.find((r) => r.name === "wq")?.fallback).toBeUndefined();
    expect(q40.report.find((r) => r.name === "w2")?.fallback).toBe("float");
  }, 120_000);
});
