// Entry point of the worker that owns the WebGPU device for createWebGpuSyncBackend: a Node
// worker_threads worker, or a browser dedicated worker (`new Worker(url, { type: "module" })`).
import type { InitReply, SyncRequest } from "./sync-protocol";
import { serveWebGpuRequests } from "./webgpu-sync-server";

interface NodePort {
  postMessage(m: unknown): void;
  on(event: "message", h: (m: SyncRequest) => void): void;
}

interface WebScope {
  postMessage(m: unknown): void;
  addEventListener(
    event: string,
    h: (e: { data?: SyncRequest; error?: unknown; reason?: unknown }) => void,
  ): void;
}

const isNode =
  typeof process !== "undefined" &&
  !!process.versions?.node &&
  typeof (globalThis as { self?: unknown }).self === "undefined";

async function start(): Promise<void> {
  if (isNode) {
    // A variable specifier keeps bundlers from resolving a Node builtin in a browser build.
    const spec = "node:worker_threads";
    const wt = (await import(/* @vite-ignore */ /* webpackIgnore: true */ spec)) as {
      parentPort: NodePort | null;
    };
    const port = wt.parentPort;
    if (!port) throw new Error("gpu: webgpu-worker must run as a worker_threads worker");
    const server = serveWebGpuRequests({
      post: (m: InitReply) => port.postMessage(m),
      onMessage: (h) => port.on("message", h),
    });
    process.on("uncaughtException", (e) => server.onFatal(e));
    process.on("unhandledRejection", (e) => server.onFatal(e));
    return;
  }
  const scope = globalThis as unknown as WebScope;
  const server = serveWebGpuRequests({
    post: (m: InitReply) => scope.postMessage(m),
    onMessage: (h) => scope.addEventListener("message", (e) => h(e.data as SyncRequest)),
  });
  scope.addEventListener("error", (e) => server.onFatal(e.error ?? e));
  scope.addEventListener("unhandledrejection", (e) => server.onFatal(e.reason));
}

void start();
