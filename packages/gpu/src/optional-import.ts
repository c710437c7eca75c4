// Loading an optional peer dependency without making bundlers resolve it at build time.

/**
 * `import(specifier)` through a variable, with the ignore hints Vite and webpack understand: a browser
 * bundle that does not install `gpu.js` or `webgpu` still builds, and the backends fall back (or take
 * the module through their `gpujs` / `webgpu` options) instead of failing at build time.
 */
export function optionalImport(specifier: "gpu.js" | "webgpu"): Promise<unknown> {
  const s: string = specifier;
  return import(/* @vite-ignore */ /* webpackIgnore: true */ s);
}
