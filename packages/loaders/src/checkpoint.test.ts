import { mkdtempSync, readFileSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseSafetensors, serializeSafetensors } from "@int21/io";
import { SHARED, sharedPath } from "@int21/shared-data";
import { createGptqQuantizer, createHessian } from "@int21/quant-kernels";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  dequantizeInt8Rows,
  INT21_CHECKPOINT_FORMAT,
  loadInt21Checkpoint,
  loadInt21CheckpointBytes,
  quantizeInt8Rows,
  saveInt21Checkpoint,
  serializeInt21Checkpoint,
  validateInt21Checkpoint,
} from "./checkpoint";
import { loadLlama2c } from "./load-llama2c";
import { createQuantLinear, createReferenceBackend } from "@int21/quant-kernels";
import {
  llamaTensorSpecs,
  linearParts,
  syntheticConfig,
  syntheticWeights,
  type LlamaWeights,
} from "@int21/model-llama";

const tmp = mkdtempSync(join(tmpdir(), "int21-ckpt-"));
const stories = loadLlama2c(sharedPath(SHARED.stories260K));

/** Asserts two models hold bitwise the same parameters (float arrays, packed words, scales, zeros, gIdx). */
function expectBitExact(a: LlamaWeights, b: LlamaWeights): void {
  expect(b.config).toEqual(a.config);
  const get = (w: LlamaWeights, name: string) => {
    if (name === "tokenEmbedding") return w.tokenEmbedding;
    if (name === "finalNorm") return w.finalNorm;
    if (name === "classifier") return w.classifier;
    const [, l, f] = name.split(".");
    return w.layers[Number(l)][f as keyof LlamaWeights["layers"][number]];
  };
  for (const spec of llamaTensorSpecs(a.config)) {
    const x = get(a, spec.name);
    const y = get(b, spec.name);
    if (x instanceof Float32Array) {
      expect(
        new Uint32Array((y as Float32Array).buffer, (y as Float32Array).byteOffset, x.length),
        spec.name,
      ).toEqual(new Uint32Array(x.buffer, x.byteOffset, x.length));
      continue;
    }
    const px = linearParts(x as never, spec.name);
    const py = linearParts(y as never, spec.name);
    expect(py.kind, spec.name).toBe(px.kind);
    if (px.kind === "float" && py.kind === "float") expect(py.weight, spec.name).toEqual(px.weight);
    if (px.kind === "quant" && py.kind === "quant") {
      expect(py.q.format.id).toBe(px.q.format.id);
      expect(py.q.qweight.words, spec.name).toEqual(px.q.qweight.words);
      expect(py.q.scales, spec.name).toEqual(px.q.scales);
      expect(py.q.zeros, spec.name).toEqual(px.q.zeros);
      expect(py.q.gIdx, spec.name).toEqual(px.q.gIdx);
    }
  }
}

describe("int21 checkpoints", () => {
  it("a float model round-trips bit for bit", async () => {
    const p = join(tmp, "float.safetensors");
    await saveInt21Checkpoint(p, stories);
    const back = await loadInt21Checkpoint(p);
    expectBitExact(stories, back.weights);
    expect(back.adapters).toBeUndefined();
    const meta = parseSafetensors(readFileSync(p)).metadata;
    expect(meta.format).toBe(INT21_CHECKPOINT_FORMAT);
    expect(JSON.parse(meta.config)).toEqual(stories.config);
    expect(JSON.parse(meta.roles)["layers.0.wq.weight"]).toBe("float-weight");
  });

  it("packed models (f16 and f32 scales, symmetric, act-order gIdx) round-trip bit for bit", async () => {
    for (const format of ["int2-g32-asym-f16", "int3-g64-sym-f32", "int8-pc-asym-f32"]) {
      const q = loadLlama2c(sharedPath(SHARED.stories260K), { quantize: { format } });
      const bytes = serializeInt21Checkpoint(q);
      const back = await loadInt21CheckpointBytes(bytes);
      expectBitExact(q, back.weights);
    }
    // act-order GPTQ on one projection gives a gIdx to store.
    const w = (linearParts(stories.layers[1].w2, "w2") as { weight: Float32Array }).weight;
    const H = createHessian(172);
    const x = new Float32Array(300 * 172).map((_, i) => Math.sin(i * 0.37) * (1 + (i % 172) / 50));
    H.add(x, 300);
    const qAct = createGptqQuantizer({ actOrder: true }).quantize(w, 64, 172, "int4-g32-asym-f16", {
      hessian: H,
    });
    expect(qAct.gIdx).toBeDefined();
    const model: LlamaWeights = {
      ...stories,
      layers: stories.layers.map((L, l) =>
        l === 1 ? { ...L, w2: createQuantLinear({ q: qAct, backend: createReferenceBackend() }) } : L,
      ),
    };
    const p = join(tmp, "act.safetensors");
    await saveInt21Checkpoint(p, model);
    const back = await loadInt21Checkpoint(p);
    expectBitExact(model, back.weights);
    expect(JSON.parse(parseSafetensors(readFileSync(p)).metadata.linears)["layers.1.w2"]).toMatchObject({
      actOrder: true,
    });
  });

  it("stores opaque adapters and a separate classifier", async () => {
    const cfg = { ...syntheticConfig("stories260K"), nLayers: 2, sharedClassifier: false };
    const model = syntheticWeights(cfg, { seed: 5, format: "int4-g64-asym-f16" });
    const adapters = {
      tensors: {
        "layers.0.wq.loraA": { shape: [4, 64], data: new Float32Array(256).map((_, i) => i / 7) },
        "layers.0.wq.loraB": { shape: [64, 4], data: new Float32Array(256) },
      },
      meta: { r: 4, alpha: 8, targets: ["wq"] },
    };
    const p = join(tmp, "adapters.safetensors");
    await saveInt21Checkpoint(p, model, { adapters });
    const back = await loadInt21Checkpoint(p);
    expectBitExact(model, back.weights);
    expect(back.adapters).toEqual(adapters);
    expect(linearParts(back.weights.classifier, "classifier").kind).toBe("quant");
  });

  it("stores adapters as F16, BF16 or int8 rows with f16 row scales, and loads back what was stored", async () => {
    const cfg = { ...syntheticConfig("stories260K"), nLayers: 1 };
    const model = syntheticWeights(cfg, { seed: 6, format: "int2-g64-asym-f16" });
    const a = new Float32Array(4 * 64).map((_, i) => Math.sin(i * 0.37) * (1 + (i % 5)));
    const b = new Float32Array(64 * 4).map((_, i) => (i % 9 === 0 ? 0 : Math.cos(i) * 1e-3));
    b.fill(0, 0, 4); // an all-zero row: scale 0
    for (const storage of ["F16", "BF16", "I8"] as const) {
      const adapters = {
        tensors: {
          "lrec/a": { shape: [4, 64], data: a, storage },
          "lrec/b": { shape: [64, 4], data: b, storage },
        },
        meta: { r: 4 },
      };
      const bytes = serializeInt21Checkpoint(model, { adapters });
      const st = parseSafetensors(bytes, "x");
      expect(st.tensors["adapter.lrec/a"].dtype).toBe(storage);
      const perValue = storage === "I8" ? 1 : 2;
      expect(st.tensors["adapter.lrec/a"].byteLength).toBe(256 * perValue);
      if (storage === "I8")
        expect(st.tensors["adapter.lrec/b.row_scale"]).toMatchObject({ dtype: "F16", shape: [64] });
      else expect(st.tensors["adapter.lrec/b.row_scale"]).toBeUndefined();
      const back = await loadInt21CheckpointBytes(bytes);
      const file = join(tmp, `adapters-${storage}.safetensors`);
      writeFileSync(file, bytes);
      expect(await validateInt21Checkpoint(file)).toEqual([]);
      const got = back.adapters!.tensors["lrec/a"];
      expect(got.storage).toBe(storage);
      // within the storage's rounding of the values given…
      const tol = storage === "F16" ? 2 ** -11 : storage === "BF16" ? 2 ** -8 : 0.5 / 127 + 2 ** -11;
      for (let i = 0; i < a.length; i++) {
        const row =
          storage === "I8"
            ? Math.max(...a.subarray(i - (i % 64), i - (i % 64) + 64).map(Math.abs))
            : Math.abs(a[i]);
        expect(Math.abs(got.data[i] - a[i])).toBeLessThanOrEqual(tol * row + 1e-30);
      }
      expect(Array.from(back.adapters!.tensors["lrec/b"].data.subarray(0, 4))).toEqual([0, 0, 0, 0]);
      // …and saving what was loaded gives back the same values bit for bit (what a reader evaluates)
      const again = await loadInt21CheckpointBytes(
        serializeInt21Checkpoint(back.weights, { adapters: back.adapters! }),
      );
      expect(again.adapters).toEqual(back.adapters);
    }
  });

  it("int8 rows: codes within ±127, error ≤ half a step, and idempotent on their own output", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 6 }),
        fc.integer({ min: 1, max: 9 }),
        fc.array(fc.float({ min: -1e4, max: 1e4, noNaN: true, noDefaultInfinity: true }), {
          minLength: 54,
          maxLength: 54,
        }),
        (rows, cols, vals) => {
          const data = Float32Array.from(vals.slice(0, rows * cols));
          const { codes, scales } = quantizeInt8Rows(data, rows, cols);
          const deq = dequantizeInt8Rows(codes, scales, cols);
          for (let i = 0; i < rows; i++)
            for (let j = 0; j < cols; j++) {
              expect(Math.abs(codes[i * cols + j])).toBeLessThanOrEqual(127);
              // the step: the row's scale, at least 2^-14 (f16's smallest normal) unless the row is all zero
              const step = Math.max(scales[i], 2 ** -14);
              expect(Math.abs(deq[i * cols + j] - data[i * cols + j])).toBeLessThanOrEqual(
                0.5 * step * (1 + 2 ** -10) + step * 2 ** -9 * 127 + 127 * 2 ** -24,
              );
            }
          const again = quantizeInt8Rows(deq, rows, cols);
          expect(Array.from(again.codes)).toEqual(Array.from(codes));
          expect(Array.from(again.scales)).toEqual(Array.from(scales));
        },
      ),
    );
    expect(() => quantizeInt8Rows(Float32Array.of(1, Number.NaN), 1, 2, "adapter x")).toThrow(
      /adapter x: non-finite/,
    );
    expect(() => quantizeInt8Rows(Float32Array.of(1e9), 1, 1, "adapter x")).toThrow(/past the f16 range/);
  });

  it("refuses an I8 adapter tensor without its row scales", async () => {
    const model = syntheticWeights({ ...syntheticConfig("stories260K"), nLayers: 1 }, { seed: 7 });
    const bytes = serializeInt21Checkpoint(model, {
      adapters: {
        tensors: { x: { shape: [2, 3], data: new Float32Array(6).fill(1), storage: "I8" } },
        meta: {},
      },
    });
    const st = parseSafetensors(bytes, "x");
    const tensors: Record<string, { dtype: string; shape: number[]; data: ArrayBufferView }> = {};
    for (const n of st.names)
      if (n !== "adapter.x.row_scale") tensors[n] = { ...st.tensors[n], data: st.readRaw(n).data } as never;
    const broken = serializeSafetensors(tensors as never, st.metadata);
    await expect(loadInt21CheckpointBytes(broken, { name: "b.safetensors" })).rejects.toThrow(
      /b.safetensors: missing tensor adapter.x.row_scale/,
    );
  });

  it("refuses foreign, truncated and inconsistent files, naming file and tensor", async () => {
    const good = serializeInt21Checkpoint(
      loadLlama2c(sharedPath(SHARED.stories260K), { quantize: { format: "int4-g32-asym-f16" } }),
    );
    const p = join(tmp, "cut.safetensors");
    writeFileSync(p, good);
    truncateSync(p, good.byteLength - 100);
    await expect(loadInt21Checkpoint(p)).rejects.toThrow(/cut\.safetensors.*(truncated|past the end)/);

    const plain = join(tmp, "plain.safetensors");
    writeFileSync(plain, serializeSafetensors({ a: { dtype: "F32", shape: [1], data: [1] } }));
    await expect(loadInt21Checkpoint(plain)).rejects.toThrow(/plain\.safetensors: not an int21 checkpoint/);

    // Rewrite one tensor with the wrong shape / remove one; keep the metadata.
    const f = parseSafetensors(good, "good");
    const tensors: Record<
      string,
      { dtype: "F32" | "F16" | "U32"; shape: number[]; data: ArrayLike<number> }
    > = {};
    for (const n of f.names) {
      const r = f.readRaw(n);
      tensors[n] = {
        dtype: r.dtype as "F32" | "F16" | "U32",
        shape: [...r.shape],
        data: r.data as ArrayLike<number>,
      };
    }
    const { "layers.2.w1.scales": scales, ...rest } = tensors;
    await expect(
      loadInt21CheckpointBytes(serializeSafetensors(rest, f.metadata), { name: "gone.safetensors" }),
    ).rejects.toThrow(/gone\.safetensors: missing tensor layers\.2\.w1\.scales/);
    const wrong = { ...tensors, "layers.2.w1.scales": { ...scales, shape: [2, 172] } };
    await expect(
      loadInt21CheckpointBytes(serializeSafetensors(wrong, f.metadata), { name: "shape.safetensors" }),
    ).rejects.toThrow(
      /shape\.safetensors: tensor layers\.2\.w1\.scales has shape \[2×172\], expected \[172×2\]/,
    );
    // A zero scale is caught by the quantized-record validation, named with the tensor.
    const zeroScale = {
      ...tensors,
      "layers.4.wo.scales": { ...tensors["layers.4.wo.scales"], data: new Uint16Array(128) },
    };
    await expect(
      loadInt21CheckpointBytes(serializeSafetensors(zeroScale, f.metadata), { name: "zero.safetensors" }),
    ).rejects.toThrow(/zero\.safetensors: tensor layers\.4\.wo: .*scales\[0\]/);
    await expect(
      loadInt21CheckpointBytes(good, { quantize: { format: "int2-g32-asym-f16" } }),
    ).rejects.toThrow(/no quantize option/);
  });
});
