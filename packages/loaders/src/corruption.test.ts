// Property-based corruption suite for every model reader: a tiny valid file of each kind (llama2.c .bin,
// tokenizer.bin, int21 checkpoint, GGUF, Hugging Face config + safetensors) is damaged at random — truncated,
// bits flipped, header numbers replaced by absurd values — and each load must either return a whole model or
// throw a plain Error naming the file: never a TypeError/RangeError from deep inside, never a hang, never a
// half-built model.
import { type GgufValue, parseGguf, serializeGguf, serializeSafetensors } from "@int21/io";
import fc from "fast-check";
import { mutation, mutate, expectNamedError, show } from "@int21/fuzz-utils";
import { describe, expect, it } from "vitest";
import { serializeInt21Checkpoint, loadInt21CheckpointBytes } from "./checkpoint";
import { readGgufLora, serializeGgufLora } from "./gguf-lora";
import { ggufModelTensors, loadGguf, serializeGgufModel } from "./gguf-model";
import { hfTensorName, llamaToHfConfig, loadHfBytes } from "./load-hf";
import { encodeLlama2c, loadLlama2cBytes } from "./load-llama2c";
import { Llama2cTokenizer } from "./tokenizer";
import {
  type LlamaConfig,
  addLlamaLoRA,
  llamaTensorSpecs,
  syntheticWeights,
  type LlamaWeights,
} from "@int21/model-llama";

const SEED = 2114;
/** Time one case may take (generous: CI machines are shared); slower means work that grows with a lie. */
const CASE_MS = 2000;

const CONFIG: LlamaConfig = {
  dim: 32,
  hiddenDim: 64,
  nLayers: 2,
  nHeads: 4,
  nKvHeads: 2,
  vocabSize: 40,
  seqLen: 16,
  ropeTheta: 10000,
  normEps: 1e-5,
  sharedClassifier: false,
};

function ramp(n: number, seed: number): Float32Array {
  return Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.37 + seed) * 0.1);
}

/** Float tensors of a model of `CONFIG` under int21 names. */
const FLOATS = new Map(
  llamaTensorSpecs(CONFIG).map((s, i) => [
    s.name,
    ramp(
      s.shape.reduce((a, b) => a * b, 1),
      i,
    ),
  ]),
);

/** Numbers of a JSON text replaced one at a time by these lies. */
const JSON_LIES = fc.constantFrom(
  "1099511627776",
  "-1",
  "0",
  "1e308",
  "1.5",
  "9007199254740993",
  "null",
  '"x"',
  "[]",
  "{}",
  "true",
);

function lieInJson(json: string, nth: number, lie: string): string {
  const numbers = [...json.matchAll(/-?\d+(\.\d+)?(e-?\d+)?/g)];
  const m = numbers[nth % numbers.length];
  return json.slice(0, m.index) + lie + json.slice((m.index ?? 0) + m[0].length);
}

/** A loaded model is whole: every layer and every weight is there. */
function expectWhole(w: LlamaWeights): void {
  expect(w.layers.length).toBe(w.config.nLayers);
  for (const l of w.layers) for (const v of Object.values(l)) expect(v).toBeDefined();
  expect(w.tokenEmbedding).toBeDefined();
  expect(w.finalNorm.length).toBe(w.config.dim);
  expect(w.classifier).toBeDefined();
}

async function within<T>(what: () => string, f: () => Promise<T> | T): Promise<void> {
  const t0 = performance.now();
  await f();
  const ms = performance.now() - t0;
  if (ms > CASE_MS) throw new Error(`${what()} took ${ms.toFixed(0)} ms`);
}

describe("corrupt llama2.c checkpoints", () => {
  const files = [encodeLlama2c(CONFIG, FLOATS, 0), encodeLlama2c(CONFIG, FLOATS, 1)];

  it("the unmodified files load", () => {
    for (const f of files) expectWhole(loadLlama2cBytes(f));
  });

  it("truncations, flips and absurd header values: a whole model or an Error naming the file", async () => {
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(0, 1), mutation, async (v, m) => {
        const label = `damaged-v${v}.bin`;
        const bad = mutate(files[v], v === 0 ? 28 : 256, m);
        await within(
          () => show(m),
          () => {
            try {
              expectWhole(loadLlama2cBytes(bad, { name: label }));
            } catch (e) {
              expectNamedError(e, label);
            }
          },
        );
      }),
      { numRuns: 200, seed: SEED },
    );
  });

  it("every header int32 set to an absurd or negative value", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: 6 }),
        fc.constantFrom(0, 1, -1, 2 ** 31 - 1, -(2 ** 31), 3, 1 << 20, 65536),
        async (field, value) => {
          const bad = files[1].slice();
          new DataView(bad.buffer).setInt32(8 + 4 * field, value, true);
          await within(
            () => `field ${field} = ${value}`,
            () => {
              try {
                expectWhole(loadLlama2cBytes(bad, { name: "lying.bin" }));
              } catch (e) {
                expectNamedError(e, "lying.bin");
              }
            },
          );
        },
      ),
      { numRuns: 60, seed: SEED },
    );
  });
});

describe("corrupt tokenizer.bin", () => {
  const pieces = ["<unk>", "\n<s>\n", "\n</s>\n"];
  for (let b = 0; b < 256; b++) pieces.push(`<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`);
  pieces.push(" ", "a", "b", " a", "ab", " ab");
  const enc = new TextEncoder();
  const parts = pieces.map((p) => enc.encode(p));
  const bytes = new Uint8Array(4 + parts.reduce((a, p) => a + 8 + p.length, 0));
  const dv = new DataView(bytes.buffer);
  dv.setInt32(0, 8, true);
  let off = 4;
  parts.forEach((p, i) => {
    dv.setFloat32(off, i >= 259 ? -(i - 258) : 0, true);
    dv.setInt32(off + 4, p.length, true);
    bytes.set(p, off + 8);
    off += 8 + p.length;
  });

  it("the unmodified file parses and encodes", () => {
    expect(Llama2cTokenizer.fromBytes(bytes, "tok.bin").encode("ab a")).toEqual([264, 262]);
  });

  it("truncations, flips and absurd lengths/scores: a tokenizer or an Error naming the file", async () => {
    await fc.assert(
      fc.asyncProperty(mutation, async (m) => {
        const bad = mutate(bytes, 64, m);
        await within(
          () => show(m),
          () => {
            let tok: Llama2cTokenizer;
            try {
              tok = Llama2cTokenizer.fromBytes(bad, "damaged-tok.bin");
            } catch (e) {
              expectNamedError(e, "damaged-tok.bin");
              return;
            }
            tok.encode("a b ab");
          },
        );
      }),
      { numRuns: 300, seed: SEED },
    );
  });
});

describe("corrupt int21 checkpoints", () => {
  const packed = serializeInt21Checkpoint(syntheticWeights(CONFIG, { seed: 3, format: "int4-g32-asym-f16" }));
  const headerLen = 8 + Number(new DataView(packed.buffer).getBigUint64(0, true));

  it("the unmodified file loads", async () => {
    expectWhole((await loadInt21CheckpointBytes(packed)).weights);
  });

  it("truncations, flips and absurd values: a whole model or an Error naming the file", async () => {
    await fc.assert(
      fc.asyncProperty(mutation, async (m) => {
        const bad = mutate(packed, headerLen, m);
        await within(
          () => show(m),
          async () => {
            try {
              expectWhole((await loadInt21CheckpointBytes(bad, { name: "damaged.int21" })).weights);
            } catch (e) {
              expectNamedError(e, "damaged.int21");
            }
          },
        );
      }),
      { numRuns: 150, seed: SEED },
    );
  });

  it("lies in the header JSON (config fields, shapes, offsets, linears)", async () => {
    const json = new TextDecoder().decode(packed.subarray(8, headerLen));
    const data = packed.subarray(headerLen);
    await fc.assert(
      fc.asyncProperty(fc.nat(), JSON_LIES, async (nth, lie) => {
        // Numbers inside the escaped metadata strings (config, linears) are lies too.
        const body = new TextEncoder().encode(lieInJson(json, nth, lie));
        const bad = new Uint8Array(8 + body.length + data.length);
        new DataView(bad.buffer).setBigUint64(0, BigInt(body.length), true);
        bad.set(body, 8);
        bad.set(data, 8 + body.length);
        await within(
          () => `lie ${lie} at number ${nth}`,
          async () => {
            try {
              expectWhole((await loadInt21CheckpointBytes(bad, { name: "lying.int21" })).weights);
            } catch (e) {
              expectNamedError(e, "lying.int21");
            }
          },
        );
      }),
      { numRuns: 200, seed: SEED },
    );
  });
});

/** A safetensors file with its JSON header rewritten by `edit` (data unchanged). */
function rewriteHeader(bytes: Uint8Array, edit: (header: Record<string, unknown>) => void): Uint8Array {
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
  edit(header);
  const body = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + body.length + bytes.length - 8 - n);
  new DataView(out.buffer).setBigUint64(0, BigInt(body.length), true);
  out.set(body, 8);
  out.set(bytes.subarray(8 + n), 8 + body.length);
  return out;
}

/** Values a lying config field or metadata entry takes. */
const VALUE_LIES = fc.constantFrom<unknown>(
  0,
  -1,
  1.5,
  2 ** 40,
  2 ** 31 - 1,
  1e308,
  Number.MAX_SAFE_INTEGER,
  null,
  "x",
  [],
  {},
  true,
);

describe("int21 checkpoint metadata lies", () => {
  const packed = serializeInt21Checkpoint(syntheticWeights(CONFIG, { seed: 3, format: "int4-g32-asym-f16" }));
  const fields = [...Object.keys(CONFIG), "extra"];

  it("a config field set to an absurd value, or removed: a whole model or an Error naming the file and field", async () => {
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...fields), fc.option(VALUE_LIES), async (field, value) => {
        const bad = rewriteHeader(packed, (h) => {
          const meta = h.__metadata__ as Record<string, string>;
          const c = JSON.parse(meta.config);
          if (value === null) delete c[field];
          else c[field] = value;
          meta.config = JSON.stringify(c);
        });
        await within(
          () => `config.${field} = ${JSON.stringify(value)}`,
          async () => {
            try {
              expectWhole((await loadInt21CheckpointBytes(bad, { name: "lying.int21" })).weights);
            } catch (e) {
              expectNamedError(e, "lying.int21");
              if (field !== "extra")
                expect((e as Error).message).toMatch(
                  new RegExp(`${field}|head size|divisible|multiple|tensor`),
                );
            }
          },
        );
      }),
      { numRuns: 150, seed: SEED },
    );
  });

  it("the config, linears or adapters metadata replaced by any JSON value or removed", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom("config", "linears", "adapters", "format", "int21_version"),
        fc.option(
          fc.oneof(
            VALUE_LIES,
            fc.constant({ "layers.0.wq": null }),
            fc.constant({ "layers.0.wq": { kind: "quant", format: 7 } }),
          ),
        ),
        async (key, value) => {
          const bad = rewriteHeader(packed, (h) => {
            const meta = h.__metadata__ as Record<string, string>;
            if (value === null) delete meta[key];
            else if (
              key === "linears" &&
              typeof value === "object" &&
              value !== null &&
              !Array.isArray(value)
            )
              meta[key] = JSON.stringify({ ...JSON.parse(meta.linears), ...value });
            else meta[key] = typeof value === "string" && value !== "x" ? value : JSON.stringify(value);
          });
          await within(
            () => `${key} = ${JSON.stringify(value)}`,
            async () => {
              try {
                expectWhole((await loadInt21CheckpointBytes(bad, { name: "lying.int21" })).weights);
              } catch (e) {
                expectNamedError(e, "lying.int21");
              }
            },
          );
        },
      ),
      { numRuns: 120, seed: SEED },
    );
  });
});

describe("corrupt GGUF models", () => {
  const { bytes } = serializeGgufModel(syntheticWeights(CONFIG, { seed: 4 }), { type: "Q8_0" });
  // The header is everything before the data area: the smallest tensor offset.
  const parsed = parseGguf(bytes);
  const header = Math.min(...parsed.names.map((n) => parsed.tensors[n].byteOffset));

  it("the unmodified file loads", async () => {
    expectWhole((await loadGguf(bytes)).weights);
  });

  it("truncations, flips, absurd counts, lengths and metadata values: a whole model or an Error naming the file", async () => {
    await fc.assert(
      fc.asyncProperty(mutation, async (m) => {
        const bad = mutate(bytes, header, m);
        await within(
          () => show(m),
          async () => {
            try {
              expectWhole((await loadGguf(bad)).weights);
            } catch (e) {
              expectNamedError(e, "<bytes>");
            }
          },
        );
      }),
      { numRuns: 150, seed: SEED },
    );
  });
});

describe("GGUF metadata lies", () => {
  const { metadata, tensors } = ggufModelTensors(syntheticWeights(CONFIG, { seed: 4 }), { type: "Q8_0" });
  const keys = Object.keys(metadata).filter((k) => k.startsWith("llama."));
  const lies = fc.constantFrom<GgufValue>(
    { type: "u32", value: 0 },
    { type: "u32", value: 2 ** 32 - 1 },
    { type: "u32", value: 3 },
    { type: "i32", value: -1 },
    { type: "f32", value: Number.NaN },
    { type: "f32", value: 0.5 },
    { type: "u64", value: 2n ** 40n },
    { type: "u64", value: 2n ** 63n },
    { type: "string", value: "llama" },
    { type: "bool", value: true },
  );

  it("a llama.* key set to an absurd value or removed: a whole model or an Error naming the file and key", async () => {
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...keys), fc.option(lies), async (key, lie) => {
        const md = { ...metadata };
        if (lie === null) delete md[key];
        else md[key] = lie;
        const bytes = serializeGguf({ metadata: md, tensors });
        await within(
          () => `${key} = ${show(lie)}`,
          async () => {
            try {
              expectWhole((await loadGguf(bytes)).weights);
            } catch (e) {
              expectNamedError(e, "<bytes>");
            }
          },
        );
      }),
      { numRuns: 120, seed: SEED },
    );
  });
});

describe("corrupt GGUF LoRA adapters", () => {
  const w = syntheticWeights(CONFIG, { seed: 5 });
  const lora = addLlamaLoRA(w, { targetModules: ["q_proj", "down_proj"], r: 2, alpha: 4 });
  for (const [, a] of lora.adapters()) a.loraB.fill(0.01);
  const { bytes } = serializeGgufLora(lora, CONFIG);
  const parsed = parseGguf(bytes);
  const header = Math.min(...parsed.names.map((n) => parsed.tensors[n].byteOffset));

  it("the unmodified adapter reads", async () => {
    expect((await readGgufLora(bytes)).modules).toHaveLength(4);
  });

  it("truncations, flips and absurd values: an adapter with finite values, or an Error naming the file", async () => {
    await fc.assert(
      fc.asyncProperty(mutation, async (m) => {
        const bad = mutate(bytes, header, m);
        await within(
          () => show(m),
          async () => {
            try {
              const r = await readGgufLora(bad);
              expect(r.modules.length).toBeGreaterThan(0);
              for (const x of r.modules) {
                expect(x.r).toBeGreaterThan(0);
                for (const v of x.loraA) expect(Number.isFinite(v)).toBe(true);
                for (const v of x.loraB) expect(Number.isFinite(v)).toBe(true);
              }
            } catch (e) {
              expectNamedError(e, "<bytes>");
            }
          },
        );
      }),
      { numRuns: 150, seed: SEED },
    );
  });
});

describe("corrupt Hugging Face checkpoints", () => {
  const tensors: Record<string, { dtype: "F32"; shape: number[]; data: Float32Array }> = {};
  for (const s of llamaTensorSpecs(CONFIG))
    tensors[hfTensorName(s.name)] = { dtype: "F32", shape: s.shape, data: FLOATS.get(s.name)! };
  const weights = serializeSafetensors(tensors);
  const config = JSON.stringify(llamaToHfConfig(CONFIG));
  const enc = new TextEncoder();

  it("the unmodified directory loads", async () => {
    expectWhole(await loadHfBytes({ "config.json": enc.encode(config), "model.safetensors": weights }));
  });

  it("config.json lies: a whole model or an Error naming the directory or file", async () => {
    await fc.assert(
      fc.asyncProperty(fc.nat(), JSON_LIES, async (nth, lie) => {
        const text = lieInJson(config, nth, lie);
        await within(
          () => `lie ${lie} at number ${nth}`,
          async () => {
            try {
              expectWhole(
                await loadHfBytes({ "config.json": enc.encode(text), "model.safetensors": weights }),
              );
            } catch (e) {
              expectNamedError(e, "<hf bytes>", "model.safetensors");
            }
          },
        );
      }),
      { numRuns: 150, seed: SEED },
    );
    for (const junk of ["null", "[]", "7", '"x"', "{}"]) {
      await expect(
        loadHfBytes({ "config.json": enc.encode(junk), "model.safetensors": weights }),
      ).rejects.toThrow(/<hf bytes>\/config\.json/);
    }
  });

  it("a sharded directory whose index lies: a whole model or an Error naming the directory or file", async () => {
    const names = Object.keys(tensors);
    const half = Math.floor(names.length / 2);
    const shardOf = (n: string) => (names.indexOf(n) < half ? "s1.safetensors" : "s2.safetensors");
    const pick = (which: string) =>
      serializeSafetensors(
        Object.fromEntries(names.filter((n) => shardOf(n) === which).map((n) => [n, tensors[n]])),
      );
    const files = { "s1.safetensors": pick("s1.safetensors"), "s2.safetensors": pick("s2.safetensors") };
    const index = { metadata: {}, weight_map: Object.fromEntries(names.map((n) => [n, shardOf(n)])) };
    const indexText = (i: unknown) => enc.encode(JSON.stringify(i));
    expectWhole(
      await loadHfBytes({
        "config.json": enc.encode(config),
        "model.safetensors.index.json": indexText(index),
        ...files,
      }),
    );
    const lies = fc.constantFrom<unknown>(
      null,
      7,
      "",
      "../x.safetensors",
      "/abs.safetensors",
      "s9.safetensors",
      [],
      {},
      "s1.safetensors",
    );
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(fc.constant("root"), fc.constant("weight_map"), fc.constantFrom(...names)),
        lies,
        async (where, lie) => {
          const i = structuredClone(index) as Record<string, unknown> & {
            weight_map: Record<string, unknown>;
          };
          let text: Uint8Array;
          if (where === "root") text = indexText(lie);
          else {
            if (where === "weight_map") i.weight_map = lie as Record<string, unknown>;
            else i.weight_map[where] = lie;
            text = indexText(i);
          }
          await within(
            () => `${where} = ${JSON.stringify(lie)}`,
            async () => {
              try {
                expectWhole(
                  await loadHfBytes({
                    "config.json": enc.encode(config),
                    "model.safetensors.index.json": text,
                    ...files,
                  }),
                );
              } catch (e) {
                expectNamedError(e, "<hf bytes>", "s1.safetensors", "s2.safetensors");
              }
            },
          );
        },
      ),
      { numRuns: 100, seed: SEED },
    );
  });

  it("a damaged model.safetensors: a whole model or an Error naming the file", async () => {
    const headerLen = 8 + Number(new DataView(weights.buffer).getBigUint64(0, true));
    await fc.assert(
      fc.asyncProperty(mutation, async (m) => {
        const bad = mutate(weights, headerLen, m);
        await within(
          () => show(m),
          async () => {
            try {
              expectWhole(await loadHfBytes({ "config.json": enc.encode(config), "model.safetensors": bad }));
            } catch (e) {
              expectNamedError(e, "model.safetensors", "<hf bytes>");
            }
          },
        );
      }),
      { numRuns: 100, seed: SEED },
    );
  });
});
