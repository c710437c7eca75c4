// `int21 inspect <file>`: what a checkpoint or adapter holds (format, shapes, dtypes, bits).
import { existsSync, readFileSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import {
  type FileProblem,
  type SafetensorsInfo,
  openGguf,
  openSafetensors,
  validateSafetensors,
} from "@int21/io";
import { PEFT_CONFIG_FILE, PEFT_WEIGHTS_FILE, parsePeftConfig, validatePeftAdapter } from "@int21/lora";
import { type LlamaConfig, llamaTensorSpecs } from "@int21/model-llama";
import {
  INT21_CHECKPOINT_FORMAT,
  detectModelFile,
  openHfReader,
  openLlama2cReader,
  validateModelFiles,
} from "@int21/loaders";
import { getFormat } from "@int21/quant-kernels";
import { Command } from "commander";
import { type CliIo, CliError, EXIT } from "../cli-io";
import { runProgram, writeJson } from "../command";
import { formatBytes, textTable } from "../format-table";

/** The options of `int21 inspect`. */
export function inspectProgram(): Command {
  return new Command("inspect")
    .description(
      "show what a model, int21 checkpoint or PEFT adapter holds: format, config, tensors, dtypes, bits",
    )
    .argument(
      "<file>",
      "llama2.c .bin, int21 checkpoint, Hugging Face directory, PEFT adapter directory, or any .safetensors file",
    )
    .option(
      "--check",
      "also read every weight and report NaN / infinite values (exit 1 listing every problem, else 'no problems')",
      false,
    )
    .option("--json", "print the result as JSON", false)
    .option("--all", "list every tensor (default: the first 24)", false);
}

/** One tensor as {@link inspectFile} lists it. */
export interface InspectedTensor {
  name: string;
  dtype: string;
  shape: number[];
  /** For int21 packed projections: the quantization format and its bits per weight. */
  format?: string;
  bitsPerWeight?: number;
}

/** What {@link inspectFile} finds. */
export interface Inspection {
  path: string;
  kind: "llama2c" | "hf" | "int21" | "gguf" | "peft-adapter" | "safetensors";
  bytes: number;
  config?: LlamaConfig | Record<string, unknown>;
  metadata?: Record<string, unknown>;
  tensors: InspectedTensor[];
}

function dirBytes(dir: string): number {
  return readdirSync(dir).reduce((a, n) => {
    const s = statSync(join(dir, n));
    return a + (s.isFile() ? s.size : 0);
  }, 0);
}

async function safetensorsInfo(path: string): Promise<SafetensorsInfo> {
  try {
    const f = await openSafetensors(path);
    await f.close();
    return f;
  } catch (e) {
    throw new CliError(
      (e as Error).message.includes(path) ? (e as Error).message : `${path}: ${(e as Error).message}`,
    );
  }
}

function listTensors(info: SafetensorsInfo): InspectedTensor[] {
  return info.names.map((n) => ({
    name: n,
    dtype: info.tensors[n].dtype,
    shape: [...info.tensors[n].shape],
  }));
}

function jsonMeta(meta: Readonly<Record<string, string>>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(meta)) {
    try {
      out[k] = JSON.parse(v);
    } catch {
      out[k] = v;
    }
  }
  return out;
}

/** Reads the headers of `path` (no tensor data) and describes it. Throws a {@link CliError} naming the file. */
export async function inspectFile(path: string): Promise<Inspection> {
  if (!existsSync(path)) throw new CliError(`${path}: no such file or directory`);
  if (statSync(path).isDirectory()) {
    if (existsSync(join(path, PEFT_CONFIG_FILE))) {
      const cfgText = readFileSync(join(path, PEFT_CONFIG_FILE), "utf8");
      let config: Record<string, unknown>;
      try {
        config = parsePeftConfig(cfgText, join(path, PEFT_CONFIG_FILE)) as unknown as Record<string, unknown>;
      } catch (e) {
        throw new CliError((e as Error).message);
      }
      const info = await safetensorsInfo(join(path, PEFT_WEIGHTS_FILE));
      return { path, kind: "peft-adapter", bytes: dirBytes(path), config, tensors: listTensors(info) };
    }
    const reader = await openHfReader(path).catch((e: Error) => {
      throw new CliError(e.message);
    });
    const tensors: InspectedTensor[] = [];
    const files = readdirSync(path).filter((n) => n.endsWith(".safetensors"));
    for (const f of files) tensors.push(...listTensors(await safetensorsInfo(join(path, f))));
    await reader.close();
    return { path, kind: "hf", bytes: dirBytes(path), config: reader.config, tensors };
  }
  const bytes = statSync(path).size;
  let kind: Awaited<ReturnType<typeof detectModelFile>> | "safetensors";
  try {
    kind = await detectModelFile(path);
  } catch (e) {
    const msg = (e as Error).message;
    if (!msg.includes("a safetensors file that is not an int21 checkpoint")) throw new CliError(msg);
    kind = "safetensors";
  }
  if (kind === "llama2c") {
    let reader: Awaited<ReturnType<typeof openLlama2cReader>>;
    try {
      reader = openLlama2cReader(path);
    } catch (e) {
      throw new CliError((e as Error).message);
    }
    const config = reader.config;
    await reader.close();
    const tensors = llamaTensorSpecs(config).map((t) => ({
      name: t.name,
      dtype: "F32",
      shape: [...t.shape],
    }));
    return { path, kind, bytes, config, tensors };
  }
  if (kind === "gguf") {
    let g: Awaited<ReturnType<typeof openGguf>>;
    try {
      g = await openGguf(path);
    } catch (e) {
      throw new CliError((e as Error).message);
    }
    await g.close();
    const metadata: Record<string, unknown> = {};
    for (const k of Object.keys(g.metadata)) {
      const v = g.get(k);
      // long arrays (the vocabulary) are summarised
      metadata[k] =
        Array.isArray(v) && v.length > 16 ? `[${v.length} values]` : typeof v === "bigint" ? String(v) : v;
    }
    const tensors = g.names.map((n) => ({
      name: n,
      dtype: g.tensors[n].type,
      shape: [...g.tensors[n].shape],
    }));
    return { path, kind, bytes, metadata, tensors };
  }
  const info = await safetensorsInfo(path);
  const tensors = listTensors(info);
  const metadata = jsonMeta(info.metadata);
  if (kind === "safetensors") return { path, kind, bytes, metadata, tensors };
  if (metadata.format !== INT21_CHECKPOINT_FORMAT) throw new CliError(`${path}: not an int21 checkpoint`);
  const linears = (metadata.linears ?? {}) as Record<string, { kind: string; format?: string }>;
  for (const t of tensors) {
    const base = t.name.replace(/\.(qweight|scales|zeros|g_idx|weight)$/, "");
    const rec = linears[base];
    if (rec?.kind === "quant" && rec.format !== undefined && t.name.endsWith(".qweight")) {
      t.format = rec.format;
      t.bitsPerWeight = getFormat(rec.format).bitsPerWeight;
    }
  }
  const config = metadata.config as LlamaConfig;
  const { config: _c, ...rest } = metadata;
  return { path, kind, bytes, config, metadata: rest, tensors };
}

/**
 * Checks `path` as the loaders would (a model of any kind, an int21 checkpoint, a PEFT adapter directory, any
 * safetensors or GGUF file) and, with `scanValues`, reads every weight one tensor at a time for NaN and
 * infinities. Returns the problems, each naming the file (empty when none).
 */
export async function checkFile(path: string, scanValues: boolean): Promise<FileProblem[]> {
  if (!existsSync(path)) return [{ file: path, message: `${path}: no such file or directory` }];
  if (statSync(path).isDirectory() && existsSync(join(path, PEFT_CONFIG_FILE)))
    return validatePeftAdapter(path);
  if (statSync(path).isFile()) {
    try {
      await detectModelFile(path);
    } catch (e) {
      // A safetensors file that is not a checkpoint: its container and values are all there is to check.
      if ((e as Error).message.includes("a safetensors file that is not an int21 checkpoint"))
        return validateSafetensors(path, { scanValues });
    }
  }
  return validateModelFiles(path, { scanValues });
}

function writeProblems(io: CliIo, problems: readonly FileProblem[]): void {
  io.stderr.write(`${problems.length} problem${problems.length === 1 ? "" : "s"}:\n`);
  for (const p of problems) io.stderr.write(`  ${p.message}\n`);
}

/**
 * `int21 inspect`: prints {@link inspectFile}'s findings as text or JSON, after the structural checks of
 * {@link checkFile} (every value too with `--check`); exits 1 listing the problems when there are any.
 */
export function inspect(argv: readonly string[], io: CliIo): Promise<number> {
  return runProgram(inspectProgram(), argv, io, async ([file], o) => {
    const path = file as string;
    const problems = await checkFile(path, o.check === true);
    if (problems.length > 0) {
      if (o.json) writeJson(io, { path, problems });
      else writeProblems(io, problems);
      return EXIT.failure;
    }
    const r = await inspectFile(path);
    if (o.json) {
      writeJson(io, o.check ? { ...r, problems: [] } : r);
      return EXIT.ok;
    }
    const out = io.stdout;
    out.write(`${r.path}: ${describeKind(r.kind)}, ${formatBytes(r.bytes)}\n`);
    if (r.config) out.write(`config: ${JSON.stringify(r.config)}\n`);
    if (r.kind === "int21" && r.metadata) {
      const linears = (r.metadata.linears ?? {}) as Record<
        string,
        { kind: string; format?: string; actOrder?: boolean }
      >;
      const counts = new Map<string, number>();
      for (const l of Object.values(linears)) {
        const key = l.kind === "quant" ? `${l.format}${l.actOrder ? " (act-order)" : ""}` : "float32";
        counts.set(key, (counts.get(key) ?? 0) + 1);
      }
      out.write(`projections: ${[...counts].map(([k, n]) => `${n} × ${k}`).join(", ")}\n`);
      out.write(
        `int21 checkpoint version ${String(r.metadata.int21_version)}${r.metadata.adapters ? "; holds LoRA adapters" : ""}\n`,
      );
    }
    const shown = o.all ? r.tensors : r.tensors.slice(0, 24);
    out.write(
      `${r.tensors.length} tensors${shown.length < r.tensors.length ? ` (first ${shown.length}; --all for every one)` : ""}:\n`,
    );
    out.write(
      textTable(
        ["tensor", "dtype", "shape", "format", "bits/weight"],
        shown.map((t) => [
          t.name,
          t.dtype,
          `[${t.shape.join(", ")}]`,
          t.format ?? "",
          t.bitsPerWeight !== undefined ? t.bitsPerWeight.toFixed(3) : "",
        ]),
      ),
    );
    out.write(
      o.check
        ? "check: no problems (structure and every weight's values)\n"
        : "structure checked; run with --check to scan every weight for NaN / infinite values\n",
    );
    return EXIT.ok;
  });
}

function describeKind(kind: Inspection["kind"]): string {
  return {
    llama2c: "llama2.c checkpoint (float32)",
    hf: "Hugging Face model directory",
    int21: "int21 checkpoint",
    gguf: "GGUF file",
    "peft-adapter": "PEFT LoRA adapter",
    safetensors: "safetensors file",
  }[kind];
}
