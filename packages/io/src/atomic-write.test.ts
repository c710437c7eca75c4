import { spawn } from "node:child_process";
import {
  chmodSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import fsp, { open } from "node:fs/promises";
import { syncBuiltinESMExports } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import {
  ATOMIC_TEMP_MARKER,
  atomicTempPath,
  cleanStaleAtomicTemps,
  FileWriteError,
  writeFileAtomic,
  writeFileAtomicStream,
} from "./atomic-write";

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "int21-atomic-"));
});
afterEach(() => {
  vi.restoreAllMocks();
  rmSync(dir, { recursive: true, force: true });
});

const temps = (d: string) =>
  readdirSync(d).filter((n) => n.includes(ATOMIC_TEMP_MARKER) || n.endsWith(".tmp"));

/** The pid of a process that has exited (so no process with that pid is running, barring reuse). */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ["-e", ""], { stdio: "ignore" });
  await new Promise((r) => child.on("exit", r));
  return child.pid as number;
}

async function caught(p: Promise<unknown>): Promise<FileWriteError> {
  try {
    await p;
  } catch (e) {
    return e as FileWriteError;
  }
  throw new Error("expected a rejection");
}

describe("writeFileAtomic", () => {
  it("writes bytes and strings, replaces an existing file, and leaves no temporary file", async () => {
    const p = join(dir, "a.bin");
    await writeFileAtomic(p, new Uint8Array([1, 2, 3]));
    expect([...readFileSync(p)]).toEqual([1, 2, 3]);
    await writeFileAtomic(p, "héllo\n");
    expect(readFileSync(p, "utf8")).toBe("héllo\n");
    expect(readdirSync(dir)).toEqual(["a.bin"]);
  });

  it("keeps the permission bits of the file it replaces", async () => {
    const p = join(dir, "script.sh");
    writeFileSync(p, "old");
    chmodSync(p, 0o751);
    await writeFileAtomic(p, "new");
    expect(statSync(p).mode & 0o777).toBe(0o751);
    expect(readFileSync(p, "utf8")).toBe("new");
  });

  it("names the temporary file after the target, in the same folder", () => {
    const t = atomicTempPath(join(dir, "model.safetensors"));
    expect(dirname(t)).toBe(dir);
    expect(t.slice(dir.length + 1)).toMatch(
      new RegExp(`^\\.model\\.safetensors\\.int21-tmp-${process.pid}-[0-9a-f]{8}$`),
    );
  });
});

describe("writeFileAtomicStream", () => {
  it("supports sequential writes, positioned writes and truncate", async () => {
    const p = join(dir, "s.bin");
    await writeFileAtomicStream(p, async (w) => {
      expect(w.path).toBe(p);
      await w.write(new Uint8Array([9, 9, 9, 9]), 4); // positioned; does not move the cursor
      await w.write(new Uint8Array([1, 2]));
      await w.write("AB");
      await w.truncate(10);
    });
    expect([...readFileSync(p)]).toEqual([1, 2, 65, 66, 9, 9, 9, 9, 0, 0]);
  });

  it("a throw in the middle of a streamed write leaves the target unchanged and removes the temporary file", async () => {
    const p = join(dir, "ckpt.safetensors");
    writeFileSync(p, "previous checkpoint");
    const boom = new Error("encoder failed on tensor 7");
    let tempSeen = "";
    const err = await caught(
      writeFileAtomicStream(p, async (w) => {
        await w.write(new Uint8Array(1 << 16).fill(7));
        tempSeen = w.tempPath;
        expect(statSync(w.tempPath).size).toBe(1 << 16);
        throw boom;
      }),
    );
    expect(err).toBe(boom); // errors of the caller's own code propagate unchanged
    expect(readFileSync(p, "utf8")).toBe("previous checkpoint");
    expect(tempSeen).not.toBe("");
    expect(temps(dir)).toEqual([]);
  });

  it("a process killed during a write leaves the target unchanged; the next write into the folder removes its temporary file", async () => {
    const p = join(dir, "out.gguf");
    writeFileSync(p, "old model");
    const src = resolve(dirname(fileURLToPath(import.meta.url)), "atomic-write.ts");
    const script = join(dir, "..", `${dir.split("/").pop()}-child.mts`);
    writeFileSync(
      script,
      `import { writeFileAtomicStream } from ${JSON.stringify(src)};\n` +
        `await writeFileAtomicStream(${JSON.stringify(p)}, async (w) => {\n` +
        `  await w.write(new Uint8Array(4096).fill(1));\n` +
        `  process.stdout.write("ready\\n");\n` +
        `  await new Promise((r) => setTimeout(r, 60000));\n` +
        `});\n`,
    );
    try {
      const child = spawn(process.execPath, ["--import", "tsx", script], {
        cwd: resolve(dirname(fileURLToPath(import.meta.url)), ".."),
        stdio: ["ignore", "pipe", "pipe"],
      });
      let stderr = "";
      child.stderr.on("data", (d) => {
        stderr += d;
      });
      await new Promise<void>((res, rej) => {
        child.stdout.on("data", (d) => {
          if (String(d).includes("ready")) res();
        });
        child.on("exit", () => rej(new Error(`child exited early: ${stderr}`)));
      });
      const exited = new Promise((r) => child.on("exit", r));
      child.kill("SIGKILL");
      await exited;
      expect(readFileSync(p, "utf8")).toBe("old model");
      const left = temps(dir);
      expect(left).toHaveLength(1);
      expect(left[0]).toMatch(new RegExp(`^\\.out\\.gguf\\.int21-tmp-${child.pid}-`));
      // the next write into the same folder (any file) cleans it up
      await writeFileAtomic(join(dir, "summary.json"), "{}\n");
      expect(temps(dir)).toEqual([]);
      expect(readFileSync(p, "utf8")).toBe("old model");
    } finally {
      rmSync(script, { force: true });
    }
  }, 30000);

  it("EISDIR: a target that is a directory fails before writing, naming the path", async () => {
    const p = join(dir, "model.safetensors");
    mkdirSync(p);
    const err = await caught(writeFileAtomic(p, "x"));
    expect(err).toBeInstanceOf(FileWriteError);
    expect(err.code).toBe("EISDIR");
    expect(err.path).toBe(p);
    expect(err.message).toContain(p);
    expect(err.message).toContain("directory");
    expect(temps(dir)).toEqual([]);
  });

  it("ENOTDIR: a path under a regular file fails naming the file and the operation", async () => {
    const file = join(dir, "plain");
    writeFileSync(file, "x");
    const p = join(file, "out.json");
    const err = await caught(writeFileAtomic(p, "{}"));
    expect(err).toBeInstanceOf(FileWriteError);
    expect(err.code).toBe("ENOTDIR");
    expect(err.message).toContain(p);
    expect(err.message).toMatch(/\((check|open)\)/);
  });

  it("ENOENT: a missing folder fails naming the file", async () => {
    const p = join(dir, "no", "such", "folder", "x.bin");
    const err = await caught(writeFileAtomic(p, "x"));
    expect(err.code).toBe("ENOENT");
    expect(err.message).toContain(p);
    expect(err.message).toContain("folder does not exist");
  });

  it("ENOSPC in the middle of a write names the target, keeps the old file and removes the temporary file", async () => {
    const p = join(dir, "big.safetensors");
    writeFileSync(p, "old");
    // FileHandle is not exported; take its prototype from an open handle and make the second write fail
    const probe = await open(join(dir, "probe"), "w");
    const proto = Object.getPrototypeOf(probe) as { write: (...a: unknown[]) => Promise<unknown> };
    await probe.close();
    rmSync(join(dir, "probe"));
    const real = proto.write;
    let calls = 0;
    vi.spyOn(proto, "write").mockImplementation(function (this: unknown, ...args: unknown[]) {
      if (++calls === 2) {
        return Promise.reject(
          Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC", errno: -28 }),
        );
      }
      return real.apply(this, args);
    });
    const err = await caught(
      writeFileAtomicStream(p, async (w) => {
        await w.write(new Uint8Array(100));
        await w.write(new Uint8Array(100));
      }),
    );
    expect(err).toBeInstanceOf(FileWriteError);
    expect(err.code).toBe("ENOSPC");
    expect(err.operation).toBe("write");
    expect(err.message).toContain(p);
    expect(err.message).toContain("no space left");
    expect((err.cause as Error).message).toContain("ENOSPC");
    expect(readFileSync(p, "utf8")).toBe("old");
    expect(temps(dir)).toEqual([]);
  });
});

describe("permission and read-only failures (simulated: the tests run as root, where chmod does not deny)", () => {
  for (const [code, words] of [
    ["EACCES", "permission denied"],
    ["EROFS", "the file system is read-only"],
  ] as const) {
    it(`${code} when creating the temporary file names the target and leaves it unchanged`, async () => {
      const p = join(dir, "adapter_config.json");
      writeFileSync(p, "old");
      const real = fsp.open;
      fsp.open = (async () => {
        throw Object.assign(new Error(`${code}: denied, open '${p}'`), { code });
      }) as typeof fsp.open;
      syncBuiltinESMExports();
      try {
        const err = await caught(writeFileAtomic(p, "new"));
        expect(err).toBeInstanceOf(FileWriteError);
        expect(err.code).toBe(code);
        expect(err.operation).toBe("open");
        expect(err.message).toBe(`io: cannot write ${p} (open): ${words} [${code}: denied, open '${p}']`);
      } finally {
        fsp.open = real;
        syncBuiltinESMExports();
      }
      expect(readFileSync(p, "utf8")).toBe("old");
      expect(temps(dir)).toEqual([]);
    });
  }
});

describe("cleanStaleAtomicTemps", () => {
  it("removes temporary files of dead processes and keeps those of running ones and of writes in flight", async () => {
    const dead = await deadPid();
    const stale = `.a.bin${ATOMIC_TEMP_MARKER}${dead}-0badc0de`;
    const live = `.b.bin${ATOMIC_TEMP_MARKER}${process.ppid}-00000001`; // our parent is running
    const ownLeft = `.c.bin${ATOMIC_TEMP_MARKER}${process.pid}-00000002`; // ours, but not being written
    const legacyStale = `x.json.${dead}.tmp`;
    const legacyOther = `y.json.${dead}.tmp`; // legacy name of another file: left alone
    for (const n of [stale, live, ownLeft, legacyStale, legacyOther, "keep.txt"])
      writeFileSync(join(dir, n), "");
    let inFlightKept = false;
    await writeFileAtomicStream(join(dir, "x.json"), async (w) => {
      // a second cleaner running while this write is in flight must not remove its temporary file
      const removed = await cleanStaleAtomicTemps(dir);
      inFlightKept =
        !removed.includes(w.tempPath) && readdirSync(dir).includes(w.tempPath.slice(dir.length + 1));
      await w.write("{}");
    });
    expect(inFlightKept).toBe(true);
    expect(readdirSync(dir).sort()).toEqual([live, "keep.txt", "x.json", legacyOther].sort());
  });

  it("returns nothing for a folder that cannot be listed", async () => {
    expect(await cleanStaleAtomicTemps(join(dir, "missing"))).toEqual([]);
  });
});
