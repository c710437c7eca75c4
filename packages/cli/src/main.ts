#!/usr/bin/env node
// The `int21` command line. Commands land with issue 8; until then it reports its version.
import { readFileSync } from "node:fs";

const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as {
  version: string;
};
const args = process.argv.slice(2);
if (args.includes("--version") || args.includes("-v")) {
  console.log(pkg.version);
} else {
  console.error(
    `int21 ${pkg.version}\nusage: int21 --version\n(the quantize / lrec / finetune / eval / generate / inspect commands are not in this version)`,
  );
  process.exitCode = args.length === 0 || args.includes("--help") ? 0 : 2;
}
