import { defineConfig } from "vitest/config";

// Its own config so that vitest does not pick up vite.config.ts (the page's browser aliases).
export default defineConfig({
  test: {
    include: ["e2e/**/*.test.ts"],
    testTimeout: 180_000,
    hookTimeout: 120_000,
  },
});
