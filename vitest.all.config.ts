import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

// One vitest run over every workspace that has tests: `npx vitest run --config vitest.all.config.ts`.
// (Named so that `vitest run` inside a package does not pick it up; `npm test` runs each package through turbo.)
const root = dirname(fileURLToPath(import.meta.url));
export default defineConfig({
  test: {
    projects: [join(root, "packages/*"), join(root, "tools/*"), join(root, "examples/*")],
  },
});
