// The resumable training state in the origin-private file system (OPFS), written from the worker.
import type { StateStore } from "./studio";

/** The OPFS file holding the run. */
export const RUN_FILE = "int21-studio-run.safetensors";

interface OpfsWritable {
  write(data: BufferSource): Promise<void>;
  close(): Promise<void>;
}

interface OpfsFileHandle {
  getFile(): Promise<File>;
  createWritable(): Promise<OpfsWritable>;
}

interface OpfsDir {
  getFileHandle(name: string, opts?: { create?: boolean }): Promise<OpfsFileHandle>;
  removeEntry(name: string): Promise<void>;
}

/** A {@link StateStore} over one OPFS file; null when the browser has no OPFS. */
export async function opfsStore(name = RUN_FILE): Promise<StateStore | null> {
  const storage = (
    globalThis.navigator as { storage?: { getDirectory?: () => Promise<OpfsDir> } } | undefined
  )?.storage;
  if (!storage?.getDirectory) return null;
  let dir: OpfsDir;
  try {
    dir = await storage.getDirectory();
  } catch {
    return null;
  }
  return {
    async save(bytes) {
      // createWritable writes a swap file that replaces the old one on close(): a reload during a save
      // still finds the previous complete state
      const h = await dir.getFileHandle(name, { create: true });
      const w = await h.createWritable();
      await w.write(bytes as unknown as BufferSource);
      await w.close();
    },
    async load() {
      try {
        const h = await dir.getFileHandle(name);
        const f = await h.getFile();
        if (f.size === 0) return null;
        return new Uint8Array(await f.arrayBuffer());
      } catch {
        return null;
      }
    },
    async clear() {
      await dir.removeEntry(name).catch(() => {});
    },
  };
}
