// The quantizer registry: quantizers by name (what `int21 quantize --method` offers), built-in and user-added.
import { gptq } from "./gptq";
import { type Quantizer, checkQuantizer } from "./quantizer";
import { rtn } from "./rtn";

/** Settings a registry factory receives by name (e.g. `{ actOrder: true }`); each factory checks those it takes. */
export type QuantizerParams = Readonly<Record<string, unknown>>;

/** Makes a {@link Quantizer} from its settings; throws naming a setting it does not take or a bad value. */
export type QuantizerFactory = (params: QuantizerParams) => Quantizer;

/** One registered quantizer, as {@link listQuantizers} gives it. */
export interface QuantizerEntry {
  name: string;
  /** One line for help texts. */
  description: string;
}

interface Entry extends QuantizerEntry {
  factory: QuantizerFactory;
  builtIn: boolean;
}

type Kind = "boolean" | "number";

/** Throws unless every defined key of `params` is one of `takes`, with a value of the kind it names. */
function checkParams(name: string, params: QuantizerParams, takes: Record<string, Kind>): void {
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined) continue;
    const kind = takes[k];
    if (kind === undefined) {
      const known = Object.keys(takes);
      throw new Error(
        `quant-kernels: quantizer ${name} takes no option ${k}${known.length > 0 ? ` (it takes: ${known.join(", ")})` : ""}`,
      );
    }
    if (typeof v !== kind)
      throw new Error(`quant-kernels: quantizer ${name}: option ${k} must be a ${kind}, got ${String(v)}`);
  }
}

const RTN_PARAMS: Record<string, Kind> = {
  mseClip: "boolean",
  grid: "number",
  maxShrink: "number",
  norm: "number",
};
const GPTQ_PARAMS: Record<string, Kind> = {
  ...RTN_PARAMS,
  actOrder: "boolean",
  dampening: "number",
  percDamp: "number",
  blockSize: "number",
  dampRetries: "number",
  staticGroups: "boolean",
};

const registry = new Map<string, Entry>();
for (const e of [
  {
    name: "rtn",
    description: "round to nearest, per group (no calibration data)",
    factory: (p: QuantizerParams) => {
      checkParams("rtn", p, RTN_PARAMS);
      return rtn(p);
    },
  },
  {
    name: "gptq",
    description: "error-compensating GPTQ on calibration data",
    factory: (p: QuantizerParams) => {
      checkParams("gptq", p, GPTQ_PARAMS);
      return gptq(p);
    },
  },
]) {
  registry.set(e.name, { ...e, builtIn: true });
}

const NAME = /^[a-z0-9][a-z0-9._-]*$/;

/**
 * Adds a quantizer under `name` (lowercase letters, digits, `.`, `_`, `-`), so that `getQuantizer(name)`,
 * `quantizeModel(w, { quantizer: name })` and `int21 quantize --method <name>` find it. Throws when the name is
 * taken (built-ins `rtn` and `gptq` cannot be replaced) or malformed.
 */
export function registerQuantizer(name: string, factory: QuantizerFactory, description = ""): void {
  if (typeof name !== "string" || !NAME.test(name))
    throw new Error(
      `quant-kernels: registerQuantizer: name ${JSON.stringify(name)} must be lowercase letters, digits, ".", "_" or "-"`,
    );
  if (typeof factory !== "function")
    throw new Error(`quant-kernels: registerQuantizer: ${name}: the factory must be a function`);
  if (registry.has(name))
    throw new Error(
      `quant-kernels: registerQuantizer: a quantizer named ${name} is already registered (${quantizerNames().join(", ")})`,
    );
  registry.set(name, { name, description, factory, builtIn: false });
}

/** Removes a quantizer added by {@link registerQuantizer}; returns whether it was there. Built-ins stay. */
export function unregisterQuantizer(name: string): boolean {
  const e = registry.get(name);
  if (e?.builtIn) throw new Error(`quant-kernels: unregisterQuantizer: ${name} is built in`);
  return registry.delete(name);
}

/** Names of every registered quantizer, built-ins first, then in registration order. */
export function quantizerNames(): string[] {
  return [...registry.keys()];
}

/** Every registered quantizer with its description. */
export function listQuantizers(): QuantizerEntry[] {
  return [...registry.values()].map(({ name, description }) => ({ name, description }));
}

/**
 * The quantizer registered as `name`, made with `params` (`getQuantizer("gptq", { actOrder: true })`). Throws an
 * Error listing the registered names for an unknown one, or the factory's error for a bad setting.
 */
export function getQuantizer(name: string, params: QuantizerParams = {}): Quantizer {
  const e = typeof name === "string" ? registry.get(name) : undefined;
  if (e === undefined)
    throw new Error(
      `quant-kernels: unknown quantizer ${typeof name === "string" ? JSON.stringify(name) : String(name)}; registered quantizers: ${quantizerNames().join(", ")}`,
    );
  const q = e.factory(params);
  checkQuantizer(`quant-kernels: quantizer factory ${name}`, q);
  return q;
}

/**
 * A {@link Quantizer} from either form a pipeline accepts: a registered name (made with `params`) or a Quantizer
 * value (then `params` must be empty: configure the value itself, e.g. `gptq({ actOrder: true })`). `who` names
 * the caller in errors, which list the registered names.
 */
export function resolveQuantizer(
  who: string,
  q: Quantizer | string,
  params: QuantizerParams = {},
): Quantizer {
  if (typeof q === "string") {
    try {
      return getQuantizer(q, params);
    } catch (e) {
      throw new Error(`${who}: ${(e as Error).message.replace(/^quant-kernels: /, "")}`);
    }
  }
  if (q === null || typeof q !== "object" || typeof (q as { quantize?: unknown }).quantize !== "function") {
    const what =
      q === null ? "null" : typeof q === "object" ? "an object without a quantize function" : String(q);
    throw new Error(
      `${who}: the quantizer must be a registered name (${quantizerNames().join(", ")}) or a Quantizer value, got ${what}`,
    );
  }
  checkQuantizer(who, q);
  const set = Object.entries(params).filter(([, v]) => v !== undefined);
  if (set.length > 0)
    throw new Error(
      `${who}: ${set.map(([k]) => k).join(", ")} configure a quantizer given by name; configure the quantizer ${q.name} itself (e.g. gptq({ actOrder: true }))`,
    );
  return q;
}
