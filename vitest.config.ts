import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    reporters: ['default', './test/support/summary-reporter.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    projects: [
      {
        // Pure logic and the lifecycle: no nats-server, no provisioning; seconds.
        extends: true,
        test: { name: 'unit', include: ['test/unit/**/*.test.ts'] },
      },
      {
        extends: true,
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts', 'test/interop/**/*.test.ts'],
          // Provisions the nats-server binaries, and fails the run on a server left behind.
          globalSetup: ['./test/support/global-setup.ts'],
        },
      },
    ],
  },
});
