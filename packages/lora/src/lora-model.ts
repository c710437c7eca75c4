// Adapters over a whole model: any set of named Linears (module paths → layers), wrapped by target name.
import type { Linear } from "@int21/quant-kernels";
import { hashSeed, type LoRAAdapter, LoRALinear } from "./lora-linear";
import { selectTargets, type TargetChoice, type TargetSpec } from "./targets";

/** One adapter over a model: which modules, ranks, alphas, and how it trains. */
export interface LoRAConfig extends TargetSpec {
  /** Adapter name (PEFT's adapter name). Default `default`. */
  name?: string;
  /** Dropout on the adapter input while training. Default 0. */
  dropout?: number;
  /** Init / dropout seed; each module's seed is derived from it and the module name. Default 0. */
  seed?: number;
  /** Whether the optimizer trains it. Default true; stack a frozen adapter with `trainable: false`. */
  trainable?: boolean;
  /** Recorded in PEFT's `base_model_name_or_path`. */
  baseModel?: string;
}

/** A resolved adapter: its config and the rank / alpha chosen per module. */
export interface AdapterRecord {
  readonly name: string;
  readonly config: Readonly<LoRAConfig>;
  readonly targets: readonly TargetChoice[];
}

/**
 * The LoRA state of a model: its named linears (module path → layer; targeted ones become
 * {@link LoRALinear}) and the adapters stacked on them. `modules` is the caller's map and is updated in
 * place, so the caller puts `modules.get(name)` back into its model (model-llama does this for LLaMA).
 */
export class LoRAModel {
  /** Every module by name; adapted ones are `LoRALinear`. */
  readonly modules: Map<string, Linear>;
  private readonly records = new Map<string, AdapterRecord>();

  constructor(modules: Map<string, Linear>) {
    for (const [name, l] of modules) {
      if (
        l === undefined ||
        typeof l.forward !== "function" ||
        !(l.inFeatures >= 1) ||
        !(l.outFeatures >= 1)
      ) {
        throw new Error(`lora: module "${name}" is not a Linear (needs inFeatures, outFeatures, forward)`);
      }
    }
    this.modules = modules;
    // Adopt adapters already present (a model whose layers were wrapped earlier).
    for (const [module, l] of modules) {
      if (!(l instanceof LoRALinear)) continue;
      for (const a of l.adapters) {
        const rec = this.records.get(a.name);
        const choice = { module, r: a.r, alpha: a.alpha };
        if (rec) (rec.targets as TargetChoice[]).push(choice);
        else
          this.records.set(a.name, {
            name: a.name,
            config: { name: a.name, targetModules: [], r: a.r },
            targets: [choice],
          });
      }
    }
  }

  /**
   * Adds an adapter to every module `config` targets, stacked over the adapters already there.
   * Throws when the name is taken or a target matches no module.
   */
  addAdapter(config: LoRAConfig): AdapterRecord {
    return this.attachAdapter(config, selectTargets(this.modules.keys(), config));
  }

  /**
   * Adds an adapter on exactly the modules of `targets` (each with its rank and alpha), with initial
   * matrices from `init` when given (PEFT loading), else A Kaiming-uniform and B zero. All-or-nothing:
   * on any error no layer keeps a partial adapter.
   */
  attachAdapter(
    config: LoRAConfig,
    targets: readonly TargetChoice[],
    init?: (module: string) => { loraA: ArrayLike<number>; loraB: ArrayLike<number> },
  ): AdapterRecord {
    const name = config.name ?? "default";
    if (this.records.has(name)) throw new Error(`lora: the model already has an adapter named "${name}"`);
    const seed = config.seed ?? 0;
    const made: [string, Linear, LoRALinear, LoRAAdapter][] = [];
    try {
      for (const t of targets) {
        const current = this.modules.get(t.module);
        if (current === undefined)
          throw new Error(
            `lora: adapter "${name}" targets module "${t.module}", which the model does not have`,
          );
        const layer = current instanceof LoRALinear ? current : new LoRALinear(current);
        const data = init?.(t.module);
        const a = layer.addAdapter({
          name,
          r: t.r,
          alpha: t.alpha,
          dropout: config.dropout,
          seed: hashSeed(seed, `${name}/${t.module}`),
          trainable: config.trainable,
          ...(data ? { loraA: data.loraA, loraB: data.loraB } : {}),
        });
        made.push([t.module, current, layer, a]);
        this.modules.set(t.module, layer);
      }
    } catch (e) {
      for (const [module, before, layer, a] of made.reverse()) {
        layer.removeAdapter(a.name);
        this.modules.set(module, before);
      }
      throw e;
    }
    const rec: AdapterRecord = { name, config: { ...config, name }, targets: [...targets] };
    this.records.set(name, rec);
    return rec;
  }

  /** Adapter names in the order they were added. */
  adapterNames(): string[] {
    return [...this.records.keys()];
  }

  /** The record of adapter `name`, or throws. */
  record(name = "default"): AdapterRecord {
    const r = this.records.get(name);
    if (!r)
      throw new Error(
        `lora: no adapter named "${name}" (have ${
          this.adapterNames()
            .map((n) => `"${n}"`)
            .join(", ") || "none"
        })`,
      );
    return r;
  }

  /** `[module, adapter]` pairs of adapter `name`, in module order. */
  adapters(name = "default"): [string, LoRAAdapter][] {
    const rec = this.record(name);
    return rec.targets.map((t) => [t.module, (this.modules.get(t.module) as LoRALinear).adapter(name)]);
  }

  /** The LoRA-wrapped layers, by module name. */
  layers(): Map<string, LoRALinear> {
    const out = new Map<string, LoRALinear>();
    for (const [n, l] of this.modules) if (l instanceof LoRALinear) out.set(n, l);
    return out;
  }

  /** Freezes or unfreezes adapter `name` on every layer. */
  setTrainable(name: string, trainable: boolean): void {
    for (const [, a] of this.adapters(name)) a.trainable = trainable;
  }

  /** Enables or disables adapter `name` (a disabled adapter is skipped in forward). */
  setEnabled(name: string, enabled: boolean): void {
    for (const [, a] of this.adapters(name)) a.enabled = enabled;
  }

  /** Sets the dropout step of every adapter (masks are a function of seed and step). */
  setDropoutStep(step: number): void {
    for (const l of this.layers().values()) for (const a of l.adapters) a.dropoutStep = step;
  }

  /** Number of float parameters of adapter `name` (or of every trainable adapter when omitted). */
  parameterCount(name?: string): number {
    let n = 0;
    for (const l of this.layers().values()) {
      for (const a of l.adapters) {
        if (name === undefined ? a.trainable : a.name === name) n += a.loraA.length + a.loraB.length;
      }
    }
    return n;
  }
}

/** Wraps the modules `config` targets with a new adapter: `new LoRAModel(modules).addAdapter(config)`. */
export function applyLoRA(modules: Map<string, Linear>, config: LoRAConfig): LoRAModel {
  const m = new LoRAModel(modules);
  m.addAdapter(config);
  return m;
}
