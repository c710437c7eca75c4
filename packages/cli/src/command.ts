// Running one commander program as a function `(argv, io) → exit code`.
import { AsyncLocalStorage } from "node:async_hooks";
import { setBackend } from "@int21/autograd";
import { createWebGpuSyncBackend } from "@int21/gpu";
import { type Backend, createReferenceBackend } from "@int21/quant-kernels";
import { createWasmBackend } from "@int21/quant-kernels/wasm";
import { type Command, CommanderError, Option } from "commander";
import { type CliIo, CliError, EXIT } from "./cli-io";
import { DEVICES, type Device, intIn, oneOf } from "./options";
import { relaxedSimdOptOut } from "./relaxed-simd";

/** Activations of the one-row (decode) matvec over 3–4-bit layers: see {@link decodeActivationsOption}. */
export const DECODE_ACTIVATIONS = ["int16", "int8"] as const;

/** The `--device`, `--decode-activations` and io of the command running now (read by {@link withBackend}). */
const running = new AsyncLocalStorage<{
  device: Device | undefined;
  decodeActivations: (typeof DECODE_ACTIVATIONS)[number] | undefined;
  io: CliIo;
}>();

/** What an action receives: positional arguments (parsed), options, and the io. */
export type Action = (
  args: unknown[],
  opts: Record<string, unknown>,
  io: CliIo,
) => Promise<number | undefined>;

/**
 * Parses `argv` (arguments after the command name) with `program` and runs `action`. Help prints to
 * stdout with code 0; command-line errors print to stderr with code 2; a {@link CliError} prints its
 * message with its code; any other error prints `int21 <name>: <message>` with code 1.
 */
export async function runProgram(
  program: Command,
  argv: readonly string[],
  io: CliIo,
  action: Action,
): Promise<number> {
  let code: number = EXIT.ok;
  program
    .exitOverride()
    .configureOutput({
      writeOut: (s) => io.stdout.write(s),
      writeErr: (s) => io.stderr.write(s),
      outputError: (s, write) => write(s),
    })
    .action(async function (this: Command) {
      const opts = this.opts();
      code =
        (await running.run(
          {
            device: opts.device as Device | undefined,
            decodeActivations: opts.decodeActivations as (typeof DECODE_ACTIVATIONS)[number] | undefined,
            io,
          },
          () => action(this.processedArgs as unknown[], opts, io),
        )) ?? EXIT.ok;
    });
  try {
    await program.parseAsync([...argv], { from: "user" });
    return code;
  } catch (e) {
    if (e instanceof CommanderError) {
      if (
        e.code === "commander.helpDisplayed" ||
        e.code === "commander.version" ||
        e.code === "commander.help"
      )
        return EXIT.ok;
      return EXIT.usage;
    }
    const name = program.name();
    if (e instanceof CliError) {
      io.stderr.write(`int21 ${name}: ${e.message}\n`);
      return e.exitCode;
    }
    io.stderr.write(`int21 ${name}: ${(e as Error)?.message ?? String(e)}\n`);
    return EXIT.failure;
  }
}

/** `--threads <n>`: WebAssembly kernel threads (`0` = the plain reference backend). */
export function threadsOption(): Option {
  return new Option(
    "--threads <n>",
    "WebAssembly kernel threads (0 = plain JavaScript reference kernels)",
  ).argParser(intIn(0, 64));
}

/**
 * `--device <name>`: where the kernels run: `wasm` (WebAssembly SIMD + threads, the default),
 * `webgpu` (the matrix products on a WebGPU device, through `@int21/gpu`'s synchronous backend; the
 * rest, and what the device does not run, on wasm), or `reference` (plain JavaScript, as `--threads 0`).
 * {@link withBackend} reads it from the running command's options (through {@link runProgram}).
 */
export function deviceOption(): Option {
  return new Option(
    "--device <name>",
    "where kernels run: wasm (default), webgpu (matrix products on a WebGPU device, the rest on wasm; Node: the webgpu package), reference",
  ).argParser(oneOf(DEVICES));
}

/**
 * `--decode-activations <int16|int8>`: how the WebAssembly backend's one-row (decode) matvec over 3- and
 * 4-bit layers rounds the activations: `int16` (the default; logits within ≈ 1e-3 of their range of the
 * float reference) or `int8` (one power-of-two step per 32 columns, as llama.cpp's Q4_0 × Q8_0 decode rounds
 * them: ≈ 1.3× faster INT4 decoding, logits move by ≈ 1e-2 of their range, so a greedy sample can differ).
 * Needs the relaxed-SIMD module (on by default where the engine has it) and the wasm device.
 */
export function decodeActivationsOption(): Option {
  return new Option(
    "--decode-activations <bits>",
    "activations of the decode matvec over 3-4-bit layers: int16 (default) or int8 (faster, llama.cpp Q4_0's precision; needs relaxed SIMD)",
  ).argParser(oneOf(DECODE_ACTIVATIONS));
}

/**
 * `--max-resident-mb <n>`: the WebAssembly backend's budget for resident (re-packed) layer copies;
 * default unlimited. Training a model near the memory limit wants a small one (0 keeps only the layer
 * in use, at the cost of re-packing each layer whenever it is used).
 */
export function residentOption(): Option {
  return new Option(
    "--max-resident-mb <n>",
    "MB of re-packed layer copies the WebAssembly kernels may keep (default: all; 0: only the layer in use)",
  ).argParser(intIn(0));
}

/**
 * Runs `fn` with a kernel backend (WebAssembly with `threads` threads, default up to 4; `0` the
 * reference backend; with `--device webgpu` a WebGPU backend over that one, with `--device reference`
 * the reference backend), installed as autograd's backend too, and disposes of it afterwards.
 * `maxResidentMb` bounds the WebAssembly backend's resident layer copies (see {@link residentOption}).
 * With `INT21_RELAXED_SIMD=0` the WebAssembly backend runs the plain-SIMD module (see ./relaxed-simd.ts).
 */
export async function withBackend<T>(
  threads: number | undefined,
  fn: (backend: Backend) => Promise<T>,
  maxResidentMb?: number,
): Promise<T> {
  const ctx = running.getStore();
  const device = ctx?.device ?? "wasm";
  const decodeActivations = ctx?.decodeActivations;
  if (decodeActivations === "int8" && (threads === 0 || device === "reference"))
    throw new CliError(
      `--decode-activations int8 needs the WebAssembly kernels (got ${threads === 0 ? "--threads 0" : "--device reference"})`,
      EXIT.usage,
    );
  const cpu =
    threads === 0 || device === "reference"
      ? createReferenceBackend()
      : await createWasmBackend({
          ...(threads === undefined ? {} : { threads }),
          ...(maxResidentMb === undefined ? {} : { maxResidentBytes: maxResidentMb * 1e6 }),
          ...(relaxedSimdOptOut() ? { relaxedSimd: false } : {}),
          ...(decodeActivations === undefined ? {} : { decodeActivations }),
        });
  const backend =
    device === "webgpu"
      ? await createWebGpuSyncBackend({
          fallback: cpu,
          warn: (m) => (ctx ? ctx.io.stderr.write(`${m}\n`) : console.warn(m)),
        })
      : cpu;
  const previous = setBackend(backend);
  try {
    return await fn(backend);
  } finally {
    setBackend(previous);
    if (backend !== cpu) backend.dispose();
    cpu.dispose();
  }
}

/** Writes `value` as one JSON document (and a newline) to stdout. */
export function writeJson(io: CliIo, value: unknown): void {
  io.stdout.write(
    `${JSON.stringify(value, (_k, v) => (typeof v === "number" && !Number.isFinite(v) ? String(v) : v), 2)}\n`,
  );
}
