// Property-based corruption suite for lora's readers: PEFT adapters (config JSON + safetensors), adapters stored
// in int21 checkpoints (JSON meta + tensors), and Alpaca data. Damaged input must either read as a valid adapter
// (which then attaches whole) or throw a plain Error naming the file — never a TypeError/RangeError, never a
// hang, never a half-attached adapter.
import fc from "fast-check";
import { mutation, mutate, expectNamedError, show } from "@int21/fuzz-utils";
import { describe, expect, it } from "vitest";
import { parseAlpaca } from "./alpaca";
import { adaptersFromCheckpoint, adaptersToCheckpoint } from "./checkpoint-adapters";
import { applyLoRA, LoRAModel } from "./lora-model";
import { attachPeftAdapter, parsePeftAdapter, serializePeftAdapter } from "./peft";
import { randomArray, toyModules } from "./testing/dense-linear";

const SEED = 2114;
const CASE_MS = 2000;

/** Values a lying JSON field takes. */
const LIES = fc.constantFrom<unknown>(
  0,
  -1,
  1.5,
  2 ** 40,
  1e308,
  null,
  "x",
  "(",
  "(a+)+$",
  [],
  [null],
  {},
  { "a.b": -1 },
  true,
);

function within(what: () => string, f: () => void): void {
  const t0 = performance.now();
  f();
  const ms = performance.now() - t0;
  if (ms > CASE_MS) throw new Error(`${what()} took ${ms.toFixed(0)} ms`);
}

/** Every adapter of `model` is attached on all of its modules, or the model has none (nothing half-attached). */
function expectWholeOrNothing(model: LoRAModel, expected: number): void {
  const names = model.adapterNames();
  if (names.length === 0) return;
  for (const n of names) expect(model.adapters(n).length).toBe(model.record(n).targets.length);
  expect(names.length).toBe(expected);
}

function trainedModel(): LoRAModel {
  const model = applyLoRA(toyModules(), { targetModules: ["q_proj", "v_proj"], r: 2, alpha: 4 });
  let s = 1;
  for (const [, a] of model.adapters("default")) a.loraB.set(randomArray(a.loraB.length, s++));
  return model;
}

describe("corrupt PEFT adapters", () => {
  const { config, weights } = serializePeftAdapter(trainedModel());
  const headerLen = 8 + Number(new DataView(weights.buffer).getBigUint64(0, true));

  it("the unmodified adapter parses and attaches", () => {
    const model = new LoRAModel(toyModules());
    attachPeftAdapter(model, parsePeftAdapter(config, weights, "good"));
    expectWholeOrNothing(model, 1);
  });

  it("a damaged adapter_model.safetensors: an adapter that attaches whole, or an Error naming the file", () => {
    fc.assert(
      fc.property(mutation, (m) => {
        const bad = mutate(weights, headerLen, m);
        within(
          () => show(m),
          () => {
            const model = new LoRAModel(toyModules());
            try {
              attachPeftAdapter(model, parsePeftAdapter(config, bad, "damaged-dir"));
            } catch (e) {
              expectNamedError(e, "damaged-dir");
            }
            expectWholeOrNothing(model, 1);
          },
        );
      }),
      { numRuns: 200, seed: SEED },
    );
  });

  it("adapter_config.json fields set to absurd values or removed", () => {
    const fields = Object.keys(JSON.parse(config));
    fc.assert(
      fc.property(fc.constantFrom(...fields), fc.option(LIES), (field, lie) => {
        const c = JSON.parse(config);
        if (lie === null) delete c[field];
        else c[field] = lie;
        within(
          () => `${field} = ${JSON.stringify(lie)}`,
          () => {
            const model = new LoRAModel(toyModules());
            try {
              attachPeftAdapter(model, parsePeftAdapter(JSON.stringify(c), weights, "lying-dir"));
            } catch (e) {
              expectNamedError(e, "lying-dir");
            }
            expectWholeOrNothing(model, 1);
          },
        );
      }),
      { numRuns: 200, seed: SEED },
    );
    for (const text of [
      "",
      "null",
      "[]",
      "7",
      '"x"',
      "{",
      '{"peft_type":"LORA","r":2,"lora_alpha":4,"target_modules":"("}',
    ])
      expect(() => parsePeftAdapter(text, weights, "junk-dir")).toThrow(/junk-dir/);
  });
});

describe("corrupt adapters in int21 checkpoints", () => {
  const model = trainedModel();
  model.addAdapter({ name: "task", targetModules: ["q_proj"], r: 3, alpha: 3 });
  const stored = adaptersToCheckpoint(model);
  const metaText = JSON.stringify(stored.meta);

  it("the unmodified adapters attach", () => {
    const fresh = new LoRAModel(toyModules());
    expect(
      adaptersFromCheckpoint(fresh, { tensors: stored.tensors, meta: JSON.parse(metaText) }, "ck"),
    ).toEqual(["default", "task"]);
    expectWholeOrNothing(fresh, 2);
  });

  it("any number or field of the meta set to an absurd value: all adapters attach, or none and an Error naming the file", () => {
    const numbers = [...metaText.matchAll(/-?\d+(\.\d+)?/g)];
    const keys = [...metaText.matchAll(/"(\w+)":/g)];
    fc.assert(
      fc.property(fc.boolean(), fc.nat(), LIES, (onNumber, nth, lie) => {
        let text: string;
        if (onNumber) {
          const m = numbers[nth % numbers.length];
          text =
            metaText.slice(0, m.index) + JSON.stringify(lie) + metaText.slice((m.index ?? 0) + m[0].length);
        } else {
          // Replace the value after a key: cut to the next comma/brace at the same position.
          const m = keys[nth % keys.length];
          const start = (m.index ?? 0) + m[0].length;
          const rest = metaText.slice(start);
          const valueText = /^("[^"]*"|-?[\d.e+-]+|true|false|null)/.exec(rest)?.[0];
          if (valueText === undefined) return;
          text = metaText.slice(0, start) + JSON.stringify(lie) + rest.slice(valueText.length);
        }
        let meta: unknown;
        try {
          meta = JSON.parse(text);
        } catch {
          return; // the lie landed inside a string: not valid JSON, nothing to test
        }
        within(
          () => text,
          () => {
            const fresh = new LoRAModel(toyModules());
            try {
              adaptersFromCheckpoint(fresh, { tensors: stored.tensors, meta }, "lying.int21");
            } catch (e) {
              expectNamedError(e, "lying.int21");
            }
            expectWholeOrNothing(fresh, 2);
          },
        );
      }),
      { numRuns: 250, seed: SEED },
    );
  });

  it("a tensor with NaN, the wrong length, or missing, in the second adapter: nothing is attached", () => {
    for (const edit of [
      (t: typeof stored.tensors) => {
        t["task/model.layers.1.self_attn.q_proj.lora_B"].data[0] = Number.NaN;
      },
      (t: typeof stored.tensors) => {
        t["task/model.layers.1.self_attn.q_proj.lora_B"].data = new Float32Array(3);
      },
      (t: typeof stored.tensors) => {
        delete t["task/model.layers.0.self_attn.q_proj.lora_A"];
      },
    ]) {
      const tensors = structuredClone(stored.tensors);
      edit(tensors);
      const fresh = new LoRAModel(toyModules());
      expect(() =>
        adaptersFromCheckpoint(fresh, { tensors, meta: JSON.parse(metaText) }, "bad.int21"),
      ).toThrow(/adaptersFromCheckpoint: bad\.int21: tensor "task\//);
      expect(fresh.adapterNames()).toEqual([]);
    }
  });
});

describe("corrupt Alpaca data", () => {
  const records = [
    { instruction: "Say hi", input: "", output: "hi" },
    { instruction: "Add", input: "1 and 2", output: "3" },
    { instruction: 'Quote "this" \\ that', output: "ok" },
  ];
  const json = new TextEncoder().encode(JSON.stringify(records, null, 2));
  const jsonl = new TextEncoder().encode(records.map((r) => JSON.stringify(r)).join("\n"));
  const dec = new TextDecoder();

  it("damaged JSON and JSONL: records or an Error naming the file", () => {
    fc.assert(
      fc.property(fc.boolean(), mutation, (isJsonl, m) => {
        const bytes = isJsonl ? jsonl : json;
        const text = dec.decode(mutate(bytes, bytes.length, m));
        within(
          () => show(m),
          () => {
            try {
              for (const r of parseAlpaca(text, "damaged.json")) expect(typeof r.output).toBe("string");
            } catch (e) {
              expectNamedError(e, "damaged.json");
            }
          },
        );
      }),
      { numRuns: 300, seed: SEED },
    );
  });

  it("a large array is parsed in linear time (line numbers in one pass)", () => {
    const big = JSON.stringify(
      Array.from({ length: 40000 }, (_, i) => ({ instruction: `q${i}`, output: `a${i}` })),
      null,
      1,
    );
    within(
      () => "40000 records",
      () => expect(parseAlpaca(big, "big.json")).toHaveLength(40000),
    );
  });
});
