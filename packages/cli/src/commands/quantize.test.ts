import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseGguf } from "@int21/io";
import { LoRAModel } from "@int21/lora";
import { createRunState, forward, llamaModules, setLlamaModules, syntheticWeights } from "@int21/model-llama";
import { exportHf, loadGguf, loadGgufLora, loadModel } from "@int21/loaders";
import { SHARED, sharedPath } from "@int21/shared-data";
import { registerQuantizer, rtnQuantize, unregisterQuantizer } from "@int21/quant-kernels";
import { afterAll, describe, expect, it } from "vitest";
import { attachCheckpointAdapters } from "../model-loading";
import { cli, removeTempDirs, tempDir } from "../testing";
import { planTokenizerFiles } from "./quantize";

afterAll(removeTempDirs);

const MODEL = sharedPath(SHARED.stories260K);
const TOK = sharedPath(SHARED.tok512);
const CALIB = sharedPath(SHARED.tinystoriesValid);
const rtn = (out: string, ...more: string[]) => [
  "quantize",
  MODEL,
  "--bits",
  "4",
  "--method",
  "rtn",
  "-o",
  out,
  "--quiet",
  "--threads",
  "1",
  ...more,
];

describe("int21 quantize: existing outputs and the tokenizer beside them", () => {
  it("refuses to replace an existing output unless --force", async () => {
    const dir = tempDir();
    const out = join(dir, "q.safetensors");
    writeFileSync(out, "an older file");
    const r = await cli(rtn(out));
    expect(r.code).toBe(1);
    expect(r.err).toContain(`-o ${out} already exists; pass --force to replace it`);
    expect(readFileSync(out, "utf8")).toBe("an older file");
    const f = await cli(rtn(out, "--force", "--json"));
    expect(f.code).toBe(0);
    expect(statSync(out).size).toBe(JSON.parse(f.out).fileBytes);
    expect(readFileSync(join(dir, "tok512.bin")).equals(readFileSync(TOK))).toBe(true);
    // no temporary files left beside the output
    expect(readdirSync(dir).sort()).toEqual(["q.safetensors", "tok512.bin"]);
  }, 60_000);

  it("a temporary file left by a killed run is removed when the next run writes into the folder", async () => {
    const dir = tempDir();
    const child = spawnSync(process.execPath, ["-e", ""]); // a process id that is no longer running
    const left = `.q.safetensors.int21-tmp-${child.pid}-0badc0de`;
    writeFileSync(join(dir, left), "half a checkpoint");
    const r = await cli(rtn(join(dir, "q.safetensors")));
    expect(r.code).toBe(0);
    expect(readdirSync(dir).sort()).toEqual(["q.safetensors", "tok512.bin"]);
  }, 60_000);

  it("refuses a directory as -o, and the input model as -o even with --force", async () => {
    const dir = tempDir();
    mkdirSync(join(dir, "q.safetensors"));
    const d = await cli(rtn(join(dir, "q.safetensors"), "--force"));
    expect(d.code).toBe(1);
    expect(d.err).toContain(`${join(dir, "q.safetensors")} is a directory`);
    const copy = join(dir, "model.bin");
    writeFileSync(copy, readFileSync(MODEL));
    const self = await cli(["quantize", copy, "--method", "rtn", "-o", copy, "--force", "--quiet"]);
    expect(self.code).toBe(1);
    expect(self.err).toContain("is the input model");
    expect(readFileSync(copy).equals(readFileSync(MODEL))).toBe(true);
  }, 60_000);

  it("creates a missing output folder; a path under a regular file fails at once, naming it", async () => {
    const dir = tempDir();
    const nested = join(dir, "a", "b", "q.safetensors");
    const ok = await cli(rtn(nested));
    expect(ok.code).toBe(0);
    expect(existsSync(nested)).toBe(true);
    writeFileSync(join(dir, "plain"), "x");
    const under = join(dir, "plain", "q.safetensors");
    const r = await cli(rtn(under));
    expect(r.code).toBe(1);
    expect(r.err).toContain(`-o ${under}: cannot create its folder ${join(dir, "plain")}`);
    expect(r.err).toMatch(/EEXIST|ENOTDIR/); // mkdir -p reports a file in the way as EEXIST on Linux
  }, 60_000);

  it("a stale tokenizer.json (another model's) beside the output is refused, and removed with --force", async () => {
    const dir = tempDir();
    const out = join(dir, "q.safetensors");
    writeFileSync(join(dir, "tokenizer.json"), '{"model":{"type":"BPE","vocab":{}}}');
    writeFileSync(join(dir, "tokenizer_config.json"), "{}");
    writeFileSync(join(dir, "notes.txt"), "mine");
    const r = await cli(rtn(out));
    expect(r.code).toBe(1);
    expect(r.err).toContain(join(dir, "tokenizer.json"));
    expect(r.err).toContain(join(dir, "tokenizer_config.json"));
    expect(r.err).toContain("--force");
    expect(existsSync(out)).toBe(false); // refused before any work
    const f = await cli(rtn(out, "--force", "--json"));
    expect(f.code).toBe(0);
    const s = JSON.parse(f.out);
    expect(s.tokenizer).toBe(join(dir, "tok512.bin"));
    expect(s.tokenizerRemoved.sort()).toEqual(
      [join(dir, "tokenizer.json"), join(dir, "tokenizer_config.json")].sort(),
    );
    expect(readdirSync(dir).sort()).toEqual(["notes.txt", "q.safetensors", "tok512.bin"]);
    // the checkpoint now loads with the model's own tokenizer
    const g = await cli(["generate", out, "--temperature", "0", "--steps", "20", "--threads", "1"]);
    expect(g.code).toBe(0);
    expect(g.out.startsWith("Once upon a time")).toBe(true);
  }, 60_000);

  it("a different tok512.bin is refused and replaced with --force; an identical one is left alone", async () => {
    const dir = tempDir();
    const out = join(dir, "q.safetensors");
    const other = Buffer.from(readFileSync(TOK));
    other[other.length - 1] ^= 1; // another tokenizer with the same vocabulary size
    writeFileSync(join(dir, "tok512.bin"), other);
    const r = await cli(rtn(out));
    expect(r.code).toBe(1);
    expect(r.err).toContain(`already holds ${join(dir, "tok512.bin")}, not the tokenizer of this model`);
    expect(readFileSync(join(dir, "tok512.bin")).equals(other)).toBe(true);
    const f = await cli(rtn(out, "--force"));
    expect(f.code).toBe(0);
    expect(f.out).toContain(`copied the tokenizer to ${join(dir, "tok512.bin")}`);
    expect(readFileSync(join(dir, "tok512.bin")).equals(readFileSync(TOK))).toBe(true);

    const dir2 = tempDir();
    writeFileSync(join(dir2, "tok512.bin"), readFileSync(TOK));
    const same = await cli(rtn(join(dir2, "q.safetensors"), "--json"));
    expect(same.code).toBe(0);
    expect(JSON.parse(same.out).tokenizer).toBeUndefined();
    expect(JSON.parse(same.out).tokenizerRemoved).toEqual([]);
  }, 60_000);
});

describe("planTokenizerFiles", () => {
  it("a Hugging Face tokenizer.json is written with its config; a tok<vocab>.bin beside would shadow it", () => {
    const src = tempDir();
    writeFileSync(join(src, "tokenizer.json"), "{}");
    writeFileSync(join(src, "tokenizer_config.json"), '{"a":1}');
    const dir = tempDir();
    writeFileSync(join(dir, "tok32000.bin"), "x");
    writeFileSync(join(dir, "tok999.bin"), "another vocabulary size: never picked, left alone");
    const p = planTokenizerFiles(join(dir, "q.safetensors"), 32000, join(src, "tokenizer.json"));
    expect(p.tokenizerName).toBe("tokenizer.json");
    expect(p.copies).toEqual([
      { from: join(src, "tokenizer.json"), to: join(dir, "tokenizer.json") },
      { from: join(src, "tokenizer_config.json"), to: join(dir, "tokenizer_config.json") },
    ]);
    expect(p.remove).toEqual([join(dir, "tok32000.bin")]);
    expect(p.conflicts).toEqual([join(dir, "tok32000.bin")]);
  });

  it("the side files travel too (generation_config.json: export hf's bos / eos ids), and another model's are stale", async () => {
    const family = sharedPath("fixtures/hf-families/llama3");
    const dir = tempDir();
    writeFileSync(join(dir, "special_tokens_map.json"), '{"another":"model"}');
    const q = join(dir, "q.safetensors");
    const r = await cli([
      "quantize",
      family,
      "--bits",
      "4",
      "--method",
      "rtn",
      "-o",
      q,
      "--quiet",
      "--force",
    ]);
    expect(r.code).toBe(0);
    for (const f of ["tokenizer_config.json", "chat_template.jinja", "generation_config.json"])
      expect(readFileSync(join(dir, f)).equals(readFileSync(join(family, f)))).toBe(true);
    expect(existsSync(join(dir, "special_tokens_map.json"))).toBe(false); // the fixture has none
    const hf = join(dir, "hf");
    expect((await cli(["export", "hf", q, "-o", hf, "--quiet"])).code).toBe(0);
    const cfg = JSON.parse(readFileSync(join(hf, "config.json"), "utf8"));
    const gen = JSON.parse(readFileSync(join(family, "generation_config.json"), "utf8"));
    expect([cfg.bos_token_id, cfg.eos_token_id]).toEqual([gen.bos_token_id, gen.eos_token_id]);
  }, 120_000);

  it("a llama2.c tokenizer under another name is written as tok<vocab>.bin; without one every tokenizer file is stale", () => {
    const src = tempDir();
    writeFileSync(join(src, "my-tokenizer.bin"), "t");
    const dir = tempDir();
    const p = planTokenizerFiles(join(dir, "q.safetensors"), 512, join(src, "my-tokenizer.bin"));
    expect(p.copies).toEqual([{ from: join(src, "my-tokenizer.bin"), to: join(dir, "tok512.bin") }]);
    expect(p.conflicts).toEqual([]);
    writeFileSync(join(dir, "tokenizer.bin"), "t"); // identical bytes under another searched name: harmless
    writeFileSync(join(dir, "tokenizer.json"), "{}");
    const gguf = planTokenizerFiles(join(dir, "q.safetensors"), 512, undefined);
    expect(gguf.copies).toEqual([]);
    expect(gguf.remove).toEqual([join(dir, "tokenizer.bin"), join(dir, "tokenizer.json")]);
    const withTok = planTokenizerFiles(join(dir, "q.safetensors"), 512, join(src, "my-tokenizer.bin"));
    expect(withTok.remove).toEqual([join(dir, "tokenizer.json")]);
  });
});

describe("int21 quantize --method: the quantizer registry", () => {
  it("offers every registered quantizer; a user quantizer runs through the sequential pipeline", async () => {
    const seen: { K: number; hessian: boolean }[] = [];
    registerQuantizer(
      "test-half-range",
      (params) => {
        for (const k of Object.keys(params)) throw new Error(`test-half-range takes no option ${k}`);
        return {
          name: "test-half-range",
          needsHessian: true,
          quantize(w, N, K, f, o) {
            seen.push({ K, hessian: o?.hessian?.K === K });
            return rtnQuantize(w, N, K, f, { mseClip: true, maxShrink: 0.5 });
          },
        };
      },
      "RTN over a searched range (registered by this test)",
    );
    try {
      const help = (await cli(["quantize", "--help"])).out.replace(/\s+/g, " ");
      expect(help).toContain("test-half-range: RTN over a searched range (registered by this test)");
      expect(help).toContain('(choices: "rtn", "gptq", "test-half-range", default: "gptq")');
      const dir = tempDir();
      const out = join(dir, "q.safetensors");
      const noCalib = await cli(["quantize", MODEL, "--method", "test-half-range", "-o", out, "--quiet"]);
      expect(noCalib.code).toBe(2);
      expect(noCalib.err).toContain("--calib <text> is required with --method test-half-range");
      const args = ["quantize", MODEL, "--bits", "3", "--method", "test-half-range", "--calib", CALIB];
      const r = await cli([
        ...args,
        "--calib-windows",
        "2",
        "-o",
        out,
        "--quiet",
        "--threads",
        "1",
        "--json",
      ]);
      expect(r.code, r.err).toBe(0);
      expect(seen).toHaveLength(35);
      expect(seen.every((s) => s.hessian)).toBe(true);
      const s = JSON.parse(r.out);
      expect(s.method).toBe("test-half-range");
      expect(s.format).toBe("int3-g64-asym-f16");
      // the error report compares it with RTN on the same calibration activations
      expect(s.layers).toHaveLength(35);
      for (const l of s.layers) expect(l.rtnRelError).toBeGreaterThan(0);
      const act = await cli([...args, "--act-order", "-o", out, "--force"]);
      expect(act.code).toBe(2);
      expect(act.err).toContain(
        "--act-order needs --method gptq or another quantizer that takes it (test-half-range takes no option actOrder)",
      );
    } finally {
      unregisterQuantizer("test-half-range");
    }
    const gone = await cli([
      "quantize",
      MODEL,
      "--method",
      "test-half-range",
      "-o",
      join(tempDir(), "x.safetensors"),
    ]);
    expect(gone.code).toBe(2);
    expect(gone.err).toMatch(/Allowed choices are rtn, gptq\b/);
  }, 60_000);
});

describe("int21 quantize --format <name>", () => {
  it("takes any registered format by name (a codebook format here) and reports it", async () => {
    const out = join(tempDir(), "nf4.safetensors");
    const r = await cli([
      "quantize",
      MODEL,
      "--format",
      "nf4-g64-f16",
      "--method",
      "rtn",
      "-o",
      out,
      "--json",
      "--quiet",
      "--threads",
      "1",
    ]);
    expect(r.code, r.err).toBe(0);
    expect(JSON.parse(r.out).format).toBe("nf4-g64-f16");
    const inspect = await cli(["inspect", out]);
    expect(inspect.out).toMatch(/nf4-g64-f16/);
  }, 60_000);

  it("an unknown name lists the registered ones; --format with --bits is a usage error", async () => {
    const bad = await cli([
      "quantize",
      MODEL,
      "--format",
      "int5-g64",
      "--method",
      "rtn",
      "-o",
      join(tempDir(), "x.safetensors"),
    ]);
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(
      /--format int5-g64: unknown format "int5-g64"; known formats: .*int2-g64-asym-f16.*iq4_nl/,
    );
    const both = await cli([
      "quantize",
      MODEL,
      "--format",
      "iq4_nl",
      "--bits",
      "4",
      "-o",
      join(tempDir(), "y.safetensors"),
    ]);
    expect(both.code).toBe(2);
    expect(both.err).toMatch(/--format.*cannot be used with.*--bits/);
  });
});

describe("int21 quantize --format q2_k --method gptq → lrec → export gguf (the INT2.1 product as llama.cpp runs it)", () => {
  it("writes a Q2_K GGUF (blocks verbatim) + LoRA GGUF that read back to the LREC model's logits", async () => {
    const dir = tempDir();
    // a float model whose row lengths are multiples of 256 (k-quant super-blocks), with stories260K's tokenizer
    const config = {
      dim: 256,
      hiddenDim: 512,
      nLayers: 1,
      nHeads: 4,
      nKvHeads: 4,
      vocabSize: 512,
      seqLen: 128,
      ropeTheta: 10000,
      normEps: 1e-5,
      sharedClassifier: true,
    };
    const w = syntheticWeights(config, { seed: 5 });
    const emb = w.tokenEmbedding as Float32Array;
    for (let i = 0; i < emb.length; i++) emb[i] *= 0.2;
    const float = join(dir, "float");
    await exportHf(float, w);
    writeFileSync(join(float, "tok512.bin"), readFileSync(TOK));
    const data = join(dir, "text.txt");
    writeFileSync(data, readFileSync(CALIB, "utf8").slice(0, 20_000));
    const q2k = join(dir, "q2k.safetensors");
    const q = await cli([
      "quantize",
      float,
      "--format",
      "q2_k",
      "--method",
      "gptq",
      "--calib",
      data,
      "--calib-windows",
      "4",
      "--calib-len",
      "64",
      "-o",
      q2k,
      "--quiet",
      "--threads",
      "1",
    ]);
    expect(q.code, q.err).toBe(0);
    const lrec = join(dir, "lrec.safetensors");
    const l = await cli([
      "lrec",
      q2k,
      "--teacher",
      float,
      "--data",
      data,
      "--steps",
      "2",
      "--rank",
      "4",
      "--seq",
      "32",
      "--batch",
      "1",
      // no --no-train-scales: a Q2_K student's scales live in its blocks, so lrec trains the adapter only
      "--eval-tokens",
      "64",
      "-o",
      lrec,
      "--quiet",
      "--threads",
      "1",
    ]);
    expect(l.code, l.err).toBe(0);
    const gguf = join(dir, "gg", "model.gguf");
    const e = await cli([
      "export",
      "gguf",
      lrec,
      "-o",
      gguf,
      "--lora-type",
      "F32",
      "--embedding-type",
      "F32",
      "--quiet",
    ]);
    expect(e.code, e.err).toBe(0);
    const file = parseGguf(new Uint8Array(readFileSync(gguf)), gguf);
    for (const n of file.names.filter((x) => x.startsWith("blk.") && !x.includes("norm")))
      expect(file.tensors[n].type, n).toBe("Q2_K");
    // int21's read-back of the two files gives the LREC checkpoint's logits
    const student = await loadModel(lrec);
    expect(student.adapters).toBeDefined();
    attachCheckpointAdapters(student.weights, student.adapters!, lrec);
    const base = await loadGguf(gguf, { keepPacked: true });
    expect(
      base.tensors.filter((t) => t.type === "Q2_K").every((t) => t.loadedAs === "packed" && t.exact),
    ).toBe(true);
    const lm = new LoRAModel(llamaModules(base.weights));
    await loadGgufLora(join(dir, "gg", "model.lrec.lora.gguf"), lm);
    setLlamaModules(base.weights, lm.modules);
    const text = join(dir, "eval.txt");
    writeFileSync(text, readFileSync(CALIB, "utf8").slice(20_000, 26_000));
    const ev = async (m: string) =>
      JSON.parse(
        (
          await cli([
            "eval",
            m,
            "--data",
            text,
            "--ctx",
            "64",
            "--llama-cpp",
            "--json",
            "--quiet",
            "--threads",
            "1",
          ])
        ).out,
      );
    const mine = await ev(lrec);
    expect(mine.protocol).toBe("llama-perplexity");
    const ids = [1, 403, 407, 261, 378, 5, 77];
    const logitsOf = (m: typeof base.weights) =>
      forward(m, createRunState(m.config, { maxRows: ids.length }), ids, 0, "all").slice();
    const a = logitsOf(base.weights);
    const b = logitsOf(student.weights);
    let d = 0;
    for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
    expect(d).toBeLessThan(1e-4);
    expect(Number.isFinite(mine.perplexity)).toBe(true);
  }, 300_000);
});

describe("int21 quantize --format q2_k on rows that are not whole 256-weight blocks", () => {
  it("falls back as llama-quantize does, says which projections, and counts their bits", async () => {
    const dir = tempDir();
    const out = join(dir, "q2k.safetensors");
    const args = [
      "quantize",
      MODEL,
      "--format",
      "q2_k",
      "--method",
      "rtn",
      "-o",
      out,
      "--quiet",
      "--threads",
      "1",
    ];
    const r = await cli(args);
    expect(r.code).toBe(0);
    // stories260K: q/k/v/o/gate/up rows are 64 wide (IQ4_NL's 32-blocks fit), down rows 172 (none fits)
    expect(r.out).toMatch(/30 projection\(s\) stored as iq4_nl-ggml .*0\.wq/);
    expect(r.out).toMatch(/5 projection\(s\) stored as float .*0\.w2/);
    const j = await cli([...args, "--force", "--json"]);
    const s = JSON.parse(j.out);
    expect(s.layers.filter((l: { fallback?: string }) => l.fallback === "float")).toHaveLength(5);
    // bits of the stored projections, not q2_k's 2.625
    expect(s.projectionBitsPerWeight).toBeGreaterThan(4.5);
    const m = await loadModel(out);
    const w2 = m.weights.layers[0].w2 as unknown as { weight?: Float32Array };
    expect(w2.weight).toBeInstanceOf(Float32Array);
  }, 120_000);
});
