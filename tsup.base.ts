import { defineConfig, type Options } from "tsup";

/**
 * The one tsup configuration every int21 package uses: ESM + CJS + d.ts, ES2022,
 * source maps, no bundling of dependencies (siblings stay imports by package name).
 */
export function makeConfig(overrides: Partial<Options> = {}) {
  return defineConfig({
    entry: ["src/index.ts"],
    format: ["esm", "cjs"],
    dts: true,
    sourcemap: true,
    clean: true,
    target: "es2022",
    platform: "neutral",
    splitting: false,
    treeshake: true,
    shims: false,
    ...overrides,
  });
}
