#!/usr/bin/env node
// The `int21` executable: runs the command line on the process's streams.
import { processIo } from "./cli-io";
import { runCli } from "./cli";

runCli(process.argv.slice(2), processIo()).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.stderr.write(`int21: ${(e as Error)?.stack ?? String(e)}\n`);
    process.exitCode = 1;
  },
);
