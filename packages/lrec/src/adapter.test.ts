import { readFileSync } from "node:fs";
import { setBackend } from "@int21/autograd";
import { LoRALinear } from "@int21/lora";
import {
  calibrationWindows,
  createRunState,
  forward,
  Llama2cTokenizer,
  type LlamaWeights,
  loadLlama2c,
  quantizeModel,
  relOutputError,
} from "@int21/model-llama";
import { type Backend, createWasmBackend } from "@int21/quant-kernels";
import { SHARED, sharedPath } from "@int21/shared-data";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { addLrecAdapter, effectiveBits, LREC_TARGETS, llamaModuleMap, projectionInputs } from "./adapter";
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
    expect(logits(s, [1, 403, 407, 261, 378])).toEqual(before);
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
  });
});
