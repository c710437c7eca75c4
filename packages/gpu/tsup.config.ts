import { makeConfig } from "../../tsup.base";

// webgpu-worker is its own entry: createWebGpuSyncBackend starts it as a worker (dist/webgpu-worker.js).
export default makeConfig({ entry: ["src/index.ts", "src/webgpu-worker.ts"] });
