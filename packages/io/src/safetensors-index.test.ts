import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { openSafetensorsIndex, writeSafetensorsSharded } from "./safetensors-index";
import { writeSafetensors } from "./safetensors-writer";

const root = mkdtempSync(join(tmpdir(), "int21-io-idx-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

let n = 0;
/** A checkpoint dir with two shards: s1 = {a, b}, s2 = {c}; returns its path. */
async function checkpoint(
  weightMap: Record<string, string>,
  extra: Record<string, unknown> = {},
): Promise<string> {
  const dir = join(root, `ckpt${n++}`);
  mkdirSync(dir);
  await writeSafetensors(join(dir, "s1.safetensors"), {
    a: { dtype: "F32", shape: [2], data: [1, 2] },
    b: { dtype: "F16", shape: [1, 3], data: [3, 4, 5] },
  });
  await writeSafetensors(join(dir, "s2.safetensors"), { c: { dtype: "I32", shape: [2], data: [7, 8] } });
  writeFileSync(
    join(dir, "model.safetensors.index.json"),
    JSON.stringify({ metadata: { total_size: 22 }, weight_map: weightMap, ...extra }),
  );
  return dir;
}

const full = { a: "s1.safetensors", b: "s1.safetensors", c: "s2.safetensors" };

describe("openSafetensorsIndex", () => {
  it("opens from the directory or the index path and reads every tensor", async () => {
    const dir = await checkpoint(full);
    for (const where of [dir, join(dir, "model.safetensors.index.json")]) {
      const idx = await openSafetensorsIndex(where);
      expect(idx.metadata).toEqual({ total_size: 22 });
      expect(idx.shards).toEqual(["s1.safetensors", "s2.safetensors"]);
      expect(idx.tensors.b).toMatchObject({ dtype: "F16", shape: [1, 3], shard: "s1.safetensors" });
      expect([...(await idx.readF32("b"))]).toEqual([3, 4, 5]);
      expect([...(await idx.readRaw("c")).data]).toEqual([7, 8]);
      expect([...(await idx.readF32("a"))]).toEqual([1, 2]);
      await expect(idx.readF32("zz")).rejects.toThrow(/no tensor named "zz"/);
      await idx.close();
    }
  });

  it("iterates shard by shard, in file order within a shard", async () => {
    const idx = await openSafetensorsIndex(await checkpoint(full));
    const seen: string[] = [];
    for await (const t of idx.tensorsByShard()) {
      seen.push(`${t.shard}:${t.name}`);
      if (t.info.dtype !== "I32")
        expect((await t.file.readF32(t.name)).length).toBe(t.info.shape.reduce((x, y) => x * y));
    }
    // F32 is written before F16 in a shard (larger dtypes first).
    expect(seen).toEqual(["s1.safetensors:a", "s1.safetensors:b", "s2.safetensors:c"]);
  });

  it("fails clearly on a missing shard", async () => {
    const dir = await checkpoint({ ...full, d: "s3.safetensors" });
    await expect(openSafetensorsIndex(dir)).rejects.toThrow(
      /index\.json: shard "s3\.safetensors" \(mapped for tensor "d"\) is missing/,
    );
  });

  it("fails clearly on a tensor its shard does not contain", async () => {
    const dir = await checkpoint({ ...full, c: "s1.safetensors" });
    await expect(openSafetensorsIndex(dir)).rejects.toThrow(
      /tensor "c" is mapped to shard "s1\.safetensors", which does not contain it/,
    );
  });

  it("rejects shard paths outside the directory and a missing weight_map", async () => {
    await expect(openSafetensorsIndex(await checkpoint({ a: "../s1.safetensors" }))).rejects.toThrow(
      /tensor "a": shard "\.\.\/s1\.safetensors" must be a relative file name/,
    );
    const dir = join(root, "nomap");
    mkdirSync(dir);
    writeFileSync(join(dir, "model.safetensors.index.json"), "{}");
    await expect(openSafetensorsIndex(dir)).rejects.toThrow(/"weight_map" must be an object/);
    await expect(openSafetensorsIndex(join(root, "nowhere"))).rejects.toThrow(/cannot open .*nowhere/);
  });
});

describe("writeSafetensorsSharded", () => {
  const tensors = Object.fromEntries(
    ["a", "b", "c", "d", "e"].map((name, i) => [
      name,
      { dtype: "F32" as const, shape: [10], data: Float32Array.from({ length: 10 }, (_, j) => i * 10 + j) },
    ]),
  );

  it("splits greedily at maxShardBytes and writes an index openSafetensorsIndex reads back", async () => {
    const dir = join(root, "sharded");
    mkdirSync(dir);
    const files = await writeSafetensorsSharded(dir, tensors, {
      maxShardBytes: 100,
      metadata: { format: "pt" },
    });
    // 40 bytes per tensor: a+b (80), c+d (80), e (40).
    expect(files).toEqual([
      "model-00001-of-00003.safetensors",
      "model-00002-of-00003.safetensors",
      "model-00003-of-00003.safetensors",
      "model.safetensors.index.json",
    ]);
    const index = JSON.parse(readFileSync(join(dir, "model.safetensors.index.json"), "utf8"));
    expect(index.metadata.total_size).toBe(200);
    expect(index.weight_map.c).toBe("model-00002-of-00003.safetensors");
    const idx = await openSafetensorsIndex(dir);
    for (const [name, t] of Object.entries(tensors)) expect(await idx.readF32(name)).toEqual(t.data);
    await idx.close();
  });

  it("writes a single model.safetensors when everything fits, and gives an oversized tensor its own shard", async () => {
    const one = join(root, "one");
    mkdirSync(one);
    expect(await writeSafetensorsSharded(one, tensors)).toEqual(["model.safetensors"]);
    expect(existsSync(join(one, "model.safetensors.index.json"))).toBe(false);
    const big = join(root, "big");
    mkdirSync(big);
    const files = await writeSafetensorsSharded(big, tensors, { maxShardBytes: 30 });
    expect(files.length).toBe(6); // five shards of one tensor each, plus the index
  });
});
