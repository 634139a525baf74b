// End-to-end test of presence (sign-in, pings, statuses, threshold, sign-out) in real headless Chromium, against a running stack.
//
// It follows the acceptance criteria of the seed story: usertest1 signs in and pings
// (the Redis key appears), a hidden tab stops pinging, admintest1 sees usertest1 online
// without reloading, the threshold is edited and persists, and sign-out removes the key
// and turns usertest1 offline on the admin page within seconds.
//
// Environment:
//   PRESENCE_URL               the gateway (default http://127.0.0.1:8080)
//   CHROMIUM_PATH              the browser (default /usr/bin/chromium)
//   PRESENCE_REDIS_URL, REDIS_URL   the activity store, for redis-cli (default redis://127.0.0.1:6379)
//   PRESENCE_REDIS_KEY_PREFIX  the stack's key prefix (default none)
//   E2E_TIMEOUT_SECONDS        the whole run's limit (default 600)
// The ping interval is whatever the server answers; the stack is expected to be started
// with a short one for tests. Screenshots go to ../target/e2e-screenshots.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const BASE_URL = (process.env.PRESENCE_URL ?? 'http://127.0.0.1:8080').replace(/\/$/, '');
const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const REDIS_URL = process.env.PRESENCE_REDIS_URL ?? process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const KEY_PREFIX = process.env.PRESENCE_REDIS_KEY_PREFIX ?? '';
const RUN_TIMEOUT_MS = Number(process.env.E2E_TIMEOUT_SECONDS ?? 600) * 1000;
const SCREENSHOT_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '../../target/e2e-screenshots');

const USER = { username: 'usertest1', password: 'Test1234!' };
const ADMIN = { username: 'admintest1', password: 'Test1234!' };
const PING_PATH = '/presence.activity.v1.ActivityService/Ping';
const THRESHOLD_LABEL = "Seuil d'activité 'En ligne' (minutes)";
/** Live changes must reach the admin page within this long ("within seconds"). */
const LIVE_UPDATE_TIMEOUT_MS = 10_000;
/** The longest ping interval this test will wait for (a stack left at its 60 s default). */
const MAX_PING_INTERVAL_MS = 90_000;

// ---------------------------------------------------------------------------------------
// Small helpers

const sleep = (ms) => new Promise((resolveSleep) => setTimeout(resolveSleep, ms));

class StepFailure extends Error {}

function check(condition, message) {
  if (!condition) throw new StepFailure(message);
}

/** Polls `probe` until it returns a truthy value or `timeoutMs` passes. */
async function waitUntil(probe, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new StepFailure(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(200);
  }
}

function redis(...args) {
  try {
    return execFileSync('redis-cli', ['-u', REDIS_URL, '-c', '--no-raw', ...args], { encoding: 'utf8' }).trim();
  } catch (error) {
    throw new StepFailure(`redis-cli ${args.join(' ')} failed (is redis-cli installed and ${REDIS_URL} reachable?): ${error.message}`);
  }
}

const activityKey = (userId) => `${KEY_PREFIX}last_activity:${userId}`;
const keyExists = (userId) => redis('EXISTS', activityKey(userId)) === '(integer) 1';

async function screenshot(page, name) {
  await page.screenshot({ path: join(SCREENSHOT_DIR, `${name}.png`), fullPage: true });
}

/** Records when each Ping request of a browser context was sent, and by which tab. */
function recordPings(context) {
  const pings = [];
  context.on('request', (request) => {
    if (new URL(request.url()).pathname === PING_PATH) pings.push({ at: Date.now(), page: request.frame().page() });
  });
  return pings;
}

/**
 * Headless Chromium keeps every tab "visible": neither a tab brought in front of it, nor a
 * minimized window, nor a frozen lifecycle state flips document.visibilityState (checked
 * with Chromium 156). So this test emulates the Page Visibility API: the document's
 * `visibilityState`/`hidden` getters answer what the test sets, and a real
 * `visibilitychange` event is dispatched, exactly what a browser does on a tab switch.
 * The app under test is unchanged.
 */
function emulatedVisibility() {
  const native = Object.getOwnPropertyDescriptor(Document.prototype, 'visibilityState');
  let forced = null;
  const state = (document) => forced ?? native.get.call(document);
  Object.defineProperty(Document.prototype, 'visibilityState', {
    configurable: true,
    get() {
      return state(this);
    },
  });
  Object.defineProperty(Document.prototype, 'hidden', {
    configurable: true,
    get() {
      return state(this) === 'hidden';
    },
  });
  Object.defineProperty(window, '__e2eSetVisibility', {
    value: (next) => {
      forced = next;
      document.dispatchEvent(new Event('visibilitychange'));
    },
  });
}

async function setVisibility(page, state) {
  await page.evaluate((next) => window.__e2eSetVisibility(next), state);
  const seen = await page.evaluate(() => [document.visibilityState, document.hidden]);
  check(seen[0] === state && seen[1] === (state === 'hidden'), `the tab did not become ${state}: ${seen.join(', ')}`);
}

async function signIn(page, { username, password }) {
  await page.goto(`${BASE_URL}/login`);
  await page.getByLabel("Nom d'utilisateur").fill(username);
  await page.getByLabel('Mot de passe').fill(password);
  await page.getByRole('button', { name: 'Se connecter' }).click();
  await page.getByTestId('sign-out').waitFor({ timeout: 10_000 }).catch(async () => {
    const error = await page.getByTestId('login-error').textContent().catch(() => '');
    throw new StepFailure(`${username} could not sign in${error ? `: ${error}` : ''}`);
  });
}

/** The id of the signed-in user of `page`, as the app keeps it for the tab. */
async function signedInUserId(page) {
  const saved = await page.evaluate(() => sessionStorage.getItem('presence.session'));
  check(saved, 'no session in sessionStorage after sign-in');
  return JSON.parse(saved).userId;
}

async function waitForBadge(page, username, text, timeoutMs) {
  const badge = page.getByTestId(`status-badge-${username}`);
  await waitUntil(
    async () => ((await badge.textContent({ timeout: 1_000 }).catch(() => null)) ?? '').includes(text),
    timeoutMs,
    `${username} to show « ${text} » on the admin page`,
  );
}

/** Pages forward on the users page until the row of `username` is shown. */
async function showUserRow(page, username) {
  const row = page.getByTestId(`user-row-${username}`);
  const next = page.getByRole('button', { name: 'Page suivante' });
  for (let pageNumber = 1; pageNumber <= 100; pageNumber++) {
    await page.locator('table[aria-busy="false"]').waitFor({ timeout: 10_000 });
    if (await row.isVisible()) return;
    if (!(await next.isEnabled())) break;
    await next.click();
  }
  throw new StepFailure(`no row for ${username} on the users page`);
}

/** Marks the page so a later check can prove it was not reloaded in between. */
async function markNoReload(page) {
  await page.evaluate(() => {
    window.__e2eNotReloaded = true;
  });
}

async function checkNotReloaded(page) {
  check(await page.evaluate(() => window.__e2eNotReloaded === true), 'the admin page was reloaded');
}

// ---------------------------------------------------------------------------------------
// The run

const results = [];
const world = {};

async function step(name, body) {
  if (results.some((result) => result.outcome === 'failed')) {
    results.push({ name, outcome: 'skipped' });
    console.log(`- SKIP ${name}`);
    return;
  }
  const started = Date.now();
  try {
    await body();
    results.push({ name, outcome: 'passed' });
    console.log(`✓ PASS ${name} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
  } catch (error) {
    results.push({ name, outcome: 'failed' });
    console.log(`✗ FAIL ${name}\n    ${error instanceof StepFailure ? error.message : error.stack}`);
    for (const [label, page] of [['user', world.userPage], ['admin', world.adminPage]]) {
      if (page) await screenshot(page, `failure-${label}`).catch(() => undefined);
    }
  }
}

async function main() {
  mkdirSync(SCREENSHOT_DIR, { recursive: true });
  if (!existsSync(CHROMIUM_PATH)) {
    throw new Error(`no browser at ${CHROMIUM_PATH}: install Debian's chromium (apt-get install -y chromium) or set CHROMIUM_PATH`);
  }
  console.log(`e2e against ${BASE_URL}, Redis ${REDIS_URL}, key prefix "${KEY_PREFIX}"`);

  const browser = await chromium.launch({
    executablePath: CHROMIUM_PATH,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  // Two contexts: two separate browsers as far as the app is concerned (no shared storage
  // or locks), like a user and an admin on two machines.
  const adminContext = await browser.newContext({ locale: 'fr-FR' });
  const userContext = await browser.newContext({ locale: 'fr-FR' });
  await userContext.addInitScript(emulatedVisibility);
  const userPings = recordPings(userContext);

  try {
    await step('admintest1 signs in and lands on the users page', async () => {
      const page = (world.adminPage = await adminContext.newPage());
      await signIn(page, ADMIN);
      await page.waitForURL(`${BASE_URL}/admin/users`, { timeout: 5_000 });
      await showUserRow(page, USER.username);
      await waitUntil(
        async () => (await page.getByTestId('live-status').getAttribute('data-state')) === 'live',
        LIVE_UPDATE_TIMEOUT_MS,
        'the live status stream to connect',
      );
      const initially = await page.getByTestId(`status-badge-${USER.username}`).textContent();
      if (initially.includes('En ligne')) {
        console.log(`    note: ${USER.username} is already online (an earlier session?), so « En ligne » below proves less`);
      }
      await markNoReload(page);
      await screenshot(page, '01-admin-users-before');
    });

    await step('usertest1 signs in: pings, the Redis key appears, the admin sees « En ligne » live', async () => {
      const page = (world.userPage = await userContext.newPage());
      await page.goto(`${BASE_URL}/login`);
      await screenshot(page, '02-login');
      await signIn(page, USER);
      check(new URL(page.url()).pathname === '/', `usertest1 landed on ${page.url()}, not the home page`);
      await page.getByTestId('home-signed-in').waitFor({ timeout: 5_000 });
      await waitUntil(() => userPings.length > 0, 5_000, 'the first ping after sign-in');
      world.userId = await signedInUserId(page);
      await waitUntil(() => keyExists(world.userId), 5_000, `Redis key ${activityKey(world.userId)}`);
      const stamp = Number(redis('GET', activityKey(world.userId)).replace(/^"|"$/g, ''));
      check(Math.abs(Date.now() / 1000 - stamp) < 120, `the Redis key holds ${stamp}, not a recent Unix time`);
      await screenshot(page, '03-user-home');

      await waitForBadge(world.adminPage, USER.username, 'En ligne', LIVE_UPDATE_TIMEOUT_MS);
      await checkNotReloaded(world.adminPage);
      await screenshot(world.adminPage, '04-admin-users-online');

      // A user who opens an admin page is refused politely (the page reloads the app: the
      // pinger pings again at once, which the interval measurement below tolerates).
      await page.goto(`${BASE_URL}/admin/users`);
      await page.getByText('Cette page est réservée aux administrateurs.').waitFor({ timeout: 5_000 });
      await screenshot(page, '05-user-refused');
      await page.getByRole('link', { name: "Retour à l'accueil" }).click();
      await page.getByTestId('home-signed-in').waitFor({ timeout: 5_000 });
    });

    await step('a hidden tab sends no ping for two intervals, and pings at once when shown', async () => {
      const page = world.userPage;
      // The interval is the server's; measure it between two scheduled pings.
      const from = userPings.length;
      await waitUntil(() => userPings.length >= from + 2, 2 * MAX_PING_INTERVAL_MS, 'two scheduled pings');
      const intervalMs = userPings[from + 1].at - userPings[from].at;
      world.intervalMs = intervalMs;
      console.log(`    ping interval measured: ${(intervalMs / 1000).toFixed(1)} s`);

      await setVisibility(page, 'hidden');
      const whenHidden = userPings.length;
      await sleep(2 * intervalMs + 1_000);
      check(
        userPings.length === whenHidden,
        `${userPings.length - whenHidden} ping(s) were sent while the tab was hidden`,
      );

      const beforeShown = Date.now();
      await setVisibility(page, 'visible');
      await waitUntil(() => userPings.at(-1).at >= beforeShown, 3_000, 'a ping as soon as the tab is visible again');
      await waitUntil(() => keyExists(world.userId), 3_000, 'the Redis key after the tab is visible again');
    });

    await step('two tabs of usertest1: only one pings, the other takes over when it closes', async () => {
      const first = world.userPage;
      // A tab opened from the app shares its session (sessionStorage is copied to it).
      const [second] = await Promise.all([
        userContext.waitForEvent('page'),
        first.evaluate(() => {
          window.open('/', '_blank');
        }),
      ]);
      await second.getByTestId('home-signed-in').waitFor({ timeout: 5_000 });
      const from = userPings.length;
      await sleep(2 * world.intervalMs + 1_000);
      const tabs = new Set(userPings.slice(from).map((ping) => ping.page));
      check(userPings.length > from, 'no tab pinged');
      check(tabs.size === 1 && tabs.has(first), `pings came from ${tabs.size} tab(s), not just the first one`);

      const beforeClose = Date.now();
      await first.close();
      await waitUntil(
        () => userPings.some((ping) => ping.page === second && ping.at >= beforeClose),
        3_000,
        'the second tab to take over pinging',
      );
      world.userPage = second;
    });

    await step('admintest1 changes the threshold; it persists after a reload', async () => {
      const page = world.adminPage;
      await page.getByRole('link', { name: 'Paramètres', exact: true }).click();
      const field = page.getByLabel(THRESHOLD_LABEL);
      await waitUntil(async () => (await field.inputValue()) !== '', 5_000, 'the current threshold');
      world.originalThreshold = await field.inputValue();

      // Invalid input is refused in the browser, next to the field.
      await field.fill('0');
      await page.getByTestId('threshold-save').click();
      const error = page.getByTestId('threshold-error');
      await waitUntil(async () => (await error.textContent()).includes('entre 1 et 1440'), 3_000, 'the range error');
      await screenshot(page, '06-admin-settings-invalid');

      const next = world.originalThreshold === '30' ? '31' : '30';
      await field.fill(next);
      await page.getByTestId('threshold-save').click();
      await page.getByText('Seuil enregistré.').waitFor({ timeout: 5_000 });
      world.thresholdChanged = true;
      await screenshot(page, '07-admin-settings-saved');

      await page.reload();
      await waitUntil(async () => (await page.getByLabel(THRESHOLD_LABEL).inputValue()) === next, 5_000, `the threshold ${next} after reload`);
    });

    await step('usertest1 signs out: the key is gone and the admin sees « Hors ligne » live', async () => {
      const admin = world.adminPage;
      await admin.getByRole('link', { name: 'Utilisateurs', exact: true }).click();
      await showUserRow(admin, USER.username);
      await waitForBadge(admin, USER.username, 'En ligne', LIVE_UPDATE_TIMEOUT_MS);
      await waitUntil(
        async () => (await admin.getByTestId('live-status').getAttribute('data-state')) === 'live',
        LIVE_UPDATE_TIMEOUT_MS,
        'the live status stream to reconnect',
      );
      await markNoReload(admin);

      const page = world.userPage;
      await page.getByTestId('sign-out').click();
      await page.getByText('Vous êtes déconnecté.').waitFor({ timeout: 5_000 });
      await screenshot(page, '08-user-signed-out');
      await waitUntil(() => !keyExists(world.userId), 5_000, `Redis key ${activityKey(world.userId)} to be deleted`);

      await waitForBadge(admin, USER.username, 'Hors ligne', LIVE_UPDATE_TIMEOUT_MS);
      await checkNotReloaded(admin);
      await screenshot(admin, '09-admin-users-offline');
      const pingsAfterSignOut = userPings.length;
      await sleep(1_000);
      check(userPings.length === pingsAfterSignOut, 'the signed-out tab kept pinging');
    });
  } finally {
    await restoreThreshold().catch((error) => console.log(`! could not restore the threshold: ${error.message}`));
    // Leave nobody signed in, so the next run starts from "offline".
    for (const page of [world.userPage, world.adminPage]) {
      if (page && (await page.getByTestId('sign-out').isVisible().catch(() => false))) {
        await page.getByTestId('sign-out').click().catch(() => undefined);
        await page.getByTestId('signed-out').waitFor({ timeout: 5_000 }).catch(() => undefined);
      }
    }
    await browser.close();
  }
}

async function restoreThreshold() {
  if (!world.thresholdChanged) return;
  const page = world.adminPage;
  await page.goto(`${BASE_URL}/admin/settings`);
  const field = page.getByLabel(THRESHOLD_LABEL);
  await waitUntil(async () => (await field.inputValue()) !== '', 5_000, 'the settings page');
  await field.fill(world.originalThreshold);
  await page.getByTestId('threshold-save').click();
  await page.getByText('Seuil enregistré.').waitFor({ timeout: 5_000 });
  console.log(`  threshold restored to ${world.originalThreshold}`);
}

const watchdog = setTimeout(() => {
  console.error(`e2e: gave up after ${RUN_TIMEOUT_MS / 1000} s`);
  process.exit(1);
}, RUN_TIMEOUT_MS);
watchdog.unref();

try {
  await main();
} catch (error) {
  console.error(`e2e: ${error.message}`);
  results.push({ name: 'setup', outcome: 'failed' });
}

const count = (outcome) => results.filter((result) => result.outcome === outcome).length;
const skipped = count('skipped');
console.log(`${count('passed')} passed, ${count('failed')} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exitCode = count('failed') > 0 || results.length === 0 ? 1 : 0;
