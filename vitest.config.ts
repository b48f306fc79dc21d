import { defineConfig } from 'vitest/config'

// Two tiers (README): `npm test` runs unit, http, integration and security (Node only, loopback sockets);
// `npm run test:interop` runs against real external peers (scitokens-cpp, PostgreSQL, SLURM).
export default defineConfig({
  test: {
    projects: [
      { test: { name: 'unit', include: ['test/unit/**/*.test.ts'] } },
      { test: { name: 'http', include: ['test/http/**/*.test.ts', 'test/conformance/**/*.test.ts'] } },
      // The conformance suite again, through the listener `serve` installs, on a loopback socket
      // (test/conformance/support/token_app.ts): the path production serves is the path tested.
      { test: { name: 'conformance-socket', include: ['test/conformance/**/*.test.ts'], env: { CTB_CONFORMANCE_TRANSPORT: 'socket' } } },
      { test: { name: 'integration', include: ['test/integration/**/*.test.ts'], testTimeout: 30_000, hookTimeout: 60_000 } },
      // Attacks on every endpoint that takes a token or parameters (SECURITY.md); part of `npm test`.
      { test: { name: 'security', include: ['test/security/**/*.test.ts'], testTimeout: 30_000, hookTimeout: 60_000 } },
      { test: { name: 'interop', include: ['test/interop/**/*.test.ts'], testTimeout: 60_000, hookTimeout: 120_000, fileParallelism: false } },
    ],
  },
})
