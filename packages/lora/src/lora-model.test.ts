import type { Linear } from "@int21/quant-kernels";
import { describe, expect, it } from "vitest";
import { LoRALinear } from "./lora-linear";
import { applyLoRA, LoRAModel } from "./lora-model";
import { toyModules } from "./testing/dense-linear";

describe("LoRAModel", () => {
  it("wraps exactly the targeted modules, in place", () => {
    const modules = toyModules();
    const before = new Map(modules);
    const model = applyLoRA(modules, { targetModules: ["q_proj", "wv"], r: 2, alpha: 4 });
    const wrapped = [...model.layers().keys()];
    expect(wrapped).toEqual([
      "model.layers.0.self_attn.q_proj",
      "model.layers.0.self_attn.v_proj",
      "model.layers.1.self_attn.q_proj",
      "model.layers.1.self_attn.v_proj",
    ]);
    for (const [n, l] of modules) {
      if (wrapped.includes(n)) expect((l as LoRALinear).base).toBe(before.get(n));
      else expect(l).toBe(before.get(n));
    }
    expect(model.parameterCount()).toBe(2 * (2 * (8 + 8) + 2 * (8 + 4)));
    const [, a] = model.adapters()[0];
    expect(a.scaling).toBe(2);
  });

  it("stacks a trainable adapter on a frozen one; seeds differ per module", () => {
    const modules = toyModules();
    const model = applyLoRA(modules, {
      name: "lrec",
      targetModules: ["q_proj", "v_proj"],
      r: 4,
      trainable: false,
    });
    model.addAdapter({ name: "task", targetModules: ["q_proj"], r: 2, seed: 7 });
    const q0 = modules.get("model.layers.0.self_attn.q_proj") as LoRALinear;
    expect(q0.adapters.map((a) => [a.name, a.trainable])).toEqual([
      ["lrec", false],
      ["task", true],
    ]);
    expect(model.adapterNames()).toEqual(["lrec", "task"]);
    expect(model.parameterCount()).toBe(2 * 2 * (8 + 8));
    expect(model.parameterCount("lrec")).toBe(2 * (4 * 16 + 4 * 12));
    const q1 = modules.get("model.layers.1.self_attn.q_proj") as LoRALinear;
    expect(q1.adapter("task").loraA).not.toEqual(q0.adapter("task").loraA);
    model.setTrainable("lrec", true);
    expect(q0.adapter("lrec").trainable).toBe(true);
    // a second LoRAModel over the same map adopts the adapters already there
    const again = new LoRAModel(modules);
    expect(again.adapterNames()).toEqual(["lrec", "task"]);
    expect(again.adapters("task").map(([m]) => m)).toEqual([
      "model.layers.0.self_attn.q_proj",
      "model.layers.1.self_attn.q_proj",
    ]);
  });

  it("rejects duplicate names and leaves nothing half-applied", () => {
    const modules = toyModules();
    const model = applyLoRA(modules, { targetModules: ["q_proj"], r: 2 });
    expect(() => model.addAdapter({ targetModules: ["k_proj"], r: 2 })).toThrow(
      /already has an adapter named "default"/,
    );
    const snapshot = new Map(modules);
    expect(() =>
      model.attachAdapter({ name: "x", targetModules: [], r: 2 }, [
        { module: "model.layers.0.self_attn.k_proj", r: 2, alpha: 2 },
        { module: "model.layers.9.self_attn.k_proj", r: 2, alpha: 2 },
      ]),
    ).toThrow(/targets module "model.layers.9.self_attn.k_proj"/);
    expect(modules).toEqual(snapshot);
    expect(modules.get("model.layers.0.self_attn.k_proj")).not.toBeInstanceOf(LoRALinear);
    expect(() => model.record("x")).toThrow(/no adapter named "x"/);
    expect(() => new LoRAModel(new Map([["a", {} as Linear]]))).toThrow(/module "a" is not a Linear/);
  });
});
