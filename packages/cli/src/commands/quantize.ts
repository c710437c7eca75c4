// `int21 quantize <model> --bits 2|3|4|8 --group 64 --method <quantizer> [--act-order] --calib <text> -o <out>`
import { existsSync, mkdirSync, readFileSync, statSync } from "node:fs";
import { rm } from "node:fs/promises";
import { basename, dirname, extname, join, resolve } from "node:path";
import { writeFileAtomic } from "@int21/io";
import { type LinearErrorReport, calibrationWindows } from "@int21/model-llama";
import {
  detectModelFile,
  openGgufReader,
  openHfReader,
  openLlama2cReader,
  quantizeCheckpoint,
  saveInt21Checkpoint,
} from "@int21/loaders";
import {
  type Quantizer,
  getQuantizer,
  listQuantizers,
  type FormatRecord,
  getFormat,
  makeFormat,
  needsCalibration,
  quantizerNames,
} from "@int21/quant-kernels";
import { Command, Option } from "commander";
import { type CliIo, CliError, EXIT, UsageError } from "../cli-io";
import { runProgram, threadsOption, withBackend, writeJson } from "../command";
import { formatBytes, textTable } from "../format-table";
import { findTokenizer, ggufTokenizer, loadTokenizer, resolveModelPath } from "../model-loading";
import { intIn, intOneOf } from "../options";
import { progressBar } from "../progress";

/** The options of `int21 quantize` (commander program; also the source of its `--help`). */
export function quantizeProgram(): Command {
  return new Command("quantize")
    .description(
      "quantize a float model (llama2.c .bin or Hugging Face directory/id) into an int21 packed checkpoint",
    )
    .argument("<model>", "float model: llama2.c .bin, Hugging Face directory, or Hugging Face id")
    .addOption(
      new Option("--bits <n>", "bits per weight code: 2, 3, 4 or 8")
        .argParser(intOneOf([2, 3, 4, 8] as const))
        .default(2),
    )
    .addOption(
      new Option("--group <n>", "input columns per scale group: 32, 64, 128 or -1 (one group per row)")
        .argParser(intOneOf([32, 64, 128, -1] as const))
        .default(64),
    )
    .addOption(
      new Option(
        "--method <name>",
        `the quantizer — ${listQuantizers()
          .map((q) => (q.description ? `${q.name}: ${q.description}` : q.name))
          .join("; ")}`,
      )
        .choices(quantizerNames())
        .default("gptq"),
    )
    .option("--act-order", "GPTQ: quantize columns by decreasing Hessian diagonal", false)
    .option("--sym", "symmetric codes (no stored zero points)", false)
    .addOption(
      new Option(
        "--format <name>",
        "any registered format by name instead of --bits/--group/--sym: e.g. int2-g64-asym-f16, nf4-g64-f16, iq4_nl",
      ).conflicts(["bits", "group", "sym"]),
    )
    .option(
      "--calib <text>",
      "calibration text file (required when the quantizer needs calibration, as gptq does; otherwise it only measures the error)",
    )
    .addOption(
      new Option("--calib-windows <n>", "calibration windows cut from the text")
        .argParser(intIn(1, 4096))
        .default(16),
    )
    .addOption(
      new Option("--calib-len <n>", "tokens per calibration window (default: min(256, seqLen))").argParser(
        intIn(2),
      ),
    )
    .option("--tokenizer <file>", "tokenizer for --calib (default: found beside the model)")
    .requiredOption("-o, --output <file>", "the int21 checkpoint to write (.safetensors)")
    .option(
      "--force",
      "replace an existing output, and replace or remove other tokenizer files beside it",
      false,
    )
    .addOption(threadsOption())
    .option("--json", "print the result as JSON", false)
    .option("--quiet", "no progress bars", false);
}

/** Options of {@link quantize}, as parsed. */
interface QuantizeOpts {
  bits: 2 | 3 | 4 | 8;
  group: 32 | 64 | 128 | -1;
  method: string;
  actOrder: boolean;
  sym: boolean;
  format?: string;
  calib?: string;
  calibWindows: number;
  calibLen?: number;
  tokenizer?: string;
  output: string;
  force: boolean;
  threads?: number;
  json: boolean;
  quiet: boolean;
}

/**
 * `int21 quantize`: quantizes every layer projection with the quantizer registered as `--method` (RTN, GPTQ, or one
 * added with `registerQuantizer` in the same process), writes the int21 checkpoint and the model's
 * tokenizer beside it (see {@link planTokenizerFiles}), and prints the file size, bits per weight and each
 * projection's relative output error on the calibration windows. An existing output, or a different tokenizer
 * beside it, is refused before any work unless `--force`. Returns the exit code.
 */
export function quantize(argv: readonly string[], io: CliIo): Promise<number> {
  return runProgram(quantizeProgram(), argv, io, async ([model], o) =>
    run(model as string, o as unknown as QuantizeOpts, io),
  );
}

/** The quantizer `--method` names, with `--act-order` when given; a setting it does not take is a usage error. */
function makeQuantizer(o: QuantizeOpts): Quantizer {
  try {
    return getQuantizer(o.method, o.actOrder ? { actOrder: true } : {});
  } catch (e) {
    const msg = (e as Error).message.replace(/^quant-kernels: /, "");
    if (o.actOrder)
      throw new UsageError(`--act-order needs --method gptq or another quantizer that takes it (${msg})`);
    throw new UsageError(`--method ${o.method}: ${msg}`);
  }
}

async function run(spec: string, o: QuantizeOpts, io: CliIo): Promise<number> {
  const quantizer = makeQuantizer(o);
  if (needsCalibration(quantizer) && o.calib === undefined)
    throw new UsageError(`--calib <text> is required with --method ${o.method}`);
  if (o.calib !== undefined && !existsSync(o.calib)) throw new CliError(`--calib ${o.calib}: no such file`);
  checkOutput(o.output, o.force);
  const path = await resolveModelPath(spec, io, { quiet: o.quiet });
  if (resolve(path) === resolve(o.output))
    throw new CliError(`-o ${o.output} is the input model; write the checkpoint to another file`);
  const kind = await detectModelFile(path).catch((e: Error) => {
    throw new CliError(e.message);
  });
  if (kind === "int21")
    throw new CliError(`${path}: an int21 checkpoint is already quantized; start from a float model`);
  let format: FormatRecord;
  try {
    format =
      o.format !== undefined
        ? getFormat(o.format)
        : makeFormat({ bits: o.bits, groupSize: o.group, symmetric: o.sym, scaleDtype: "f16" });
  } catch (e) {
    throw new UsageError(`--format ${o.format}: ${(e as Error).message.replace(/^quant-kernels: /, "")}`);
  }

  return withBackend(o.threads, async (backend) => {
    let calib: Int32Array[] | undefined;
    let tokPath: string | undefined;
    // the config (vocabulary, context) from the header only
    const reader =
      kind === "hf"
        ? await openHfReader(path)
        : kind === "gguf"
          ? await openGgufReader(path)
          : openLlama2cReader(path);
    const config = reader.config;
    await reader.close();
    try {
      tokPath = findTokenizer(path, config.vocabSize, o.tokenizer);
    } catch (e) {
      // a GGUF model carries its vocabulary; other models need a tokenizer file for --calib
      if (o.calib !== undefined && kind !== "gguf") throw e;
    }
    const tokPlan = planTokenizerFiles(o.output, config.vocabSize, tokPath);
    if (tokPlan.conflicts.length > 0 && !o.force)
      throw new CliError(
        `${dirname(o.output)} already holds ${tokPlan.conflicts.join(", ")}, not the tokenizer of this model${tokPath ? ` (${tokPath})` : ""}; ` +
          "it would be loaded with the new checkpoint. Pass --force to replace or remove it, or write to another folder",
      );
    if (o.calib !== undefined) {
      const tok =
        tokPath !== undefined
          ? loadTokenizer(tokPath, config.vocabSize)
          : await ggufTokenizer(path, config.vocabSize);
      const len = o.calibLen ?? Math.min(256, config.seqLen);
      if (len > config.seqLen)
        throw new UsageError(`--calib-len ${len} is longer than the model's context (${config.seqLen})`);
      const ids = tok.encode(readFileSync(o.calib, "utf8").replace(/<\|endoftext\|>/g, "\n"), { bos: false });
      try {
        calib = calibrationWindows(ids, o.calibWindows, len, tok.bosId);
      } catch (e) {
        throw new CliError(`--calib ${o.calib}: ${(e as Error).message}`);
      }
    }
    const bar = progressBar(io, `${o.method} ${format.name}`, { quiet: o.quiet });
    const t0 = performance.now();
    let res: Awaited<ReturnType<typeof quantizeCheckpoint>>;
    try {
      res = await quantizeCheckpoint(path, {
        format,
        quantizer,
        ...(calib ? { calib } : {}),
        backend,
        onProgress: (p) => bar.update(p.done, p.total, `layer ${p.layer} ${p.name}`),
      });
    } catch (e) {
      throw new CliError((e as Error).message);
    }
    bar.finish();
    const seconds = (performance.now() - t0) / 1000;
    await saveInt21Checkpoint(o.output, res.weights);
    let tokenizerCopied: string | undefined;
    for (const { from, to } of tokPlan.copies) {
      await writeFileAtomic(to, readFileSync(from));
      if (basename(to) === tokPlan.tokenizerName) tokenizerCopied = to;
    }
    for (const f of tokPlan.remove) await rm(f, { force: true });
    const c = res.weights.config;
    let projWeights = 0;
    let projBits = 0;
    // A projection's bits: the asked format's, or its fallback's (a k-quant whose blocks do not fit the row).
    const fallback = new Map(res.report.map((r) => [`${r.layer}.${r.name}`, r.fallback]));
    const bitsOf = (layer: number, name: string, K: number) => {
      const f = fallback.get(`${layer}.${name}`);
      return f === undefined
        ? format.bitsPerWeightAt(K)
        : f === "float"
          ? 32
          : getFormat(f).bitsPerWeightAt(K);
    };
    res.weights.layers.forEach((L, layer) => {
      for (const name of ["wq", "wk", "wv", "wo", "w1", "w2", "w3"] as const) {
        const l = L[name];
        projWeights += l.outFeatures * l.inFeatures;
        projBits += bitsOf(layer, name, l.inFeatures) * l.outFeatures * l.inFeatures;
      }
    });
    const floatParams =
      c.vocabSize * c.dim * (c.sharedClassifier ? 1 : 2) + c.dim * (2 * c.nLayers + 1) + projWeights;
    const fileBytes = statSync(o.output).size;
    const summary = {
      output: o.output,
      format: format.name,
      method: o.method,
      actOrder: o.actOrder,
      calibrationTokens: calib ? calib.reduce((a, w) => a + w.length, 0) : 0,
      fileBytes,
      float32Bytes: floatParams * 4,
      projectionBitsPerWeight: projBits / projWeights,
      modelBitsPerWeight: (fileBytes * 8) / floatParams,
      seconds,
      tokenizer: tokenizerCopied,
      tokenizerRemoved: tokPlan.remove,
      layers: res.report,
    };
    if (o.json) writeJson(io, summary);
    else printSummary(io, summary, res.report);
    return EXIT.ok;
  });
}

function printSummary(
  io: CliIo,
  s: {
    output: string;
    format: string;
    method: string;
    fileBytes: number;
    float32Bytes: number;
    projectionBitsPerWeight: number;
    modelBitsPerWeight: number;
    seconds: number;
    tokenizer?: string | undefined;
    tokenizerRemoved: string[];
  },
  report: LinearErrorReport[],
): void {
  const out = io.stdout;
  out.write(`wrote ${s.output} (${s.format}, ${s.method}, ${s.seconds.toFixed(1)} s)\n`);
  out.write(
    `size ${formatBytes(s.fileBytes)} (float32 ${formatBytes(s.float32Bytes)}, ${(s.float32Bytes / s.fileBytes).toFixed(2)}× smaller); ` +
      `${s.projectionBitsPerWeight.toFixed(3)} bits per projection weight, ${s.modelBitsPerWeight.toFixed(3)} bits per model parameter (embedding and norms stay float32)\n`,
  );
  const fallbacks = report.filter((r) => r.fallback !== undefined);
  if (fallbacks.length > 0) {
    const by = new Map<string, string[]>();
    for (const r of fallbacks) by.set(r.fallback!, [...(by.get(r.fallback!) ?? []), `${r.layer}.${r.name}`]);
    for (const [f, where] of by)
      out.write(
        `${where.length} projection(s) stored as ${f} (rows not a whole number of ${s.format}'s blocks, as llama-quantize falls back): ${where.slice(0, 6).join(", ")}${where.length > 6 ? ", …" : ""}\n`,
      );
  }
  if (s.tokenizer) out.write(`copied the tokenizer to ${s.tokenizer}\n`);
  for (const f of s.tokenizerRemoved) out.write(`removed ${f} (another model's tokenizer; --force)\n`);
  if (report.some((r) => r.relError !== undefined)) {
    const gptq = report.some((r) => r.rtnRelError !== undefined);
    out.write("\nrelative output error ‖XWᵀ − XŴᵀ‖ / ‖XWᵀ‖ on the calibration activations:\n");
    out.write(
      textTable(
        gptq ? ["layer", "proj", "error", "rtn error"] : ["layer", "proj", "error"],
        report.map((r) => [
          r.layer,
          r.name,
          (r.relError ?? Number.NaN).toFixed(4),
          ...(gptq ? [(r.rtnRelError ?? Number.NaN).toFixed(4)] : []),
        ]),
      ),
    );
  } else out.write("(pass --calib <text> to measure each projection's output error)\n");
}

/**
 * Refuses a directory as `-o` and an existing output without `--force`; creates the output's folder when missing
 * (before any work, so a path that cannot hold a file fails at once, naming it).
 */
function checkOutput(output: string, force: boolean): void {
  let st: ReturnType<typeof statSync> | undefined;
  try {
    st = statSync(output);
  } catch {
    try {
      mkdirSync(dirname(output), { recursive: true });
    } catch (e) {
      throw new CliError(
        `-o ${output}: cannot create its folder ${dirname(output)}: ${(e as Error).message}`,
      );
    }
    return;
  }
  if (st.isDirectory())
    throw new CliError(`-o ${output} is a directory; name the .safetensors file to write`);
  if (!force) throw new CliError(`-o ${output} already exists; pass --force to replace it`);
}

/** The names the CLI's tokenizer search looks for beside a model (in this order; then any `tok*.bin`). */
function tokenizerNames(vocabSize: number): string[] {
  return [`tok${vocabSize}.bin`, "tokenizer.bin", "tokenizer.json"];
}

/** What {@link planTokenizerFiles} decided for the folder of the output. */
interface TokenizerPlan {
  /** The name the model's tokenizer gets beside the output (empty without one). */
  tokenizerName: string;
  /** Files to write beside the output (missing, or different from the model's). */
  copies: { from: string; to: string }[];
  /** Tokenizer files beside the output that are not the model's and would be loaded with it (removed with --force). */
  remove: string[];
  /** Existing files that differ from what the model needs: the copies that replace one, and `remove`. */
  conflicts: string[];
}

function sameBytes(a: string, b: string): boolean {
  try {
    return readFileSync(a).equals(readFileSync(b));
  } catch {
    return false;
  }
}

/**
 * The files beside a Hugging Face `tokenizer.json` that travel with it: its settings, the special-token map,
 * a chat template, and `generation_config.json` (the bos / eos / pad ids `int21 export hf` writes into
 * config.json).
 */
const HF_SIDE_FILES = [
  "tokenizer_config.json",
  "special_tokens_map.json",
  "chat_template.jinja",
  "generation_config.json",
];

/**
 * Decides the tokenizer files beside `output` so that loading the checkpoint finds this model's tokenizer and no
 * other: the model's tokenizer (`tokPath`) is written under the name the tokenizer search tries for it
 * (`tok<vocab>.bin` for a llama2.c tokenizer unless it is `tokenizer.bin`, `tokenizer.json` for a Hugging Face one,
 * with the {@link HF_SIDE_FILES} beside it); each other file of those names (`tok<vocab>.bin`, `tokenizer.bin`,
 * `tokenizer.json`, the side files) already there and different from the model's is another model's
 * tokenizer: stale. Files identical to the model's are left alone. Without `tokPath` (a GGUF model carrying its
 * vocabulary) every such file is stale.
 */
export function planTokenizerFiles(
  output: string,
  vocabSize: number,
  tokPath: string | undefined,
): TokenizerPlan {
  const dir = dirname(output);
  const names = tokenizerNames(vocabSize);
  const wanted = new Map<string, string>(); // name beside the output → source file
  let tokenizerName = "";
  if (tokPath !== undefined) {
    const isJson = extname(tokPath) === ".json";
    tokenizerName = names.includes(basename(tokPath))
      ? basename(tokPath)
      : isJson
        ? "tokenizer.json"
        : names[0];
    wanted.set(tokenizerName, tokPath);
    for (const side of HF_SIDE_FILES) {
      const f = join(dirname(tokPath), side);
      if (isJson && existsSync(f)) wanted.set(side, f);
    }
  }
  const copies: { from: string; to: string }[] = [];
  const remove: string[] = [];
  const conflicts: string[] = [];
  for (const name of [...names, ...HF_SIDE_FILES]) {
    const to = join(dir, name);
    const from = wanted.get(name);
    const exists = existsSync(to);
    if (from !== undefined) {
      if (exists && (resolve(from) === resolve(to) || sameBytes(from, to))) continue;
      copies.push({ from, to });
      if (exists) conflicts.push(to);
    } else if (exists && !(tokPath !== undefined && sameBytes(tokPath, to))) {
      remove.push(to);
      conflicts.push(to);
    }
  }
  return { tokenizerName, copies, remove, conflicts };
}
