// Parsers for option values: each throws commander's InvalidArgumentError, which names the option.
import { InvalidArgumentError } from "commander";

/** A parser for an integer option in `[min, max]`. */
export function intIn(min: number, max = Number.MAX_SAFE_INTEGER): (v: string) => number {
  return (v) => {
    const n = Number(v);
    if (!/^-?\d+$/.test(v.trim()) || !Number.isSafeInteger(n) || n < min || n > max)
      throw new InvalidArgumentError(
        `expected an integer in [${min}, ${max === Number.MAX_SAFE_INTEGER ? "∞" : max}], got "${v}"`,
      );
    return n;
  };
}

/** A parser for a finite number option in `[min, max]` (inclusive). */
export function numberIn(min: number, max = Number.POSITIVE_INFINITY): (v: string) => number {
  return (v) => {
    const n = Number(v);
    if (v.trim() === "" || !Number.isFinite(n) || n < min || n > max)
      throw new InvalidArgumentError(`expected a number in [${min}, ${max}], got "${v}"`);
    return n;
  };
}

/** A parser accepting only the listed integer values. */
export function intOneOf<T extends number>(values: readonly T[]): (v: string) => T {
  return (v) => {
    const n = Number(v);
    if (!values.includes(n as T))
      throw new InvalidArgumentError(`expected one of ${values.join(", ")}, got "${v}"`);
    return n as T;
  };
}

/** The kernel devices `--device` accepts. */
export const DEVICES = ["wasm", "webgpu", "reference"] as const;
/** One of {@link DEVICES}. */
export type Device = (typeof DEVICES)[number];

/** A parser accepting only the listed names. */
export function oneOf<T extends string>(values: readonly T[]): (v: string) => T {
  return (v) => {
    if (!values.includes(v as T))
      throw new InvalidArgumentError(`expected one of ${values.join(", ")}, got "${v}"`);
    return v as T;
  };
}

/** A parser for a comma-separated list of non-empty names. */
export function nameList(v: string): string[] {
  const names = v
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  if (names.length === 0)
    throw new InvalidArgumentError(`expected a comma-separated list of names, got "${v}"`);
  return names;
}
