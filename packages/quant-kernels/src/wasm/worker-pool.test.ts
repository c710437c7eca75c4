import { Worker } from "node:worker_threads";
import { describe, expect, it } from "vitest";
import { createReferenceBackend } from "../reference/backend";
import { rtnQuantize } from "../rtn";
import { randomUniform, randomWeights } from "../testing/random";
import { maxRelErr } from "../testing/tolerances";
import { wasmQmatmul } from "./wasm-qmatmul";
import { ResidentCache } from "./wasm-resident";
import { WasmRuntime } from "./wasm-runtime";
import { wasmSgemm } from "./wasm-sgemm";
import { type BrowserWorkerLike, WORKER_SOURCES } from "./worker-pool";

/** A Node worker that runs the browser program unchanged, behind the browser `Worker` API. */
function bridgedBrowserWorker(): BrowserWorkerLike {
  const src = `const { parentPort } = require("node:worker_threads");
globalThis.self = { postMessage: (m) => parentPort.postMessage(m) };
parentPort.on("message", (data) => self.onmessage({ data }));
${WORKER_SOURCES.browser}`;
  const w = new Worker(src, { eval: true });
  const like: BrowserWorkerLike = {
    onmessage: null,
    onerror: null,
    postMessage: (m) => w.postMessage(m),
    terminate: () => w.terminate(),
  };
  w.on("message", (data) => like.onmessage?.({ data }));
  w.on("error", (e) => like.onerror?.({ message: String(e) }));
  w.unref();
  return like;
}

describe("worker pool", () => {
  it("worker sources are self-contained scripts (parse alone, no bundler helpers)", () => {
    for (const src of [WORKER_SOURCES.node, WORKER_SOURCES.browser]) {
      expect(() => new Function(src)).not.toThrow();
      expect(src).not.toMatch(/__name|__require|import\.meta/);
      expect(src).toContain("qk_run");
      expect(src).toContain("__stack_pointer");
    }
  });

  it("the browser worker program with a spinning caller (as on a browser main thread) computes correct results", async () => {
    const rt = await WasmRuntime.create(3, true, { browserWorker: bridgedBrowserWorker, spin: true });
    const cache = new ResidentCache(rt);
    const ref = createReferenceBackend();
    try {
      expect(rt.threads).toBe(3);
      const M = 130;
      const N = 300;
      const K = 270;
      const A = randomUniform(M * K, 50);
      const B = randomUniform(N * K, 51);
      const want = new Float32Array(M * N);
      const got = new Float32Array(M * N);
      ref.sgemm({ M, N, K, A, B, C: want, transB: true });
      for (let i = 0; i < 3; i++) {
        wasmSgemm(rt, cache, { M, N, K, A, B, C: got, transB: true });
        expect(maxRelErr(got, want)).toBeLessThan(1e-5);
      }
      const q = rtnQuantize(randomWeights(2048 * 1100, 52), 2048, 1100, "int4-g128-asym-f16");
      const x = randomUniform(1100, 53);
      const yWant = new Float32Array(2048);
      const y = new Float32Array(2048);
      ref.qmatmul(x, 1, q, yWant);
      wasmQmatmul(rt, cache, x, 1, q, y);
      expect(maxRelErr(y, yWant)).toBeLessThan(1e-5);
    } finally {
      cache.dispose();
      rt.dispose();
    }
  });
});
