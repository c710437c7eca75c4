import { describe, expect, it } from "vitest";
import { adaptersFromCheckpoint, adaptersToCheckpoint } from "./checkpoint-adapters";
import type { LoRALinear } from "./lora-linear";
import { applyLoRA, LoRAModel } from "./lora-model";
import { randomArray, toyModules } from "./testing/dense-linear";

function outputs(modules: ReturnType<typeof toyModules>): Float32Array[] {
  return [...modules.values()].map((l) => {
    const y = new Float32Array(2 * l.outFeatures);
    l.forward(randomArray(2 * l.inFeatures, 3), 2, y);
    return y;
  });
}

describe("adapters in an int21 checkpoint", () => {
  it("round-trip a frozen + trainable stack through JSON meta", () => {
    const modules = toyModules();
    const model = applyLoRA(modules, {
      name: "lrec",
      targetModules: ["q_proj", "v_proj"],
      r: 4,
      alpha: 8,
      trainable: false,
    });
    model.addAdapter({
      name: "task",
      targetModules: ["q_proj"],
      r: 2,
      alpha: 4,
      rankPattern: { "layers.1.self_attn.q_proj": 3 },
    });
    let s = 1;
    for (const n of model.adapterNames())
      for (const [, a] of model.adapters(n)) a.loraB.set(randomArray(a.loraB.length, s++));
    const stored = adaptersToCheckpoint(model);
    expect(Object.keys(stored.tensors)).toContain("task/model.layers.1.self_attn.q_proj.lora_A");
    expect(stored.tensors["task/model.layers.1.self_attn.q_proj.lora_A"].shape).toEqual([3, 8]);
    const fresh = toyModules();
    const got = adaptersFromCheckpoint(new LoRAModel(fresh), {
      tensors: stored.tensors,
      meta: JSON.parse(JSON.stringify(stored.meta)),
    });
    expect(got).toEqual(["lrec", "task"]);
    expect(outputs(fresh)).toEqual(outputs(modules));
    const q = fresh.get("model.layers.0.self_attn.q_proj") as LoRALinear;
    expect(q.adapters.map((a) => [a.name, a.trainable, a.scaling])).toEqual([
      ["lrec", false, 2],
      ["task", true, 2],
    ]);
  });

  it("rejects missing tensors, wrong shapes and foreign meta", () => {
    const model = applyLoRA(toyModules(), { targetModules: ["q_proj"], r: 2 });
    const stored = adaptersToCheckpoint(model);
    const { "default/model.layers.1.self_attn.q_proj.lora_B": _gone, ...rest } = stored.tensors;
    expect(() =>
      adaptersFromCheckpoint(new LoRAModel(toyModules()), { tensors: rest, meta: stored.meta }),
    ).toThrow(/"default\/model.layers.1.self_attn.q_proj.lora_B" is missing/);
    const bad = {
      ...stored.tensors,
      "default/model.layers.0.self_attn.q_proj.lora_A": { shape: [2, 9], data: new Float32Array(18) },
    };
    expect(() =>
      adaptersFromCheckpoint(new LoRAModel(toyModules()), { tensors: bad, meta: stored.meta }),
    ).toThrow(/is \[2,9\], the model needs \[2,8\]/);
    expect(() =>
      adaptersFromCheckpoint(new LoRAModel(toyModules()), { tensors: {}, meta: { format: "x" } }),
    ).toThrow(/not int21-lora/);
    const fresh = new LoRAModel(toyModules());
    expect(() => adaptersFromCheckpoint(fresh, { tensors: rest, meta: stored.meta })).toThrow();
    expect(fresh.layers().size).toBe(0);
  });
});
