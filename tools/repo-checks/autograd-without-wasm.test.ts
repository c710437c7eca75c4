// @int21/autograd must be usable without quant-kernels' WebAssembly: a bundled autograd consumer carries none of
// the base64 wasm modules, and importing the package compiles no module (requires `npm run build` first).
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { build } from "esbuild";
import { describe, expect, it } from "vitest";

const repo = resolve(__dirname, "..", "..");
/** The first bytes of every wasm module (`\0asm`, version 1), base64: how the embedded modules begin. */
const WASM_BASE64 = "AGFzbQEAAAA";

async function bundle(source: string): Promise<string> {
  const out = await build({
    stdin: { contents: source, resolveDir: repo, sourcefile: "consumer.mjs" },
    bundle: true,
    platform: "node",
    format: "esm",
    minify: true,
    write: false,
    logLevel: "silent",
  });
  return out.outputFiles[0].text;
}

/** The relative files a built dist file imports or requires (chunks), followed to the end. */
function staticClosure(entry: string): string[] {
  const seen = new Set<string>();
  const visit = (f: string): void => {
    if (seen.has(f)) return;
    seen.add(f);
    const text = readFileSync(f, "utf8");
    for (const m of text.matchAll(/(?:from\s*|require\(\s*|import\s*)["'](\.{1,2}\/[^"']+)["']/g))
      visit(resolve(dirname(f), m[1]));
  };
  visit(entry);
  return [...seen];
}

/** Every `@int21/quant-kernels…` specifier a built dist file imports or requires. */
function quantKernelsSpecifiers(file: string): string[] {
  const text = readFileSync(file, "utf8");
  return [...text.matchAll(/["'](@int21\/quant-kernels[^"']*)["']/g)].map((m) => m[1]);
}

describe("@int21/autograd without the wasm kernels", () => {
  for (const p of ["quant-kernels", "autograd"])
    expect(existsSync(join(repo, "packages", p, "dist", "index.js")), `${p} is not built`).toBe(true);

  it("quant-kernels' root entry (ESM and CJS, with the chunks it loads) holds no wasm module; its wasm entry does", () => {
    const dist = join(repo, "packages", "quant-kernels", "dist");
    for (const ext of ["js", "cjs"]) {
      const files = staticClosure(join(dist, `index.${ext}`));
      expect(files.length).toBeGreaterThan(1); // the shared chunks were followed
      for (const f of files) expect(readFileSync(f, "utf8"), f).not.toContain(WASM_BASE64);
      const wasm = staticClosure(join(dist, `wasm.${ext}`)).map((f) => readFileSync(f, "utf8"));
      expect(wasm.some((t) => t.includes(WASM_BASE64))).toBe(true);
    }
  });

  it("autograd's dist imports quant-kernels' root entry only, never @int21/quant-kernels/wasm", () => {
    for (const ext of ["js", "cjs"]) {
      const specs = quantKernelsSpecifiers(join(repo, "packages", "autograd", "dist", `index.${ext}`));
      expect(specs).toContain("@int21/quant-kernels");
      expect(specs.filter((s) => s !== "@int21/quant-kernels")).toEqual([]);
    }
  });

  it("a bundled autograd consumer carries no wasm module; one that asks for the wasm backend does", async () => {
    const autogradOnly = await bundle(
      `import { matmul, tensor, withBackend } from "@int21/autograd";
       import { createReferenceBackend } from "@int21/quant-kernels";
       const y = withBackend(createReferenceBackend(), () => matmul(tensor([1, 2], [1, 2]), tensor([3, 4], [2, 1])));
       console.log(JSON.stringify(y.toArray()));`,
    );
    expect(autogradOnly).not.toContain(WASM_BASE64);
    // under 200 KB minified (about 90 KB today: autograd, the reference kernels, io's f16, ndarray)
    expect(autogradOnly.length).toBeLessThan(200_000);
    const dir = mkdtempSync(join(tmpdir(), "int21-autograd-bundle-"));
    writeFileSync(join(dir, "a.mjs"), autogradOnly);
    expect(execFileSync(process.execPath, [join(dir, "a.mjs")], { encoding: "utf8" }).trim()).toBe("[11]");

    const withWasm = await bundle(
      `import { createWasmBackend } from "@int21/quant-kernels/wasm";
       console.log(typeof createWasmBackend);`,
    );
    expect(withWasm).toContain(WASM_BASE64);
  }, 60_000);

  it("importing @int21/autograd in Node compiles no WebAssembly module", () => {
    const probe = `
      let n = 0;
      for (const k of ["compile", "instantiate", "compileStreaming", "instantiateStreaming"]) {
        const f = WebAssembly[k];
        if (f) WebAssembly[k] = (...a) => (n++, f(...a));
      }
      const M = WebAssembly.Module;
      WebAssembly.Module = function (...a) { n++; return new M(...a); };
      const ag = await import("@int21/autograd");
      const { createReferenceBackend } = await import("@int21/quant-kernels");
      ag.withBackend(createReferenceBackend(), () => ag.matmul(ag.tensor([1, 2], [1, 2]), ag.tensor([3, 4], [2, 1])));
      console.log(n);`;
    const out = execFileSync(process.execPath, ["--input-type=module", "-e", probe], {
      cwd: repo,
      encoding: "utf8",
    });
    expect(out.trim()).toBe("0");
  });
});
