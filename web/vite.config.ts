// Vite configuration: the React build, the dev-server proxy to the gateway, and vitest.
//
// In production the gateway serves `dist/` and the gRPC-Web paths on one origin, so the
// app only ever calls its own origin. `npm run dev` reproduces that by proxying the two
// service prefixes to a running gateway.
import { defineConfig } from 'vitest/config';
import react from '@vitejs/plugin-react';

const gateway = process.env.PRESENCE_GATEWAY_URL ?? 'http://127.0.0.1:8080';
const servicePrefixes = ['/presence.activity.v1.ActivityService', '/presence.admin.v1.AdminService'];

export default defineConfig({
  plugins: [react()],
  server: {
    proxy: Object.fromEntries(servicePrefixes.map((prefix) => [prefix, { target: gateway }])),
  },
  test: {
    include: ['src/**/*.test.{ts,tsx}'],
    // Component and hook tests opt into jsdom with a `// @vitest-environment jsdom` line.
    environment: 'node',
  },
});
