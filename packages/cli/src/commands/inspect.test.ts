import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { SHARED, sharedPath } from "@int21/shared-data";
import { afterAll, describe, expect, it } from "vitest";
import { cli, removeTempDirs, tempDir } from "../testing";

const MODEL = sharedPath(SHARED.stories260K);
afterAll(removeTempDirs);

describe("int21 inspect", () => {
  it("describes a llama2.c checkpoint: config and float tensors", async () => {
    const r = await cli(["inspect", MODEL]);
    expect(r.code).toBe(0);
    expect(r.out).toContain("llama2.c checkpoint (float32)");
    expect(r.out).toContain('"dim":64');
    const j = JSON.parse((await cli(["inspect", MODEL, "--json"])).out);
    expect(j.kind).toBe("llama2c");
    expect(j.tensors.find((t: { name: string }) => t.name === "layers.0.wq")).toEqual({
      name: "layers.0.wq",
      dtype: "F32",
      shape: [64, 64],
    });
  });

  it("lists every tensor with --all", async () => {
    const some = await cli(["inspect", MODEL]);
    const all = await cli(["inspect", MODEL, "--all"]);
    expect(some.out).toContain("--all for every one");
    expect(all.out.split("\n").length).toBeGreaterThan(some.out.split("\n").length);
  });

  it("names a missing or unreadable file (exit 1)", async () => {
    const m = await cli(["inspect", "/nonexistent/x.safetensors"]);
    expect(m.code).toBe(1);
    expect(m.err).toContain("/nonexistent/x.safetensors: no such file or directory");
    const dir = tempDir();
    const junk = join(dir, "junk.bin");
    writeFileSync(junk, "this is not a model");
    const j = await cli(["inspect", junk]);
    expect(j.code).toBe(1);
    expect(j.err).toContain(junk);
    expect((await cli(["inspect"])).code).toBe(2);
  });
});
