import { existsSync, mkdirSync, readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { type SafetensorsWriteTensor, writeSafetensors } from "@int21/io";
import { linearParts, llamaTensorSpecs, denseTokenEmbedding } from "@int21/model-llama";
import { hfTensorName, llamaToHfConfig, loadLlama2c, permuteHfRows } from "@int21/loaders";
import { SHARED, sharedPath } from "@int21/shared-data";
import { afterAll, describe, expect, it } from "vitest";
import { isHfId } from "./hf-download";
import { cli, removeTempDirs, tempDir } from "./testing";

afterAll(removeTempDirs);

/** stories260K written as a Hugging Face directory (q/k rows permuted as HF stores them). */
async function storiesAsHf(dir: string): Promise<void> {
  mkdirSync(dir, { recursive: true });
  const w = loadLlama2c(sharedPath(SHARED.stories260K));
  const c = w.config;
  const { writeFileSync } = await import("node:fs");
  writeFileSync(join(dir, "config.json"), JSON.stringify(llamaToHfConfig(c)));
  const hs = c.dim / c.nHeads;
  const out: Record<string, SafetensorsWriteTensor> = {};
  for (const spec of llamaTensorSpecs(c)) {
    let data: Float32Array;
    if (spec.name === "tokenEmbedding") data = denseTokenEmbedding(w.tokenEmbedding);
    else if (spec.name === "finalNorm") data = w.finalNorm;
    else {
      const [, l, k] = /^layers\.(\d+)\.(\w+)$/.exec(spec.name) as RegExpExecArray;
      const v = (w.layers[Number(l)] as unknown as Record<string, unknown>)[k];
      data =
        v instanceof Float32Array
          ? v
          : (linearParts(v as never, spec.name) as { weight: Float32Array }).weight;
    }
    if (/\.w[qk]$/.test(spec.name))
      data = permuteHfRows(data, spec.shape[0] / hs, spec.shape[0], spec.shape[1]);
    out[hfTensorName(spec.name)] = { dtype: "F32", shape: spec.shape, data };
  }
  await writeSafetensors(join(dir, "model.safetensors"), out, { format: "pt" });
}

/** A `fetch` serving `<endpoint>/<id>/resolve/main/<file>` from `dir` (404 for missing files). */
function fakeHub(dir: string, id: string, seen: string[]): typeof fetch {
  return (async (input: string | URL) => {
    const url = String(input);
    seen.push(url);
    const prefix = `https://hub.test/${id}/resolve/main/`;
    const file = url.startsWith(prefix) ? url.slice(prefix.length) : "";
    const p = join(dir, file);
    if (file === "" || !existsSync(p)) return new Response("not found", { status: 404 });
    const bytes = readFileSync(p);
    return new Response(bytes, { status: 200, headers: { "content-length": String(bytes.length) } });
  }) as typeof fetch;
}

describe("Hugging Face ids", () => {
  it("tells ids from paths", () => {
    expect(isHfId("karpathy/tinyllamas")).toBe(true);
    expect(isHfId("TinyLlama/TinyLlama-1.1B-Chat-v1.0")).toBe(true);
    expect(isHfId("./models/x.bin")).toBe(false);
    expect(isHfId("/abs/model.bin")).toBe(false);
    expect(isHfId("a/b/c")).toBe(false);
    expect(isHfId("model.bin")).toBe(false);
  });

  it("an unreachable network fails with exit 1 and says how to pass a local path", async () => {
    const cache = tempDir();
    const unreachable = (async () => {
      throw new TypeError("fetch failed", { cause: { code: "ENOTFOUND" } });
    }) as unknown as typeof fetch;
    const r = await cli(["generate", "someone/some-model", "--quiet"], {
      env: { INT21_CACHE: cache },
      fetch: unreachable,
    });
    expect(r.code).toBe(1);
    expect(r.err).toContain(
      "cannot download someone/some-model from https://huggingface.co/someone/some-model/resolve/main/config.json (ENOTFOUND)",
    );
    expect(r.err).toContain(
      "pass a local path instead: a llama2.c .bin file, a Hugging Face model directory",
    );
  });

  it("a missing repository and HTTP errors are named", async () => {
    const cache = tempDir();
    const hub = fakeHub(tempDir(), "x/y", []);
    const r = await cli(["inspect", "x/y"], {
      env: { INT21_CACHE: cache, HF_ENDPOINT: "https://hub.test" },
      fetch: hub,
    });
    // inspect takes local files only: the id is not a path
    expect(r.code).toBe(1);
    const g = await cli(["eval", "x/y", "--data", sharedPath(SHARED.tinystoriesValid), "--quiet"], {
      env: { INT21_CACHE: cache, HF_ENDPOINT: "https://hub.test" },
      fetch: hub,
    });
    expect(g.code).toBe(1);
    expect(g.err).toContain("https://hub.test/x/y/resolve/main/config.json does not exist");
    const denied = (async () => new Response("no", { status: 401 })) as unknown as typeof fetch;
    const d = await cli(["generate", "x/gated", "--quiet"], { env: { INT21_CACHE: cache }, fetch: denied });
    expect(d.err).toContain("HTTP 401 (a gated or private model: set HF_TOKEN)");
  });

  it("downloads config and weights into the cache with progress, then runs the model; a second run uses the cache", async () => {
    const hubDir = tempDir();
    await storiesAsHf(hubDir);
    const cache = tempDir();
    const seen: string[] = [];
    const env = { INT21_CACHE: cache, HF_ENDPOINT: "https://hub.test" };
    const args = [
      "generate",
      "karpathy/stories260K",
      "--tokenizer",
      sharedPath(SHARED.tok512),
      "--temperature",
      "0",
      "--steps",
      "40",
      "--threads",
      "1",
    ];
    const r = await cli(args, { env, fetch: fakeHub(hubDir, "karpathy/stories260K", seen) });
    expect(r.code).toBe(0);
    expect(r.err).toContain("download model.safetensors [####################] 100%");
    expect(r.out.startsWith("Once upon a time, there was a little girl named Lily.")).toBe(true);
    const cached = join(cache, "hf", "karpathy--stories260K", "main");
    expect(readdirSync(cached).sort()).toEqual([".int21-complete", "config.json", "model.safetensors"]);
    const again: string[] = [];
    const r2 = await cli(args, { env, fetch: fakeHub(hubDir, "karpathy/stories260K", again) });
    expect(r2.out).toBe(r.out);
    expect(again).toEqual([]);
  }, 30_000);

  it("a download that breaks off or comes up short leaves no partial file in the cache", async () => {
    const cache = tempDir();
    const env = { INT21_CACHE: cache, HF_ENDPOINT: "https://hub.test" };
    const config = new TextEncoder().encode("{}");
    // config.json is complete; model.safetensors promises 1000 bytes and sends 10
    const shortHub = (async (input: string | URL) => {
      const file = String(input).split("/").pop();
      if (file === "config.json")
        return new Response(config, { status: 200, headers: { "content-length": "2" } });
      if (file === "model.safetensors")
        return new Response(new Uint8Array(10), { status: 200, headers: { "content-length": "1000" } });
      return new Response("not found", { status: 404 });
    }) as unknown as typeof fetch;
    const r = await cli(["generate", "a/short", "--quiet"], { env, fetch: shortHub });
    expect(r.code).toBe(1);
    expect(r.err).toContain("model.safetensors sent 10 of 1000 bytes");
    const dir = join(cache, "hf", "a--short", "main");
    expect(readdirSync(dir)).toEqual(["config.json"]);
    // a body that errors halfway: same, nothing but the complete files
    const broken = (async (input: string | URL) => {
      const file = String(input).split("/").pop();
      if (file === "config.json") return new Response(config, { status: 200 });
      if (file !== "model.safetensors") return new Response("not found", { status: 404 });
      const body = new ReadableStream<Uint8Array>({
        start(c) {
          c.enqueue(new Uint8Array(64));
          c.error(new Error("connection reset"));
        },
      });
      return new Response(body, { status: 200 });
    }) as unknown as typeof fetch;
    const b = await cli(["generate", "a/broken", "--quiet"], { env, fetch: broken });
    expect(b.code).toBe(1);
    expect(b.err).toContain("broke off after");
    expect(b.err).toContain("connection reset");
    expect(readdirSync(join(cache, "hf", "a--broken", "main"))).toEqual(["config.json"]);
  });
});
