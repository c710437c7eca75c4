// The conformance suite every quant-kernels backend runs, on the gpu.js modes that work without a GPU.
import { type Backend, FORMATS } from "@int21/quant-kernels";
import { runBackendConformance } from "@int21/quant-kernels/testing";
import { describe } from "vitest";
import { createGpuJsBackend, type GpuJsMode } from "./gpujs-backend";

const gpujsMissing = await import("gpu.js").then(
  () => null,
  (e: Error) => e.message.split("\n")[0],
);
if (gpujsMissing)
  console.warn(`[@int21/gpu] skipping gpu.js conformance: gpu.js is not installed (${gpujsMissing})`);

/** A fallback that refuses work, so every conformance case provably ran on gpu.js. */
function refusingFallback(mode: string): Backend {
  const refuse = () => {
    throw new Error(`gpu.js ${mode} delegated to its fallback`);
  };
  return {
    name: "refuse",
    supports: () => false,
    sgemm: refuse,
    dequantize: refuse,
    qmatmul: refuse,
    qmatmulT: refuse,
    dispose() {},
  };
}

async function strict(mode: GpuJsMode) {
  const b = await createGpuJsBackend({ mode, fallback: refusingFallback(mode) });
  if (b.fallbackReason) throw new Error(b.fallbackReason);
  return b;
}

const modes: GpuJsMode[] = ["cpu", "webasm"];
describe.skipIf(gpujsMissing !== null)("gpu.js", () => {
  // gpu.js decodes affine formats; codebook formats go to the fallback, which refuses here.
  const formats = FORMATS.filter((f) => f.decode === "affine");
  for (const mode of modes)
    runBackendConformance(`gpujs-${mode}`, () => strict(mode), { numRuns: 4, formats });
});
