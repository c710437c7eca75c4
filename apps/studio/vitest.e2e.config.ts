import { defineConfig } from "vitest/config";

// The end-to-end test in headless Chromium (playwright-core, /usr/bin/chromium): `npm run test:e2e`.
export default defineConfig({
  test: {
    include: ["e2e/**/*.test.ts"],
    testTimeout: 300_000,
    hookTimeout: 180_000,
    fileParallelism: false,
  },
});
