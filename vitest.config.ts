import { defineConfig } from "vitest/config";

// One vitest run over every workspace that has tests (packages, tools, examples).
export default defineConfig({
  test: {
    projects: ["packages/*", "tools/*", "examples/*"],
  },
});
