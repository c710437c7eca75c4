// Worker threads over one shared WebAssembly.Memory. Each worker instantiates the same compiled
// module on the shared memory with its own C stack, then loops: sleep on the control block's
// generation counter, run its share of the job (`qk_run(job, tid, nth)`), count itself done.
// The calling thread runs share 0 and waits for the others, so every kernel call is synchronous.

/** Control block (int32 slots). */
const C_GEN = 0;
const C_DONE = 1;
const C_JOB = 2;
const C_NTH = 3;
const C_EXIT = 4;
const C_ERROR = 5;
/** Bytes the control block needs. */
export const CONTROL_BYTES = 64;

/** What a worker receives in its first (and only) message. */
interface WorkerInit {
  module: WebAssembly.Module;
  memory: WebAssembly.Memory;
  tid: number;
  stackTop: number;
  ctrl: number;
}

/**
 * The worker's whole program, as source text: the same function runs under Node `worker_threads`
 * (eval worker) and in a browser `Worker` (blob URL), so the built package needs no worker file.
 */
function workerMain(init: WorkerInit, post: (m: unknown) => void): void {
  const SPIN_LOADS = 1000;
  const inst = new WebAssembly.Instance(init.module, { env: { memory: init.memory } });
  const ex = inst.exports as unknown as {
    __stack_pointer: WebAssembly.Global;
    qk_run(job: number, tid: number, nth: number): void;
  };
  ex.__stack_pointer.value = init.stackTop;
  const ctrl = new Int32Array(init.memory.buffer, init.ctrl, 16);
  let seen = Atomics.load(ctrl, 0);
  post("ready");
  for (;;) {
    let gen = Atomics.load(ctrl, 0);
    // A short spin (SPIN_LOADS loads, some tens of µs) catches a job that follows at once; then sleep.
    // The caller runs JavaScript between kernel calls (autograd's element-wise ops, copies), often for
    // milliseconds, and a longer spin (it was 20000 loads, ~0.5 ms) burned that time on this core after
    // every job: a training step's ~1500 jobs cost the worker ~1 s of CPU that did no work.
    for (let i = 0; i < SPIN_LOADS && gen === seen; i++) gen = Atomics.load(ctrl, 0);
    if (gen === seen) {
      Atomics.wait(ctrl, 0, seen);
      continue;
    }
    seen = gen;
    if (Atomics.load(ctrl, 4) === 1) break;
    const nth = Atomics.load(ctrl, 3);
    if (init.tid < nth) {
      try {
        ex.qk_run(Atomics.load(ctrl, 2), init.tid, nth);
      } catch {
        Atomics.store(ctrl, 5, 1);
      }
      Atomics.add(ctrl, 1, 1);
      Atomics.notify(ctrl, 1);
    }
  }
}

// Dynamic import works whether Node evaluates the source as CommonJS or as a module (a worker
// inherits the parent's --input-type).
const NODE_SOURCE = `import("node:worker_threads").then(({ parentPort, workerData }) => {
  (${workerMain.toString()})(workerData, (m) => parentPort.postMessage(m));
});`;

const BROWSER_SOURCE = `self.onmessage = (e) => { (${workerMain.toString()})(e.data, (m) => self.postMessage(m)); };`;

/** The worker programs as source text (exported for tests). */
export const WORKER_SOURCES = { node: NODE_SOURCE, browser: BROWSER_SOURCE } as const;

interface AnyWorker {
  terminate(): unknown;
}

/** The part of the browser `Worker` API the pool uses. */
export interface BrowserWorkerLike extends AnyWorker {
  onmessage: ((e: unknown) => void) | null;
  onerror: ((e: { message: string }) => void) | null;
  postMessage(m: unknown): void;
}

/** Test hooks: run the browser program through `browserWorker`, and/or never block in Atomics.wait. */
export interface PoolOptions {
  /** Creates a worker running {@link WORKER_SOURCES}.browser (default: a blob-URL `Worker`). */
  browserWorker?: () => BrowserWorkerLike;
  /** Spin instead of `Atomics.wait` on the calling thread, as on a browser main thread. */
  spin?: boolean;
}

type NodeWorker = AnyWorker & { once(ev: string, f: (x: unknown) => void): void; unref(): void };

interface NodeWorkerCtor {
  new (src: string, opts: { eval: boolean; workerData: unknown }): NodeWorker;
}

async function nodeWorkerCtor(): Promise<NodeWorkerCtor> {
  const proc = (globalThis as { process?: { getBuiltinModule?: (id: string) => unknown } }).process;
  const mod =
    (proc?.getBuiltinModule?.("node:worker_threads") as { Worker: NodeWorkerCtor } | undefined) ??
    // Hidden from bundlers: only Node reaches this line.
    ((await new Function("m", "return import(m)")("node:worker_threads")) as { Worker: NodeWorkerCtor });
  return mod.Worker;
}

function isNode(): boolean {
  const p = (globalThis as { process?: { versions?: { node?: string } } }).process;
  return typeof p?.versions?.node === "string";
}

/** Whether this thread may block in `Atomics.wait` (not a browser's main thread). */
function canBlock(): boolean {
  try {
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 1, 0);
    return true;
  } catch {
    return false;
  }
}

/** A started pool: `run` executes one job on `nth` threads (the caller is thread 0). */
export class WorkerPool {
  private readonly ctrl: Int32Array;
  private readonly block: boolean;
  private disposed = false;

  private constructor(
    memory: WebAssembly.Memory,
    ctrlAddr: number,
    private readonly workers: AnyWorker[],
    private readonly runLocal: (job: number, tid: number, nth: number) => void,
    spin: boolean,
  ) {
    this.ctrl = new Int32Array(memory.buffer, ctrlAddr, 16);
    this.block = !spin && canBlock();
  }

  /** Threads including the caller's. */
  get threads(): number {
    return this.workers.length + 1;
  }

  /**
   * Starts `threads - 1` workers. `stacks[i]` is the stack top (byte address) of worker `i + 1`;
   * `ctrl` the address of a zeroed {@link CONTROL_BYTES} block.
   */
  static async start(
    module: WebAssembly.Module,
    memory: WebAssembly.Memory,
    threads: number,
    ctrl: number,
    stacks: number[],
    runLocal: (job: number, tid: number, nth: number) => void,
    opts: PoolOptions = {},
  ): Promise<WorkerPool> {
    const workers: AnyWorker[] = [];
    const nodeWorkers: NodeWorker[] = [];
    const ready: Promise<void>[] = [];
    try {
      if (isNode() && opts.browserWorker === undefined) {
        const Worker = await nodeWorkerCtor();
        for (let t = 1; t < threads; t++) {
          const init: WorkerInit = { module, memory, tid: t, stackTop: stacks[t - 1], ctrl };
          const w = new Worker(NODE_SOURCE, { eval: true, workerData: init });
          workers.push(w);
          nodeWorkers.push(w);
          ready.push(
            new Promise((res, rej) => {
              w.once("message", () => res());
              w.once("error", (e) => rej(e));
            }),
          );
        }
      } else {
        const make =
          opts.browserWorker ??
          (() => {
            const url = URL.createObjectURL(new Blob([BROWSER_SOURCE], { type: "text/javascript" }));
            return () => new Worker(url) as unknown as BrowserWorkerLike;
          })();
        for (let t = 1; t < threads; t++) {
          const init: WorkerInit = { module, memory, tid: t, stackTop: stacks[t - 1], ctrl };
          const w = make();
          workers.push(w);
          ready.push(
            new Promise((res, rej) => {
              w.onmessage = () => res();
              w.onerror = (e) => rej(new Error(`quant-kernels: wasm worker failed to start: ${e.message}`));
            }),
          );
          w.postMessage(init);
        }
      }
      await Promise.all(ready);
      // Idle workers must not keep a Node process alive (unref only once they are up).
      for (const w of nodeWorkers) w.unref();
    } catch (e) {
      for (const w of workers) w.terminate();
      throw e;
    }
    return new WorkerPool(memory, ctrl, workers, runLocal, opts.spin === true);
  }

  /** Runs job `job` on `nth` threads (1 ≤ nth ≤ threads) and returns when all are done. */
  run(job: number, nth: number): void {
    if (this.disposed) throw new Error("quant-kernels: the wasm backend was disposed");
    if (nth <= 1 || this.workers.length === 0) {
      this.runLocal(job, 0, 1);
      return;
    }
    const c = this.ctrl;
    Atomics.store(c, C_DONE, 0);
    Atomics.store(c, C_ERROR, 0);
    Atomics.store(c, C_JOB, job);
    Atomics.store(c, C_NTH, nth);
    Atomics.add(c, C_GEN, 1);
    Atomics.notify(c, C_GEN);
    let err: unknown;
    try {
      this.runLocal(job, 0, nth);
    } catch (e) {
      err = e;
    }
    const want = nth - 1;
    for (;;) {
      const d = Atomics.load(c, C_DONE);
      if (d >= want) break;
      if (this.block) Atomics.wait(c, C_DONE, d, 50);
    }
    if (err !== undefined) throw err;
    if (Atomics.load(c, C_ERROR) !== 0)
      throw new Error("quant-kernels: a wasm worker trapped while running a kernel");
  }

  /** Stops the workers. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    Atomics.store(this.ctrl, C_EXIT, 1);
    Atomics.add(this.ctrl, C_GEN, 1);
    Atomics.notify(this.ctrl, C_GEN);
    for (const w of this.workers) w.terminate();
  }
}
