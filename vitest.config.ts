import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/setup/global.ts"],
    setupFiles: ["test/setup/file.ts"],
    // Tests talk to a real server and start processes; the defaults (5 s) are too tight for the
    // embedded-cluster and subprocess tests on a 2-core machine.
    testTimeout: 60_000,
    hookTimeout: 120_000,
    teardownTimeout: 60_000,
    // Two cores: more workers than that only adds contention with the database server.
    maxWorkers: 2,
    // expect.poll waits for something asynchronous to show (a page in Chromium, a stream): 1 s,
    // the default, is a guess about a busy machine's speed, not a bound on the behaviour.
    expect: { poll: { timeout: 15_000 } },
  },
});
