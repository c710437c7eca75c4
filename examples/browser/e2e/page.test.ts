// End to end: build the page, serve it with `vite preview` on 127.0.0.1, drive it in Debian's headless
// Chromium (playwright-core, no browser download): load → generate → train, then take a screenshot.
import { existsSync, mkdirSync, mkdtempSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { SHARED, sharedPath } from "@int21/shared-data";
import { type Browser, chromium, type Page } from "playwright-core";
import { build, type PreviewServer, preview } from "vite";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const CHROMIUM = process.env.INT21_CHROMIUM ?? "/usr/bin/chromium";
const FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
];
const root = fileURLToPath(new URL("..", import.meta.url));
const configFile = join(root, "vite.config.ts");
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium) {
  console.log(`SKIP examples/browser e2e: ${CHROMIUM} is absent (install it with .ci/browser-setup.sh)`);
}

/** Words any TinyStories sentence is made of. */
const COMMON = [
  "once",
  "upon",
  "time",
  "there",
  "was",
  "a",
  "the",
  "she",
  "he",
  "and",
  "to",
  "little",
  "named",
  "day",
];

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

/** Clicks a button and waits until the page is no longer busy; fails on an error state. */
async function press(page: Page, id: string, timeout = 60_000): Promise<string> {
  await page.click(`#${id}`);
  await page.waitForFunction(() => document.body.dataset.state !== "busy", undefined, { timeout });
  const status = (await page.textContent("#status")) ?? "";
  expect(await page.getAttribute("body", "data-state"), status).toBe("ready");
  return status;
}

async function loadAs(page: Page, format: "float32" | "int4" | "int2"): Promise<void> {
  await page.selectOption("#format", format);
  await press(page, "load");
}

async function generated(page: Page): Promise<string> {
  await press(page, "generate");
  return (await page.textContent("#output")) ?? "";
}

/** Flags that give headless Chromium a WebGPU adapter without a GPU (SwiftShader, Vulkan in software). */
const WEBGPU_FLAGS = [
  "--headless",
  "--no-sandbox",
  "--enable-unsafe-webgpu",
  "--use-webgpu-adapter=swiftshader",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
];

let server: PreviewServer | undefined;
let url = "";

async function openPage(browser: Browser, errors: string[]): Promise<Page> {
  const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
  page.setDefaultTimeout(60_000);
  page.on("pageerror", (e) => errors.push(e.message));
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(m.text());
  });
  page.on("response", (r) => {
    if (r.status() >= 400) errors.push(`HTTP ${r.status()} for ${r.url()}`);
  });
  await page.goto(url, { timeout: 30_000 });
  await page.waitForFunction(() => document.body.dataset.state !== "starting", undefined, {
    timeout: 30_000,
  });
  return page;
}

describe.skipIf(!haveChromium)("examples/browser in headless Chromium", () => {
  beforeAll(async () => {
    await build({ configFile, logLevel: "warn" });
    const port = await freePort();
    server = await preview({
      configFile,
      logLevel: "warn",
      preview: { host: "127.0.0.1", port, strictPort: true },
    });
    url = `http://127.0.0.1:${port}/`;
  });

  afterAll(async () => {
    await new Promise<void>((r) => (server ? server.httpServer.close(() => r()) : r()));
  });

  describe("--disable-gpu: wasm SIMD + threads", () => {
    let browser: Browser | undefined;
    let page: Page;
    const pageErrors: string[] = [];
    const outDir = process.env.INT21_E2E_OUT ?? mkdtempSync(join(tmpdir(), "int21-browser-e2e-"));

    beforeAll(async () => {
      browser = await chromium.launch({
        executablePath: CHROMIUM,
        args: FLAGS,
        headless: true,
        timeout: 60_000,
      });
      page = await openPage(browser, pageErrors);
    });

    afterAll(async () => {
      await browser?.close();
    });

    it("starts cross-origin isolated, on wasm SIMD with worker threads", async () => {
      expect(await page.getAttribute("body", "data-state")).toBe("ready");
      expect(await page.evaluate(() => globalThis.crossOriginIsolated)).toBe(true);
      const threads = Number(await page.getAttribute("#backend", "data-threads"));
      expect(threads).toBeGreaterThanOrEqual(1);
      expect(await page.textContent("#backend")).toContain("wasm SIMD");
    });

    it("float32 stories260K, greedy from BOS, tells the llama2.c story", async () => {
      await loadAs(page, "float32");
      expect(await page.getAttribute("#model-info", "data-format")).toBe("float32");
      const text = await generated(page);
      expect(text.startsWith("Once upon a time, there was a little girl named Lily.")).toBe(true);
    });

    it("INT2 loads 8x+ smaller and still generates", async () => {
      await loadAs(page, "int2");
      expect(await page.textContent("#model-info")).toMatch(
        /int2-g32-asym-f16: projections .*\((?:float32 [^,]+), (\d+\.\d)× smaller/,
      );
      const text = await generated(page);
      expect(text.length).toBeGreaterThan(20);
    });

    it("INT4: generates real words, trains 20 LoRA steps with falling loss, takes a screenshot", async () => {
      await loadAs(page, "int4");
      expect(await page.getAttribute("#model-info", "data-format")).toBe("int4-g32-asym-f16");
      const text = await generated(page);
      expect(text.startsWith("Once upon a time")).toBe(true);
      const words = text.toLowerCase().match(/[a-z]+/g) ?? [];
      expect(words.filter((w) => COMMON.includes(w)).length).toBeGreaterThanOrEqual(10);
      const decode = Number(await page.getAttribute("#tps", "data-decode"));
      expect(decode).toBeGreaterThan(0);

      await press(page, "train", 120_000);
      const losses = (await page.$$eval("#losses li", (lis) =>
        lis.map((li) => Number(li.dataset.loss)),
      )) as number[];
      expect(losses).toHaveLength(20);
      for (const l of losses) expect(Number.isFinite(l)).toBe(true);
      const falls = losses.slice(1).filter((l, i) => l < losses[i]).length;
      expect(falls).toBeGreaterThanOrEqual(15);
      expect(losses[19]).toBeLessThan(0.5 * losses[0]);
      expect(Number(await page.getAttribute("#train-tps", "data-train"))).toBeGreaterThan(0);
      expect(await page.locator("#loss-chart svg").count()).toBe(1);

      const after = await generated(page);
      expect(after.length).toBeGreaterThan(20);
      expect(await page.textContent("#tps")).toContain("+ LoRA");
      expect(await page.textContent("#memory")).toMatch(
        /JS heap [\d.]+ MiB · wasm [\d.]+ [KM]iB · training peak/,
      );
      expect(pageErrors).toEqual([]);

      mkdirSync(outDir, { recursive: true });
      const shot = join(outDir, "examples-browser.png");
      await page.screenshot({ path: shot, fullPage: true });
      console.log(`screenshot: ${shot}`);
      console.log(`webgpu: ${await page.textContent("#webgpu")}`);
      console.log(`backend: ${await page.textContent("#backend")}`);
      console.log(`model: ${await page.textContent("#model-info")}`);
      console.log(`generate: ${await page.textContent("#tps")}`);
      console.log(`train: ${await page.textContent("#train-tps")}`);
      console.log(`memory: ${await page.textContent("#memory")}`);
      console.log(`losses: ${losses.map((l) => l.toFixed(3)).join(" ")}`);
      console.log(`after LoRA: ${after.slice(0, 160)}`);
      expect(existsSync(shot)).toBe(true);
    });
  });

  describe("WebGPU on SwiftShader; files from the pickers", () => {
    let browser: Browser | undefined;
    let page: Page;
    const pageErrors: string[] = [];

    beforeAll(async () => {
      browser = await chromium.launch({
        executablePath: CHROMIUM,
        args: WEBGPU_FLAGS,
        headless: true,
        timeout: 60_000,
      });
      page = await openPage(browser, pageErrors);
    });

    afterAll(async () => {
      await browser?.close();
    });

    it("checks every packed INT2 projection's qmatvec on the GPU against wasm", async () => {
      await loadAs(page, "int2");
      const text = (await page.textContent("#webgpu")) ?? "";
      expect(await page.getAttribute("#webgpu", "data-available"), text).toBe("true");
      const m = text.match(
        /qmatvec on (\d+) packed projections checked against wasm: max rel\. error ([\d.e+-]+)/,
      );
      expect(m, text).not.toBeNull();
      expect(Number(m![1])).toBe(35); // stories260K: 5 layers × 7 projections
      expect(Number(m![2])).toBeLessThan(1e-4);
      expect(text).toContain("swiftshader");
      expect(pageErrors).toEqual([]);
      console.log(`webgpu (SwiftShader): ${text}`);
    });

    it("loads the files picked by the user, and names a truncated model file in its error", async () => {
      const model = readFileSync(sharedPath(SHARED.stories260K));
      const fetched: string[] = [];
      page.on("request", (r) => {
        const path = new URL(r.url()).pathname;
        if (path.includes("/models/")) fetched.push(path);
      });
      const bin = "application/octet-stream";
      await page.setInputFiles("#tokenizer-file", sharedPath(SHARED.tok512));
      await page.setInputFiles("#model-file", {
        name: "cut.bin",
        mimeType: bin,
        buffer: model.subarray(0, 100_000),
      });
      await page.selectOption("#format", "int4");
      await page.click("#load");
      await page.waitForFunction(() => document.body.dataset.state !== "busy");
      const status = (await page.textContent("#status")) ?? "";
      expect(await page.getAttribute("body", "data-state"), status).toBe("error");
      expect(status).toMatch(/^Loading failed: .*cut\.bin/);
      console.log(`truncated file: ${status}`);

      await page.setInputFiles("#model-file", { name: "mine.bin", mimeType: bin, buffer: model });
      await press(page, "load");
      expect(await page.textContent("#model-info")).toMatch(/^mine\.bin: dim 64, 5 layers/);
      expect((await generated(page)).startsWith("Once upon a time")).toBe(true);
      expect(fetched).toEqual([]); // both files came from the pickers

      await page.fill("#prompt", "Lily and Tim went to the park. They");
      const prompted = await generated(page);
      expect(prompted.startsWith("Lily and Tim went to the park. They ")).toBe(true);
      expect(prompted.length).toBeGreaterThan(60);
      const tps = (await page.textContent("#tps")) ?? "";
      expect(tps).toMatch(/tokens\/s decode, prefill \d+ tokens\/s over 1[0-9] prompt tokens/);
      console.log(`prompted: ${prompted.slice(0, 120)}`);
      console.log(`generate: ${tps}`);
    });
  });
});
