// Messages between the page (main.ts) and the worker (worker.ts).
import type { LrecStep } from "@int21/lrec";
import type { Measure7bOptions } from "./measure7b";
import type { StageProgress } from "./progress";
import type { DeviceChoice } from "./ui-logic";
import type {
  EvalPoint,
  FinetuneSettings,
  FtStep,
  LrecSettings,
  QuantizeSettings,
  SavedRun,
  Summary,
} from "./studio";

/** What the page asks; each request gets one {@link Reply} with the same id. */
export type Request =
  | { op: "init"; stop: SharedArrayBuffer | null; base: string; device: DeviceChoice }
  | { op: "load"; files: { path: string; blob: Blob }[] }
  | { op: "loadDefault" }
  | { op: "loadStudent"; file: { path: string; blob: Blob } }
  | { op: "quantize"; settings: QuantizeSettings }
  | { op: "lrec"; settings: LrecSettings }
  | { op: "finetune"; settings: FinetuneSettings }
  | { op: "continue" }
  | { op: "resume" }
  | { op: "discardSaved" }
  | { op: "evaluate"; text: string; ctx: number }
  | {
      op: "generate";
      prompt: string;
      promptIds: number[] | null;
      chat: boolean;
      steps: number;
      temperature: number;
      seed: number;
    }
  | {
      op: "export";
      what: "checkpoint" | "peft-config" | "peft-weights" | "gguf" | "lora-gguf";
      ggufType?: "F32" | "F16" | "Q8_0" | "Q4_0" | "Q4_1";
    }
  | { op: "webgpu" }
  | ({ op: "measure7b"; maxResidentBytes?: number } & Measure7bOptions);

/** The worker's answer to one request. */
export type Reply = { id: number; ok: true; result: unknown } | { id: number; ok: false; error: string };

/** Live memory figures the worker attaches to its events. */
export interface MemoryReadout {
  /** wasm linear memory in use (the kernels' heap, resident packed layers). */
  wasmBytes: number;
  /** autograd's ledger: live and peak bytes of tensors (activations, gradients, optimizer state). */
  ledgerLive: number;
  ledgerPeak: number;
  /** The worker's JS heap (Chromium's performance.memory), when the browser reports it. */
  workerHeap: number | null;
}

/** What the worker sends without being asked. */
export type Event =
  | { type: "progress"; p: StageProgress; mem: MemoryReadout }
  | { type: "lrec-step"; s: LrecStep }
  | { type: "ft-step"; s: FtStep }
  | { type: "token"; piece: string }
  | { type: "saved"; step: number; total: number; bytes: number }
  | { type: "log"; message: string };

/** What `init` answers. */
export interface InitResult {
  backend: string;
  threads: number;
  isolated: boolean;
  simd: boolean;
  webgpu: string;
  /** The device choice (`?device=` / the settings) and what it gave. */
  device: {
    requested: DeviceChoice;
    /** Where the pipeline's matrix products run: @int21/gpu's synchronous WebGPU backend, or wasm. */
    used: "webgpu" | "wasm";
    /** The WebGPU adapter in use, when `used` is `webgpu`. */
    adapter: string | null;
    /** Why WebGPU is not used (a forced `webgpu` that could not be made says so here), or null. */
    note: string | null;
  };
  saved: SavedRun | null;
}

export type { EvalPoint, Summary };
