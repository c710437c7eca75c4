import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setBackend } from "@int21/autograd";
import { LoRALinear, loadPeftAdapter, savePeftAdapter } from "@int21/lora";
import { parseSafetensors } from "@int21/io";
import {
  calibrationWindows,
  createRunState,
  forward,
  type LlamaWeights,
  quantizeModel,
  relOutputError,
} from "@int21/model-llama";
import {
  type CheckpointAdapters,
  Llama2cTokenizer,
  loadInt21CheckpointBytes,
  loadLlama2c,
  serializeInt21Checkpoint,
} from "@int21/loaders";
import { type Backend, isF16Exact } from "@int21/quant-kernels";
import { createWasmBackend } from "@int21/quant-kernels/wasm";
import { SHARED, sharedPath } from "@int21/shared-data";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  adapterBitsAt,
  adapterBytes,
  adapterStorage,
  addLrecAdapter,
  effectiveBits,
  LLAMA_SHAPES,
  LREC_TARGETS,
  llamaModuleMap,
  loraModelOf,
  projectionInputs,
  roundAdapter,
  storeAdaptersAs,
  syncModules,
} from "./adapter";
import { storyTokens } from "./evaluate";

let backend: Backend;
let teacher: LlamaWeights;
let calib: Int32Array[];
beforeAll(async () => {
  backend = await createWasmBackend({ threads: 1 });
  setBackend(backend);
  teacher = loadLlama2c(sharedPath(SHARED.stories260K), { backend });
  const tok = Llama2cTokenizer.fromFile(sharedPath(SHARED.tok512));
  const text = readFileSync(sharedPath(SHARED.tinystoriesValid), "utf8");
  calib = calibrationWindows(
    storyTokens(text, tok, { from: 100, to: 200, ctx: 1 << 30 }).flat(),
    4,
    64,
    tok.bosId,
  );
});
afterAll(() => backend?.dispose());

const int2 = () => quantizeModel(teacher, { format: "int2-g32-asym-f16", method: "rtn", backend }).weights;
const logits = (w: LlamaWeights, tokens: number[]) =>
  forward(w, createRunState(w.config, { maxRows: tokens.length }), tokens, 0, "all").slice();

describe("addLrecAdapter", () => {
  it("zero init: every projection wrapped, logits unchanged (B = 0)", () => {
    const s = int2();
    const before = logits(s, [1, 403, 407, 261, 378]);
    const { model } = addLrecAdapter(s, { r: 2, alpha: 8 });
    expect(model.adapters("lrec")).toHaveLength(7 * teacher.config.nLayers);
    for (const L of s.layers) expect(L.w2).toBeInstanceOf(LoRALinear);
    // B = 0 adds nothing. Not bit for bit: a plain packed layer's one-row products run the decode matvec
    // (activations rounded to int16 per weight group), a LoRA-wrapped one its base's float qmatmul.
    const after = logits(s, [1, 403, 407, 261, 378]);
    let worst = 0;
    let scale = 0;
    for (let i = 0; i < before.length; i++) {
      worst = Math.max(worst, Math.abs(after[i] - before[i]));
      scale = Math.max(scale, Math.abs(before[i]));
    }
    expect(worst).toBeLessThan(1e-5 * scale);
    expect(LREC_TARGETS).toHaveLength(7);
  });

  it("SVD init lowers every projection's weight error; activation-weighted lowers the output error on held-out inputs", () => {
    const plain = addLrecAdapter(int2(), { r: 4, alpha: 16, init: "svd", teacher });
    for (const r of plain.init) expect(r.error).toBeLessThan(r.zeroError);
    const s = int2();
    const q = llamaModuleMap(s);
    const weighted = addLrecAdapter(s, { r: 4, alpha: 16, init: "svd", teacher, calib: calib.slice(0, 3) });
    for (const r of weighted.init) expect(r.error).toBeLessThan(r.zeroError);
    // held-out activations (the 4th window): output error of the projections with vs without the adapter
    const held = projectionInputs(teacher, [calib[3]]);
    const f = llamaModuleMap(teacher);
    const wrapped = llamaModuleMap(s);
    let better = 0;
    for (const [name, x] of held) {
      const e0 = relOutputError(f.get(name)!, q.get(name)!, x.x, x.rows);
      const e1 = relOutputError(f.get(name)!, wrapped.get(name)!, x.x, x.rows);
      if (e1 < e0) better++;
    }
    expect(better).toBe(held.size);
    expect(() => addLrecAdapter(int2(), { r: 2, init: "svd" })).toThrow(/teacher/);
  });

  it("projectionInputs: rows × K per module", () => {
    const p = projectionInputs(teacher, [calib[0].slice(0, 10)]);
    expect(p.size).toBe(7 * teacher.config.nLayers);
    const down = p.get("model.layers.0.mlp.down_proj")!;
    expect(down.rows).toBe(10);
    expect(down.x.length).toBe(10 * teacher.config.hiddenDim);
  });
});

describe("effectiveBits", () => {
  it("counts codes, f16 scales + zeros and the float32 adapter", () => {
    expect(effectiveBits(teacher)).toBe(32);
    const s = int2();
    const c = teacher.config;
    // g32 groups along K: ceil(K/32) groups per row, 32 bits of scale+zero each, plus rows padded to words
    let bits = 0;
    let n = 0;
    const shapes = [
      [c.dim, c.dim],
      [c.dim * (c.nKvHeads / c.nHeads), c.dim],
      [c.dim * (c.nKvHeads / c.nHeads), c.dim],
      [c.dim, c.dim],
      [c.hiddenDim, c.dim],
      [c.dim, c.hiddenDim],
      [c.hiddenDim, c.dim],
    ];
    for (const [N, K] of shapes) {
      bits += N * (Math.ceil((2 * K) / 32) * 32 + Math.ceil(K / 32) * 32);
      n += N * K;
    }
    expect(effectiveBits(s)).toBeCloseTo(bits / n, 10);
    const r = 4;
    let adapter = 0;
    for (const [N, K] of shapes) adapter += 32 * r * (N + K);
    addLrecAdapter(s, { r });
    expect(effectiveBits(s)).toBeCloseTo((bits + adapter) / n, 10);
    // the adapter counted as saved: half at f16 / bf16, int8 values plus an f16 scale per row of A and of B
    expect(effectiveBits(s, { adapterDtype: "f16" })).toBeCloseTo((bits + adapter / 2) / n, 10);
    expect(effectiveBits(s, { adapterDtype: "bf16" })).toBeCloseTo((bits + adapter / 2) / n, 10);
    let int8 = 0;
    for (const [N, K] of shapes) int8 += 8 * r * (N + K) + 16 * (r + N);
    expect(effectiveBits(s, { adapterDtype: "int8" })).toBeCloseTo((bits + int8) / n, 10);
  });

  it("projects the adapter's cost to the 1.1B and 7B shapes", () => {
    // LLaMA-2-7B, r = 8 on all seven projections, f16: 16·8·Σ(N+K) / ΣN·K per block
    const sumNK = 4 * 4096 * 4096 + 3 * 4096 * 11008;
    const sumNplusK = 4 * 8192 + 3 * (4096 + 11008);
    expect(adapterBitsAt(LLAMA_SHAPES["7B"], 8, "f16")).toBeCloseTo((16 * 8 * sumNplusK) / sumNK, 12);
    expect(adapterBitsAt(LLAMA_SHAPES["7B"], 8, "f16")).toBeLessThan(0.06);
    expect(adapterBitsAt(LLAMA_SHAPES["1.1B"], 8, "f32")).toBeCloseTo(
      2 * adapterBitsAt(LLAMA_SHAPES["1.1B"], 8, "f16"),
      12,
    );
  });
});

describe("roundAdapter", () => {
  it("rounds to f16 / bf16 exactly representable values and int8 within half a step per row", () => {
    const s = int2();
    const { model } = addLrecAdapter(s, { r: 4, alpha: 8, init: "svd", teacher, calib, backend });
    const a = model.layers().get("model.layers.0.self_attn.q_proj")!.adapters[0];
    const before = Float32Array.from(a.loraA);
    roundAdapter(model, "lrec", "int8");
    for (let i = 0; i < a.r; i++) {
      let mx = 0;
      for (let k = 0; k < a.inFeatures; k++) mx = Math.max(mx, Math.abs(before[i * a.inFeatures + k]));
      for (let k = 0; k < a.inFeatures; k++)
        expect(Math.abs(a.loraA[i * a.inFeatures + k] - before[i * a.inFeatures + k])).toBeLessThanOrEqual(
          (0.5 * mx) / 127 + 1e-3 * mx,
        );
    }
    a.loraA.set(before);
    roundAdapter(model, "lrec", "f16");
    for (let i = 0; i < a.loraA.length; i++) expect(isF16Exact(a.loraA[i])).toBe(true);
    a.loraA.set(before);
    roundAdapter(model, "lrec", "bf16");
    const u = new Uint32Array(Float32Array.from(a.loraA).buffer);
    for (let i = 0; i < u.length; i++) expect(u[i] & 0xffff).toBe(0);
    expect(() => roundAdapter(model, "nope", "f16")).toThrow(/no adapter "nope"/);
  });

  it("an f16-rounded adapter saved as F16 PEFT reloads onto a fresh student to the same logits", async () => {
    const s = int2();
    const { model } = addLrecAdapter(s, { r: 4, alpha: 8, init: "svd", teacher, calib, backend });
    const tokens = [1, 40, 50, 60, 70, 80, 90, 100];
    const full = logits(s, tokens);
    roundAdapter(model, "lrec", "f16");
    syncModules(s, model);
    const rounded = logits(s, tokens);
    let drift = 0;
    for (let i = 0; i < full.length; i++) drift = Math.max(drift, Math.abs(full[i] - rounded[i]));
    expect(drift).toBeLessThan(0.05); // f16 rounding of the factors, not more
    const dir = mkdtempSync(join(tmpdir(), "lrec-adapter-"));
    try {
      await savePeftAdapter(dir, model, { name: "lrec", dtype: "F16" });
      const fresh = int2();
      const m2 = loraModelOf(fresh);
      await loadPeftAdapter(dir, m2, { name: "lrec" });
      syncModules(fresh, m2);
      const back = logits(fresh, tokens);
      for (let i = 0; i < back.length; i++) expect(back[i]).toBe(rounded[i]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("an int8-rounded adapter saved in an int21 checkpoint as I8 + f16 row scales loads back bit for bit, at the bytes counted", async () => {
    const s = int2();
    const { model } = addLrecAdapter(s, { r: 4, alpha: 8, init: "svd", teacher, calib, backend });
    roundAdapter(model, "lrec", "int8");
    syncModules(s, model);
    const tokens = [1, 40, 50, 60, 70, 80, 90, 100];
    const evaluated = logits(s, tokens);
    const tensors: CheckpointAdapters["tensors"] = {};
    let counted = 0;
    for (const [m, a] of model.adapters("lrec")) {
      tensors[`${m}.A`] = { shape: [a.r, a.inFeatures], data: a.loraA };
      tensors[`${m}.B`] = { shape: [a.outFeatures, a.r], data: a.loraB };
      counted += adapterBytes(a.r, a.outFeatures, a.inFeatures, "int8");
    }
    const bytes = serializeInt21Checkpoint(int2(), {
      adapters: storeAdaptersAs({ tensors, meta: { r: 4 } }, "int8"),
    });
    // the file holds int8 codes and one f16 scale per row: exactly what effectiveBits counts
    const st = parseSafetensors(bytes, "int8.safetensors");
    let stored = 0;
    for (const n of st.names) if (n.startsWith("adapter.")) stored += st.tensors[n].byteLength;
    expect(stored).toBe(counted);
    for (const n of st.names)
      if (n.startsWith("adapter.") && !n.endsWith(".row_scale")) expect(st.tensors[n].dtype).toBe("I8");
    const back = await loadInt21CheckpointBytes(bytes, { backend });
    const fresh = back.weights;
    const { model: m2 } = addLrecAdapter(fresh, { r: 4, alpha: 8 });
    const original = new Map(model.adapters("lrec"));
    for (const [m, a] of m2.adapters("lrec")) {
      a.loraA.set(back.adapters!.tensors[`${m}.A`].data);
      a.loraB.set(back.adapters!.tensors[`${m}.B`].data);
      const orig = original.get(m)!;
      expect(a.loraA).toEqual(orig.loraA);
      expect(a.loraB).toEqual(orig.loraB);
    }
    syncModules(fresh, m2);
    const reloaded = logits(fresh, tokens);
    for (let i = 0; i < reloaded.length; i++) expect(reloaded[i]).toBe(evaluated[i]);
    expect(adapterStorage("f16")).toBe("F16");
    expect(() =>
      storeAdaptersAs({ tensors: { x: { shape: [6], data: new Float32Array(6) } } }, "int8"),
    ).toThrow(/x is \[6\]; int8 rows need a 2-D tensor/);
  });
});
