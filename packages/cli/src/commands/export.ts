// `int21 export gguf|hf|peft <model> -o <path> [--adapter <dir>] [--merge [into]]`: artifacts for llama.cpp,
// Ollama, transformers and PEFT, through model-llama's exportModel.
import { existsSync, readFileSync, statSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { writeFileAtomic } from "@int21/io";
import type { LoRAModel } from "@int21/lora";
import type { LlamaWeights } from "@int21/model-llama";
import {
  type ExportModelReport,
  type ExportedFile,
  HfTokenizer,
  Llama2cTokenizer,
  baseWeightsOf,
  exportGptqHf,
  gptqZeroGroups,
  exportModel,
  llama2cSentencePieceModel,
  llama2cTokenizerFiles,
  saveLlamaAdapter,
} from "@int21/loaders";
import { Command, Option } from "commander";
import { type CliIo, EXIT, UsageError } from "../cli-io";
import { runProgram, writeJson } from "../command";
import { attachAdapterDir, ggufTokenizer, loadTokenizer, openModel } from "../model-loading";

const TARGETS = ["gguf", "hf", "peft"] as const;
const GGUF_TYPES = ["F32", "F16", "Q8_0", "Q4_0", "Q4_1"] as const;
const HF_DTYPES = ["F32", "F16", "BF16"] as const;
/** Files of a Hugging Face folder that `export hf` copies beside the weights. */
const HF_SIDE_FILES = [
  "tokenizer.json",
  "tokenizer_config.json",
  "tokenizer.model",
  "special_tokens_map.json",
  "generation_config.json",
  "chat_template.jinja",
];

/** The options of `int21 export`. */
export function exportProgram(): Command {
  return new Command("export")
    .description(
      "write a model (and its adapters) for a peer: gguf (llama.cpp, Ollama), hf (transformers), peft (adapters)",
    )
    .addArgument(
      new Command().createArgument("<target>", "gguf, hf or peft").choices(TARGETS as unknown as string[]),
    )
    .argument("<model>", "int21 checkpoint, llama2.c .bin, GGUF file or Hugging Face directory")
    .requiredOption(
      "-o, --output <path>",
      "gguf: the .gguf file (adapters and a Modelfile go beside it); hf, peft: the folder",
    )
    .option("--adapter <dir>", "a PEFT LoRA adapter directory to attach first (stacked on stored adapters)")
    .option(
      "--merge [into]",
      "fold the adapters into the weights (in float; a packed base is dequantized) instead of writing adapter files; gguf: the merged projections in --type, or in <into>: f16 (one lossless file, the rest stays packed), f32, or a ggml block format (q2_k … q6_k, q4_0, q8_0, …: re-quantized, refused where that erases the correction)",
      false,
    )
    .option(
      "--allow-lossy-merge",
      "gguf --merge into a quantized type: write it even where the rounding error exceeds the merged correction",
      false,
    )
    .addOption(
      new Option("--type <type>", "gguf: type of the 2-D tensors").choices(GGUF_TYPES).default("F16"),
    )
    .addOption(
      new Option("--embedding-type <type>", "gguf: type of token_embd (a quantized table costs accuracy)")
        .choices(GGUF_TYPES)
        .default("F16"),
    )
    .addOption(
      new Option("--lora-type <type>", "gguf: type of the LoRA GGUF tensors")
        .choices(["F32", "F16"])
        .default("F16"),
    )
    .addOption(new Option("--dtype <dtype>", "hf: tensor dtype").choices(HF_DTYPES).default("F32"))
    .addOption(
      new Option(
        "--adapter-dtype <dtype>",
        "hf, peft: dtype of the PEFT adapter tensors (F16/BF16 halve them)",
      )
        .choices(HF_DTYPES)
        .default("F32"),
    )
    .option(
      "--base-model <id>",
      "the adapters' base_model_name_or_path (default: the exported folder for hf, the adapter's own for peft)",
    )
    .option(
      "--gptq",
      "hf: write the packed projections in the GPTQ layout transformers/optimum load (qweight/qzeros/scales/g_idx + quantization_config) instead of float",
      false,
    )
    .addOption(
      new Option(
        "--gptq-format <format>",
        "hf --gptq: checkpoint_format; gptq stores zero − 1 (AutoGPTQ's, what transformers expects by default), gptq_v2 the zero itself (GPTQModel's); auto: gptq unless a group's zero point is 0",
      )
        .choices(["auto", "gptq", "gptq_v2"])
        .default("auto"),
    )
    .option(
      "--tokenizer <file>",
      "gguf: the tokenizer to embed; hf: a llama2.c tokenizer.bin to convert into tokenizer.json when none is beside the model (default: gguf: tok<vocab>.bin, tokenizer.bin, tokenizer.model or tokenizer.json beside the model, or the GGUF's own; hf: tok<vocab>.bin or tokenizer.bin beside it)",
    )
    .option("--json", "print the result as JSON", false)
    .option("--quiet", "no progress bars", false);
}

interface ExportOpts {
  output: string;
  adapter?: string;
  merge: boolean | string;
  allowLossyMerge: boolean;
  type: (typeof GGUF_TYPES)[number];
  embeddingType: (typeof GGUF_TYPES)[number];
  loraType: "F32" | "F16";
  dtype: (typeof HF_DTYPES)[number];
  adapterDtype: (typeof HF_DTYPES)[number];
  baseModel?: string;
  gptq: boolean;
  gptqFormat: "auto" | "gptq" | "gptq_v2";
  tokenizer?: string;
  json: boolean;
  quiet: boolean;
}

/** `int21 export`: prints each file written, and for gguf the llama.cpp command that runs it. */
export function exportCommand(argv: readonly string[], io: CliIo): Promise<number> {
  return runProgram(exportProgram(), argv, io, async ([target, model], opts) => {
    const o = opts as unknown as ExportOpts;
    const to = target as (typeof TARGETS)[number];
    if (to === "peft" && o.merge)
      throw new UsageError("--merge does not apply to export peft (it writes adapters)");
    if (o.gptq && to !== "hf") throw new UsageError("--gptq applies to export hf only");
    if (typeof o.merge === "string" && to !== "gguf")
      throw new UsageError(
        `--merge ${o.merge}: the storage of merged projections applies to export gguf (export hf merges in float: --merge alone)`,
      );
    if (o.gptq && o.merge)
      throw new UsageError(
        "--merge with --gptq: folding adapters into GPTQ codes would re-quantize them; drop --merge (the adapters are written as PEFT folders beside the GPTQ model)",
      );
    const m = await openModel(model as string, io, { quiet: o.quiet });
    let lora = m.lora;
    if (o.adapter !== undefined) lora = await attachAdapterDir(m.weights, o.adapter, lora);
    const notes: string[] = [];
    let tokenizer: Llama2cTokenizer | HfTokenizer | undefined;
    let copyFiles: string[] = [];
    if (to === "gguf") {
      const V = m.weights.config.vocabSize;
      const dir = statSync(m.path).isDirectory() ? m.path : dirname(m.path);
      // a SentencePiece tokenizer.model before tokenizer.json: llama.cpp's `llama` vocabulary keeps its scores
      const path =
        o.tokenizer ??
        [`tok${V}.bin`, "tokenizer.bin", "tokenizer.model", "tokenizer.json"]
          .map((n) => join(dir, n))
          .find((p) => existsSync(p));
      try {
        const tok =
          path !== undefined
            ? loadTokenizer(path, V)
            : /\.gguf$/i.test(m.path)
              ? await ggufTokenizer(m.path, V)
              : undefined;
        if (tok instanceof Llama2cTokenizer || tok instanceof HfTokenizer) tokenizer = tok;
        else
          notes.push(
            `the GGUF holds no tokenizer (none found beside ${m.path}; pass --tokenizer): llama.cpp cannot load it without one`,
          );
      } catch (e) {
        if (o.tokenizer !== undefined) throw e;
        notes.push(`the GGUF holds no tokenizer: ${(e as Error).message}`);
      }
    }
    /** A llama2.c tokenizer to convert into tokenizer.json for an hf export. */
    let convert: Llama2cTokenizer | undefined;
    if (to === "hf") {
      const dir = statSync(m.path).isDirectory() ? m.path : dirname(m.path);
      copyFiles = HF_SIDE_FILES.map((f) => join(dir, f)).filter((p) => existsSync(p));
      if (!copyFiles.some((p) => /tokenizer\.(json|model)$/.test(p))) {
        const V = m.weights.config.vocabSize;
        const path =
          o.tokenizer ?? [`tok${V}.bin`, "tokenizer.bin"].map((n) => join(dir, n)).find((p) => existsSync(p));
        const tok = path !== undefined ? loadTokenizer(path, V) : undefined;
        if (tok instanceof Llama2cTokenizer) convert = tok;
        else if (tok !== undefined)
          throw new UsageError(
            `--tokenizer ${path}: export hf converts a llama2.c tokenizer.bin; put a tokenizer.json or tokenizer.model beside the model to copy it instead`,
          );
        else
          notes.push(
            `no tokenizer.json, tokenizer.model or llama2.c tokenizer beside ${m.path}: the folder has weights and config only; add the tokenizer files before AutoTokenizer or convert_hf_to_gguf.py can read it`,
          );
      }
    }
    if (o.gptq && o.gptqFormat === "auto") {
      const zeros = gptqZeroGroups(baseWeightsOf(m.weights));
      if (zeros > 0)
        notes.push(
          `checkpoint_format gptq_v2: ${zeros} groups have a zero point of 0, which AutoGPTQ's gptq layout (zero − 1) cannot store; transformers reads gptq_v2 through GPTQModel`,
        );
    }
    const report = o.gptq
      ? await exportGptq(m.weights, lora, o, copyFiles)
      : await exportModel(m.weights, {
          to,
          out: o.output,
          ...(lora !== undefined ? { lora } : {}),
          merge: o.merge,
          allowLossyMerge: o.allowLossyMerge,
          ggufType: o.type,
          ggufEmbeddingType: o.embeddingType,
          ggufLoraType: o.loraType,
          dtype: o.dtype,
          adapterDtype: o.adapterDtype,
          copyFiles,
          ...(tokenizer !== undefined ? { tokenizer } : {}),
          ...(o.baseModel !== undefined ? { baseModel: o.baseModel } : {}),
        });
    if (convert !== undefined) {
      const out = resolve(o.output);
      const files = llama2cTokenizerFiles(convert, { maxLength: m.weights.config.seqLen });
      for (const [name, obj] of Object.entries(files)) {
        await writeFileAtomic(join(out, name), `${JSON.stringify(obj, null, 2)}\n`);
        report.files.push({ path: join(out, name), what: "tokenizer converted from llama2.c" });
      }
      // the SentencePiece model keeps the merge scores for convert_hf_to_gguf.py (its tokenizer.json path drops them)
      await writeFileAtomic(join(out, "tokenizer.model"), llama2cSentencePieceModel(convert));
      report.files.push({ path: join(out, "tokenizer.model"), what: "tokenizer converted from llama2.c" });
    }
    if (o.json) writeJson(io, { model: m.path, ...report, notes });
    else {
      for (const f of report.files) io.stdout.write(`wrote ${f.path} (${f.what})\n`);
      if (report.merged.length > 0) io.stdout.write(`merged adapters: ${report.merged.join(", ")}\n`);
      if (report.gguf !== undefined)
        io.stdout.write(
          `GGUF tensors: ${report.gguf.bitsPerWeight.toFixed(3)} bits per weight (projections ${report.gguf.projectionBitsPerWeight.toFixed(3)})\n`,
        );
      if (report.llamaCppCommand !== undefined) io.stdout.write(`run it: ${report.llamaCppCommand}\n`);
      for (const n of notes) io.stderr.write(`note: ${n}\n`);
    }
    return EXIT.ok;
  });
}

/**
 * `export hf --gptq`: the GPTQ folder (model-llama's exportGptqHf of the frozen base), the side files copied, and each
 * adapter as a PEFT folder `adapters/<name>/` whose base is the exported folder (as exportModel's hf export).
 */
async function exportGptq(
  weights: LlamaWeights,
  lora: LoRAModel | undefined,
  o: ExportOpts,
  copyFiles: readonly string[],
): Promise<ExportModelReport> {
  const out = resolve(o.output);
  const files: ExportedFile[] = [];
  const report: ExportModelReport = { to: "hf", files, adapters: [], merged: [] };
  const hf = await exportGptqHf(out, baseWeightsOf(weights), {
    dtype: o.dtype,
    checkpointFormat: o.gptqFormat,
  });
  for (const f of hf.files) files.push({ path: join(out, f), what: "Hugging Face GPTQ model" });
  for (const src of copyFiles) {
    const dst = join(out, basename(src));
    await writeFileAtomic(dst, readFileSync(src));
    files.push({ path: dst, what: "tokenizer / generation file" });
  }
  for (const name of lora?.adapterNames() ?? []) {
    const dir = join(out, "adapters", name.replace(/[^A-Za-z0-9_.-]/g, "_"));
    await saveLlamaAdapter(dir, lora!, weights, {
      name,
      baseModel: o.baseModel ?? out,
      dtype: o.adapterDtype,
    });
    files.push({ path: dir, what: `PEFT adapter "${name}"` });
    report.adapters.push(name);
  }
  return report;
}
