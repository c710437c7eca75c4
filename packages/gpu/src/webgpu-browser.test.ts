// The synchronous WebGPU backend in a browser: headless Chromium (SwiftShader's WebGPU adapter) loads
// browser-test/ built with Vite; a worker of a cross-origin-isolated page blocks in Atomics.wait while a
// nested worker runs the kernels. Skips (and says why) without Chromium or a WebGPU adapter in it.
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const CHROMIUM = process.env.INT21_CHROMIUM ?? "/usr/bin/chromium";
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium) console.warn(`[@int21/gpu] skipping the browser test: ${CHROMIUM} is absent`);
const root = fileURLToPath(new URL("../browser-test", import.meta.url));
const isolation = {
  "Cross-Origin-Opener-Policy": "same-origin",
  "Cross-Origin-Embedder-Policy": "require-corp",
};

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const a = s.address();
      s.close(() => (typeof a === "object" && a ? resolve(a.port) : reject(new Error("no port"))));
    });
  });
}

interface PageResult {
  mainThread: string;
  error?: string;
  isolated: boolean;
  name: string;
  reason: string | null;
  adapter: string | null;
  qmatmul: number;
  qmatmulT: number;
  sgemm: number;
  stats: { gpu: Record<string, number>; cpu: Record<string, number> };
}

describe.skipIf(!haveChromium)("WebGPU sync backend in Chromium", () => {
  it("a page's worker runs qmatmul, qmatmulT and sgemm on a nested device worker; the main thread is refused", async (ctx) => {
    const { build, preview } = await import("vite");
    const { chromium } = await import("playwright-core");
    const outDir = mkdtempSync(join(tmpdir(), "int21-gpu-browser-"));
    const port = await freePort();
    const config = {
      root,
      configFile: false as const,
      logLevel: "warn" as const,
      build: { target: "es2022", outDir, emptyOutDir: true },
      worker: { format: "es" as const },
      preview: { port, strictPort: true, headers: isolation },
    };
    await build(config);
    const server = await preview(config);
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ["--headless", "--no-sandbox", "--enable-unsafe-webgpu", "--use-webgpu-adapter=swiftshader"],
    });
    let r: PageResult;
    try {
      const page = await browser.newPage();
      await page.goto(`http://127.0.0.1:${port}/`);
      await page.waitForFunction(() => document.body.dataset.done === "1", undefined, { timeout: 120_000 });
      r = JSON.parse((await page.textContent("#out")) ?? "{}") as PageResult;
    } finally {
      await browser.close();
      await new Promise<void>((resolve) => server.httpServer.close(() => resolve()));
      rmSync(outDir, { recursive: true, force: true });
    }
    expect(r.error).toBeUndefined();
    expect(r.mainThread).toMatch(/a browser's main thread may not: call it in a worker/);
    expect(r.isolated).toBe(true);
    if (r.reason) {
      console.warn(`[@int21/gpu] skipping the browser kernel checks: ${r.reason}`);
      ctx.skip();
      return;
    }
    console.info(`[@int21/gpu] browser test on ${r.adapter}`);
    expect(r.name).toBe("webgpu-sync");
    expect(r.stats.gpu).toEqual({ sgemm: 1, dequantize: 0, qmatmul: 1, qmatmulT: 1, adamw: 0 });
    expect(r.stats.cpu).toEqual({ sgemm: 0, dequantize: 0, qmatmul: 0, qmatmulT: 0, adamw: 0 });
    for (const k of ["qmatmul", "qmatmulT", "sgemm"] as const) expect(r[k]).toBeLessThan(1e-5);
  }, 240_000);
});
