// Which linears get an adapter, and with which rank and alpha: PEFT's target_modules / rank_pattern /
// alpha_pattern, with the llama2.c projection names accepted as aliases of the Hugging Face ones.

/** llama2.c projection names and the Hugging Face module names they stand for. */
export const LLAMA2C_ALIASES: Readonly<Record<string, string>> = Object.freeze({
  wq: "q_proj",
  wk: "k_proj",
  wv: "v_proj",
  wo: "o_proj",
  w1: "gate_proj",
  w2: "down_proj",
  w3: "up_proj",
});

/** Every LLaMA projection, Hugging Face names: PEFT's usual `target_modules` for "all linear layers". */
export const LLAMA_TARGETS: readonly string[] = Object.freeze([
  "q_proj",
  "k_proj",
  "v_proj",
  "o_proj",
  "gate_proj",
  "up_proj",
  "down_proj",
]);

/**
 * A target name with a llama2.c alias replaced by its Hugging Face name (`wq` → `q_proj`); dotted
 * paths have their last component translated (`layers.0.wq` → `layers.0.q_proj`). Other names pass through.
 */
export function canonicalTarget(name: string): string {
  const dot = name.lastIndexOf(".");
  const last = name.slice(dot + 1);
  const alias = LLAMA2C_ALIASES[last];
  return alias === undefined ? name : `${name.slice(0, dot + 1)}${alias}`;
}

/**
 * Whether `key` selects `moduleName`, PEFT's rule: the name equals the key or ends with `.key`.
 * Both sides go through {@link canonicalTarget} first, so `wq` selects `model.layers.0.self_attn.q_proj`.
 */
export function matchesTarget(moduleName: string, key: string): boolean {
  const m = canonicalTarget(moduleName);
  const k = canonicalTarget(key);
  return m === k || m.endsWith(`.${k}`);
}

/** Rank and alpha for each targeted module. */
export interface TargetSpec {
  /** Module name suffixes to adapt (`q_proj`, `v_proj`, or llama2.c `wq`…; dotted suffixes allowed). */
  targetModules: readonly string[];
  /** Default rank. */
  r: number;
  /** Default alpha (scaling = alpha / r). Default: `r` (scaling 1). */
  alpha?: number;
  /** Per-module rank overrides, keyed by a name suffix as in `targetModules` (PEFT `rank_pattern`). */
  rankPattern?: Readonly<Record<string, number>>;
  /** Per-module alpha overrides (PEFT `alpha_pattern`). */
  alphaPattern?: Readonly<Record<string, number>>;
}

/** The rank and alpha chosen for one module. */
export interface TargetChoice {
  module: string;
  r: number;
  alpha: number;
}

function checkRank(r: number, where: string): void {
  if (!Number.isSafeInteger(r) || r < 1)
    throw new Error(`lora: ${where}: rank r must be a positive integer, got ${String(r)}`);
}

function checkAlpha(alpha: number, where: string): void {
  if (!Number.isFinite(alpha) || alpha <= 0)
    throw new Error(`lora: ${where}: alpha must be finite and > 0, got ${String(alpha)}`);
}

function patternValue(
  pattern: Readonly<Record<string, number>> | undefined,
  module: string,
): number | undefined {
  if (pattern === undefined) return undefined;
  for (const [key, v] of Object.entries(pattern)) if (matchesTarget(module, key)) return v;
  return undefined;
}

/**
 * Selects the modules `spec` targets among `moduleNames` (in their order) with each one's rank and alpha.
 * Throws when the spec is invalid, or when a target key matches no module (a typo would otherwise
 * silently train nothing).
 */
export function selectTargets(moduleNames: Iterable<string>, spec: TargetSpec): TargetChoice[] {
  const names = [...moduleNames];
  checkRank(spec.r, "spec");
  const alpha = spec.alpha ?? spec.r;
  checkAlpha(alpha, "spec");
  if (!Array.isArray(spec.targetModules) || spec.targetModules.length === 0) {
    throw new Error(
      "lora: spec.targetModules must list at least one module name (e.g. ['q_proj', 'v_proj'])",
    );
  }
  for (const [k, v] of Object.entries(spec.rankPattern ?? {})) checkRank(v, `rankPattern["${k}"]`);
  for (const [k, v] of Object.entries(spec.alphaPattern ?? {})) checkAlpha(v, `alphaPattern["${k}"]`);
  const out: TargetChoice[] = [];
  const used = new Set<string>();
  for (const module of names) {
    const hit = spec.targetModules.find((t) => matchesTarget(module, t));
    if (hit === undefined) continue;
    used.add(hit);
    out.push({
      module,
      r: patternValue(spec.rankPattern, module) ?? spec.r,
      alpha: patternValue(spec.alphaPattern, module) ?? alpha,
    });
  }
  const unused = spec.targetModules.filter((t) => !used.has(t));
  if (unused.length > 0) {
    const some = names.slice(0, 4).join(", ");
    throw new Error(
      `lora: target module(s) ${unused.map((t) => `"${t}"`).join(", ")} match no module of the model (${names.length} modules, e.g. ${some})`,
    );
  }
  return out;
}
