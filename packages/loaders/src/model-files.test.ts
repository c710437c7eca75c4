import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { serializeSafetensors } from "@int21/io";
import { SHARED, sharedPath } from "@int21/shared-data";
import { describe, expect, it } from "vitest";
import { saveInt21Checkpoint } from "./checkpoint";
import { hfTensorName, llamaToHfConfig } from "./load-hf";
import { encodeLlama2c, loadLlama2c } from "./load-llama2c";
import { detectModelFile, loadModel } from "./model-files";
import { denseTokenEmbedding, llamaTensorSpecs, linearParts } from "@int21/model-llama";

const tmp = mkdtempSync(join(tmpdir(), "int21-files-"));
const path260K = sharedPath(SHARED.stories260K);

describe("detectModelFile / loadModel", () => {
  it("recognise llama2.c legacy and v1, Hugging Face directories and int21 checkpoints", async () => {
    const ref = loadLlama2c(path260K);
    expect(await detectModelFile(path260K)).toBe("llama2c");

    const tensors = new Map<string, Float32Array>();
    for (const s of llamaTensorSpecs(ref.config)) {
      if (s.name === "tokenEmbedding") tensors.set(s.name, denseTokenEmbedding(ref.tokenEmbedding));
      else if (s.name === "finalNorm") tensors.set(s.name, ref.finalNorm);
      else {
        const [, l, f] = s.name.split(".");
        const v = ref.layers[Number(l)][f as "wq"];
        tensors.set(
          s.name,
          v instanceof Float32Array ? v : (linearParts(v, s.name) as { weight: Float32Array }).weight,
        );
      }
    }
    const v1 = join(tmp, "v1.bin");
    writeFileSync(v1, encodeLlama2c(ref.config, tensors, 1));
    expect(await detectModelFile(v1)).toBe("llama2c");

    const ck = join(tmp, "q.safetensors");
    await saveInt21Checkpoint(ck, loadLlama2c(path260K, { quantize: { format: "int4-g32-asym-f16" } }));
    expect(await detectModelFile(ck)).toBe("int21");
    const loaded = await loadModel(ck);
    expect(loaded.kind).toBe("int21");
    expect(linearParts(loaded.weights.layers[0].wq, "wq").kind).toBe("quant");

    const dir = join(tmp, "hf");
    mkdirSync(dir);
    writeFileSync(join(dir, "config.json"), JSON.stringify(llamaToHfConfig(ref.config)));
    const st: Record<string, { dtype: "F32"; shape: number[]; data: Float32Array }> = {};
    const { permuteHfRows } = await import("./load-hf");
    for (const s of llamaTensorSpecs(ref.config)) {
      let d = tensors.get(s.name)!;
      if (/\.w[qk]$/.test(s.name)) d = permuteHfRows(d, s.shape[0] / 8, s.shape[0], s.shape[1]);
      st[hfTensorName(s.name)] = { dtype: "F32", shape: s.shape, data: d };
    }
    writeFileSync(join(dir, "model.safetensors"), serializeSafetensors(st));
    expect(await detectModelFile(dir)).toBe("hf");
    const hf = await loadModel(dir, { quantize: { format: "int2-g64-asym-f16" } });
    expect(hf.kind).toBe("hf");
    expect(linearParts(hf.weights.layers[4].w2, "w2").kind).toBe("quant");
    const fromBin = await loadModel(path260K);
    expect(fromBin.kind).toBe("llama2c");
    expect(fromBin.weights.finalNorm).toEqual(ref.finalNorm);
  });

  it("name what they cannot recognise", async () => {
    const junk = join(tmp, "junk.bin");
    writeFileSync(junk, new Uint8Array(1000).fill(7));
    await expect(detectModelFile(junk)).rejects.toThrow(
      /junk\.bin: not a llama2\.c checkpoint, an int21 checkpoint or a Hugging Face model directory/,
    );
    const bare = join(tmp, "bare.safetensors");
    writeFileSync(bare, serializeSafetensors({ x: { dtype: "F32", shape: [2], data: [1, 2] } }));
    await expect(loadModel(bare)).rejects.toThrow(
      /bare\.safetensors: a safetensors file that is not an int21 checkpoint/,
    );
    const empty = join(tmp, "emptydir");
    mkdirSync(empty);
    await expect(loadModel(empty)).rejects.toThrow(/emptydir: a directory without config\.json/);
    await expect(loadModel(join(tmp, "absent"))).rejects.toThrow(/absent: cannot open/);
    // A truncated legacy file is still recognised by its header, so the loader names the missing tensor.
    const cut = join(tmp, "cut.bin");
    writeFileSync(cut, readFileSync(path260K).subarray(0, 5000));
    await expect(loadModel(cut)).rejects.toThrow(/cut\.bin: truncated llama2\.c file.*tensor tokenEmbedding/);
  });
});
