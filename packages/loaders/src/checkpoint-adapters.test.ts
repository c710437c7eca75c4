import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LoRAModel, peftConfig } from "@int21/lora";
import { llamaModules, syntheticConfig, syntheticWeights } from "@int21/model-llama";
import { afterAll, describe, expect, it } from "vitest";
import { loadInt21Checkpoint, saveInt21Checkpoint } from "./checkpoint";
import { checkpointAdaptersOf, type Int21AdapterMeta } from "./checkpoint-adapters";

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe("checkpointAdaptersOf", () => {
  it("stores the named adapters' PEFT tensors under <name>/ with their configs; they round-trip through a checkpoint", async () => {
    const w = syntheticWeights(syntheticConfig("stories260K"), { seed: 1 });
    const model = new LoRAModel(llamaModules(w));
    model.addAdapter({ name: "lrec", targetModules: ["q_proj", "down_proj"], r: 2, alpha: 4, seed: 3 });
    model.addAdapter({ name: "emef", targetModules: ["v_proj"], r: 4, alpha: 8, seed: 4 });
    for (const [, a] of model.adapters("lrec"))
      for (let i = 0; i < a.loraB.length; i++) a.loraB[i] = Math.sin(i);

    const only = checkpointAdaptersOf(model, ["lrec"]);
    const names = Object.keys(only.tensors);
    expect(names.length).toBe(2 * 2 * w.config.nLayers); // A and B of q and down per layer
    expect(names.every((n) => n.startsWith("lrec/") && /lora_[AB]\.weight$/.test(n))).toBe(true);
    const meta = only.meta as Int21AdapterMeta;
    expect(meta.int21Adapters).toEqual([
      { name: "lrec", prefix: "lrec/", config: peftConfig(model, { name: "lrec" }) },
    ]);
    const all = checkpointAdaptersOf(model);
    expect((all.meta as Int21AdapterMeta).int21Adapters.map((a) => a.name)).toEqual(["lrec", "emef"]);

    const dir = mkdtempSync(join(tmpdir(), "ckpt-adapters-"));
    dirs.push(dir);
    const p = join(dir, "m.safetensors");
    await saveInt21Checkpoint(p, w, { adapters: all });
    const back = await loadInt21Checkpoint(p);
    expect(back.adapters?.meta).toEqual(all.meta);
    for (const [k, t] of Object.entries(all.tensors)) {
      expect(back.adapters?.tensors[k].shape).toEqual(t.shape);
      expect(back.adapters?.tensors[k].data).toEqual(t.data);
    }
  });
});
