#!/usr/bin/env node
// The `int21` executable: runs the command line on the process's streams.
import { processIo } from "./cli-io";
import { runCli } from "./cli";
import { setUpRelaxedSimd } from "./relaxed-simd";

// before any wasm module is compiled: relaxed SIMD on (Node 20: its V8 flag) unless INT21_RELAXED_SIMD=0
setUpRelaxedSimd();

// `int21 … | head`: a closed pipe ends the output quietly
process.stdout.on("error", (e: NodeJS.ErrnoException) => {
  if (e.code === "EPIPE") process.exit(0);
  throw e;
});

runCli(process.argv.slice(2), processIo()).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.stderr.write(`int21: ${(e as Error)?.stack ?? String(e)}\n`);
    process.exitCode = 1;
  },
);
