// Playwright: the browser end to end (e2e/), in Debian's Chromium against a running
// stack (deploy/local/e2e.sh starts one). No browser is downloaded: the test launches
// CHROMIUM_PATH. Reports, traces and screenshots go to ../target/e2e/.
import { defineConfig } from '@playwright/test';

const chromiumPath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

export default defineConfig({
  testDir: 'e2e',
  outputDir: '../target/e2e/results',
  // One user, one admin, one shared stack: the scenarios run in order, one at a time.
  workers: 1,
  fullyParallel: false,
  retries: process.env.CI ? 1 : 0,
  forbidOnly: Boolean(process.env.CI),
  // A scenario may wait two ping intervals twice; the whole run as long as the old runner's.
  timeout: 240_000,
  globalTimeout: 600_000,
  reporter: [['list'], ['html', { outputFolder: '../target/e2e/report', open: 'never' }]],
  use: {
    baseURL: (process.env.PRESENCE_URL ?? 'http://127.0.0.1:8080').replace(/\/$/, ''),
    locale: 'fr-FR',
    trace: 'retain-on-failure',
    screenshot: 'only-on-failure',
    browserName: 'chromium',
    launchOptions: {
      executablePath: chromiumPath,
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    },
  },
});
