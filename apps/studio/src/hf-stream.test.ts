// The streamed Hugging Face reader against model-llama's whole-file one, on every family fixture: the same model
// (identical logits) from slice reads that never cover a whole safetensors file; bad folders are named.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { assembleFromReader, createRunState, forward, type LlamaWeights } from "@int21/model-llama";
import { type ByteSource, bytesSource, loadHfBytes } from "@int21/loaders";
import { sharedPath } from "@int21/shared-data";
import { describe, expect, it } from "vitest";
import { hfStreamable, hfStreamConfig, openHfStream } from "./hf-stream";

const root = sharedPath("fixtures/hf-families");
const families = readdirSync(root, { withFileTypes: true })
  .filter((d) => d.isDirectory())
  .map((d) => d.name)
  .sort();

/** ByteSources over the folder's files that record the largest read. */
function folder(name: string): {
  files: Record<string, ByteSource>;
  largest: () => number;
  bytes: Record<string, Uint8Array>;
} {
  const dir = join(root, name);
  let largest = 0;
  const files: Record<string, ByteSource> = {};
  const bytes: Record<string, Uint8Array> = {};
  for (const f of readdirSync(dir)) {
    if (!/\.(json|safetensors|jinja)$/.test(f)) continue;
    bytes[f] = new Uint8Array(readFileSync(join(dir, f)));
    const src = bytesSource(bytes[f], `${name}/${f}`);
    files[f] = {
      ...src,
      read(o, n) {
        if (f.endsWith(".safetensors")) largest = Math.max(largest, n);
        return src.read(o, n);
      },
    };
  }
  return { files, largest: () => largest, bytes };
}

function logits(w: LlamaWeights, ids: number[]): Float32Array {
  return forward(w, createRunState(w.config, { maxRows: ids.length }), ids, 0, "all").slice();
}

describe("openHfStream", () => {
  it("covers the fixture families", () => expect(families.length).toBeGreaterThanOrEqual(8));

  for (const fam of families) {
    it(`${fam}: the same model as loadHfBytes, read in slices`, async () => {
      const { files, largest, bytes } = folder(fam);
      const config = hfStreamConfig(files, fam);
      const want = await loadHfBytes(bytes);
      const ids = (
        JSON.parse(readFileSync(join(root, fam, "reference.json"), "utf8")) as { ids: number[] }
      ).ids.slice(0, 12);
      if (!hfStreamable(config)) {
        expect(config.family).toBe("phi3");
        expect(() => openHfStream(files, fam)).toThrow(/phi3 checkpoints are read whole/);
        return;
      }
      const got = await assembleFromReader(openHfStream(files, fam));
      expect(got.config).toEqual(want.config);
      expect(Array.from(logits(got, ids))).toEqual(Array.from(logits(want, ids)));
      expect(largest()).toBeLessThan(bytes["model.safetensors"].byteLength / 2);
    }, 120_000);
  }

  it("names a truncated file, a missing shard and a missing config", () => {
    const { files, bytes } = folder("smollm2");
    const cut = bytes["model.safetensors"].subarray(0, 5000);
    expect(() => openHfStream({ ...files, "model.safetensors": bytesSource(cut, "x") }, "smollm2")).toThrow(
      /smollm2\/model\.safetensors/,
    );
    const { "model.safetensors": _m, ...noWeights } = files;
    expect(() => openHfStream(noWeights, "smollm2")).toThrow(
      "smollm2: neither model.safetensors nor model.safetensors.index.json",
    );
    const index = new TextEncoder().encode(
      JSON.stringify({ weight_map: { "model.norm.weight": "model-00001-of-00002.safetensors" } }),
    );
    expect(() =>
      openHfStream({ ...noWeights, "model.safetensors.index.json": bytesSource(index, "i") }, "smollm2"),
    ).toThrow("smollm2: shard model-00001-of-00002.safetensors is missing (pick the whole folder)");
    const { "config.json": _c, ...noConfig } = files;
    expect(() => openHfStream(noConfig, "smollm2")).toThrow("smollm2: no config.json");
  });
});
