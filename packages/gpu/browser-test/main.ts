// The page: the sync backend must refuse the main thread (it may not block); the check runs in a worker.
import { createWebGpuSyncBackend } from "../src/index";

let mainThread = "did not throw";
try {
  (await createWebGpuSyncBackend({ warn: () => {} })).dispose();
} catch (e) {
  mainThread = (e as Error).message;
}
const w = new Worker(new URL("./outer.ts", import.meta.url), { type: "module" });
const done = (data: unknown) => {
  (document.getElementById("out") as HTMLElement).textContent = JSON.stringify({
    mainThread,
    ...(data as object),
  });
  document.body.dataset.done = "1";
};
w.onmessage = (e) => done(e.data);
w.onerror = (e) => done({ error: `worker error: ${e.message}` });
