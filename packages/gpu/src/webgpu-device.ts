// Getting a WebGPU device: the page's `navigator.gpu`, or in Node the `webgpu` package (Dawn).
/// <reference types="@webgpu/types" />
import { optionalImport } from "./optional-import";

/** Where the device came from and what it is. */
export interface WebGpuContext {
  readonly device: GPUDevice;
  /** `navigator.gpu`, a GPU object passed in, or `webgpu` (Dawn in Node) with the backend it used. */
  readonly source: string;
  /** `core` or `compatibility` (Dawn's OpenGL ES backend on Mesa is compatibility-only). */
  readonly featureLevel: "core" | "compatibility";
  /** Adapter description (vendor, architecture, device, description), for logs and benchmark notes. */
  readonly adapter: string;
  /**
   * The object `create()` returned (Node): Dawn crashes if it is collected while the device lives, so
   * the context holds it.
   */
  readonly keepAlive: unknown;
}

/** Options of {@link requestWebGpuDevice}. */
export interface WebGpuDeviceOptions {
  /** A `GPU` (e.g. `navigator.gpu`, or the result of the `webgpu` package's `create([...])`). */
  gpu?: GPU;
  /** The `webgpu` module, if already imported; otherwise `import("webgpu")` when there is no `navigator.gpu`. */
  webgpu?: WebGpuModule;
  /** Extra Dawn flags for `create()` in Node (e.g. `adapter=...`), tried before the defaults. */
  dawnFlags?: string[];
  powerPreference?: GPUPowerPreference;
}

/** The parts of the `webgpu` npm package used here (an optional peer dependency). */
export interface WebGpuModule {
  create(flags: string[]): GPU;
  globals: Record<string, unknown>;
}

function describeAdapter(a: GPUAdapter): string {
  const i = a.info;
  const parts = [i?.vendor, i?.architecture, i?.device, i?.description].filter((s) => !!s);
  return parts.length > 0 ? parts.join(" / ") : "unknown adapter";
}

async function deviceFrom(
  gpu: GPU,
  source: string,
  featureLevel: "core" | "compatibility",
  keepAlive: unknown,
  opts: WebGpuDeviceOptions,
): Promise<WebGpuContext | null> {
  const adapter = await gpu.requestAdapter({
    featureLevel,
    powerPreference: opts.powerPreference,
  } as GPURequestAdapterOptions);
  if (!adapter) return null;
  // Ask for the adapter's own buffer limits: the defaults (128 MiB per binding) are below a 7B layer.
  const device = await adapter.requestDevice({
    requiredLimits: {
      maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
      maxBufferSize: adapter.limits.maxBufferSize,
    },
  });
  // Dawn reports compatibility adapters through featureLevel; browsers without it are core.
  const level =
    (adapter as { featureLevel?: string }).featureLevel === "compatibility" ? "compatibility" : featureLevel;
  return { device, source, featureLevel: level, adapter: describeAdapter(adapter), keepAlive };
}

/**
 * Requests a WebGPU device, trying in order:
 * 1. `opts.gpu`, else `navigator.gpu` (browsers, Deno, Node ≥ 21 with a provider): core, then compatibility;
 * 2. in Node, the `webgpu` package (Dawn): its default backend (Vulkan, D3D12 or Metal: a real GPU or
 *    lavapipe), then Dawn's OpenGL ES backend in compatibility mode — with `EGL_PLATFORM=surfaceless`
 *    (set when unset) that runs on Mesa's llvmpipe with no display and no GPU.
 *
 * Returns the device, or a string saying why none could be made (nothing is thrown).
 */
export async function requestWebGpuDevice(opts: WebGpuDeviceOptions = {}): Promise<WebGpuContext | string> {
  const reasons: string[] = [];
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  const given = opts.gpu ?? nav?.gpu;
  if (given) {
    const source = opts.gpu ? "given GPU" : "navigator.gpu";
    for (const level of ["core", "compatibility"] as const) {
      try {
        const ctx = await deviceFrom(given, source, level, given, opts);
        if (ctx) return ctx;
        reasons.push(`${source}: no ${level} adapter`);
      } catch (e) {
        reasons.push(`${source} (${level}): ${(e as Error).message}`);
      }
    }
    if (opts.gpu) return reasons.join("; ");
  }
  const isNode = typeof process !== "undefined" && !!process.versions?.node;
  if (!isNode)
    return reasons.length > 0 ? reasons.join("; ") : "no navigator.gpu (WebGPU is not available here)";
  let mod: WebGpuModule;
  try {
    mod = opts.webgpu ?? ((await optionalImport("webgpu")) as WebGpuModule);
  } catch (e) {
    reasons.push(`the webgpu package is not installed (${(e as Error).message.split("\n")[0]})`);
    return reasons.join("; ");
  }
  // Dawn's node bindings expect the WebGPU constants (GPUBufferUsage, …) as globals.
  for (const [k, v] of Object.entries(mod.globals)) {
    if (!(k in globalThis)) (globalThis as Record<string, unknown>)[k] = v;
  }
  const attempts: { flags: string[]; level: "core" | "compatibility"; label: string }[] = [
    { flags: opts.dawnFlags ?? [], level: "core", label: "Dawn default backend" },
    {
      flags: [...(opts.dawnFlags ?? []), "backend=opengles"],
      level: "compatibility",
      label: "Dawn OpenGL ES",
    },
  ];
  for (const a of attempts) {
    if (a.flags.includes("backend=opengles") && process.env.EGL_PLATFORM === undefined) {
      process.env.EGL_PLATFORM = "surfaceless";
    }
    try {
      const gpu = mod.create(a.flags);
      const ctx = await deviceFrom(gpu, `webgpu (${a.label})`, a.level, gpu, opts);
      if (ctx) return ctx;
      reasons.push(`${a.label}: no ${a.level} adapter`);
    } catch (e) {
      reasons.push(`${a.label}: ${(e as Error).message.split("\n")[0]}`);
    }
  }
  return reasons.join("; ");
}
