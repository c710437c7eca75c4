import { defineConfig } from "vitest/config";

// The app's own logic (Node): its own config so vitest does not pick up vite.config.ts (the page's aliases).
export default defineConfig({
  test: {
    include: ["src/**/*.test.ts"],
    testTimeout: 120_000,
  },
});
