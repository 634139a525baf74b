// End-to-end test of presence (sign-in, pings, statuses, threshold, sign-out) in real
// headless Chromium, against a running stack.
//
// usertest1 signs in and pings (the Redis key appears) and reads what presence records
// about them (« Ce que nous enregistrons »), a hidden tab stops pinging,
// admintest1 sees usertest1 online without reloading, the threshold is edited and
// persists, and sign-out removes the key and turns usertest1 offline on the admin page
// within seconds.
//
// The scenarios run in order and share a user and an admin browser; each also sets up
// what it needs when run alone (`-g "name"`): whoever it needs is signed in first.
//
// Environment:
//   PRESENCE_URL               the gateway (default http://127.0.0.1:8080, in playwright.config.ts)
//   CHROMIUM_PATH              the browser (default /usr/bin/chromium)
//   PRESENCE_REDIS_URL, REDIS_URL   the activity store, for redis-cli (default redis://127.0.0.1:6379)
//   PRESENCE_REDIS_KEY_PREFIX  the stack's key prefix (default none)
// The ping interval is whatever the server answers; the stack is expected to be started
// with a short one for tests. Screenshots go to ../target/e2e/screenshots.
import { execFileSync } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, test, type Browser, type BrowserContext, type Page } from '@playwright/test';

const REDIS_URL = process.env.PRESENCE_REDIS_URL ?? process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const KEY_PREFIX = process.env.PRESENCE_REDIS_KEY_PREFIX ?? '';
const OUTPUT_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '../../target/e2e');

const USER = { username: 'usertest1', password: 'Test1234!' };
const ADMIN = { username: 'admintest1', password: 'Test1234!' };
const PING_PATH = '/presence.activity.v1.ActivityService/Ping';
const THRESHOLD_LABEL = "Seuil d'activité 'En ligne' (minutes)";
/** Live changes must reach the admin page within this long ("within seconds"). */
const LIVE_UPDATE_TIMEOUT_MS = 10_000;
/** The longest ping interval this test will wait for (a stack left at its 60 s default). */
const MAX_PING_INTERVAL_MS = 90_000;

declare global {
  interface Window {
    __e2eSetVisibility?: (state: DocumentVisibilityState) => void;
    __e2eNotReloaded?: boolean;
  }
}

// ---------------------------------------------------------------------------------------
// Helpers

const sleep = (ms: number) => new Promise((resolveSleep) => setTimeout(resolveSleep, ms));

function redis(...args: string[]): string {
  return execFileSync('redis-cli', ['-u', REDIS_URL, '-c', '--no-raw', ...args], { encoding: 'utf8' }).trim();
}

const activityKey = (userId: string) => `${KEY_PREFIX}last_activity:${userId}`;
const keyExists = (userId: string) => redis('EXISTS', activityKey(userId)) === '(integer) 1';

async function screenshot(page: Page, name: string) {
  await page.screenshot({ path: join(OUTPUT_DIR, 'screenshots', `${name}.png`), fullPage: true });
}

interface Ping {
  at: number;
  page: Page;
}

/** Records when each Ping request of a browser context was sent, and by which tab. */
function recordPings(context: BrowserContext): Ping[] {
  const pings: Ping[] = [];
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
  let forced: DocumentVisibilityState | null = null;
  const state = (document: Document) => forced ?? (native?.get?.call(document) as DocumentVisibilityState);
  Object.defineProperty(Document.prototype, 'visibilityState', {
    configurable: true,
    get(this: Document) {
      return state(this);
    },
  });
  Object.defineProperty(Document.prototype, 'hidden', {
    configurable: true,
    get(this: Document) {
      return state(this) === 'hidden';
    },
  });
  Object.defineProperty(window, '__e2eSetVisibility', {
    value: (next: DocumentVisibilityState) => {
      forced = next;
      document.dispatchEvent(new Event('visibilitychange'));
    },
  });
}

async function setVisibility(page: Page, state: DocumentVisibilityState) {
  await page.evaluate((next) => {
    window.__e2eSetVisibility?.(next);
  }, state);
  const seen = await page.evaluate(() => [document.visibilityState, document.hidden]);
  expect(seen, `the tab did not become ${state}`).toEqual([state, state === 'hidden']);
}

async function signIn(page: Page, { username, password }: { username: string; password: string }) {
  await page.goto('/login');
  await page.getByLabel("Nom d'utilisateur").fill(username);
  await page.getByLabel('Mot de passe').fill(password);
  await page.getByRole('button', { name: 'Se connecter' }).click();
  await expect(page.getByTestId('sign-out'), `${username} could not sign in`).toBeVisible({ timeout: 10_000 });
}

/** The id of the signed-in user of `page`, as the app keeps it for the tab. */
async function signedInUserId(page: Page): Promise<string> {
  const saved = await page.evaluate(() => sessionStorage.getItem('presence.session'));
  expect(saved, 'no session in sessionStorage after sign-in').toBeTruthy();
  return (JSON.parse(saved ?? '{}') as { userId: string }).userId;
}

async function expectBadge(page: Page, username: string, text: string) {
  await expect(page.getByTestId(`status-badge-${username}`), `${username} to show « ${text} » on the admin page`).toContainText(
    text,
    { timeout: LIVE_UPDATE_TIMEOUT_MS },
  );
}

async function expectLive(page: Page) {
  await expect(page.getByTestId('live-status'), 'the live status stream to connect').toHaveAttribute('data-state', 'live', {
    timeout: LIVE_UPDATE_TIMEOUT_MS,
  });
}

/** Pages forward on the users page until the row of `username` is shown. */
async function showUserRow(page: Page, username: string) {
  const row = page.getByTestId(`user-row-${username}`);
  const next = page.getByRole('button', { name: 'Page suivante' });
  for (let pageNumber = 1; pageNumber <= 100; pageNumber++) {
    await page.locator('table[aria-busy="false"]').waitFor({ timeout: 10_000 });
    if (await row.isVisible()) return;
    if (!(await next.isEnabled())) break;
    await next.click();
  }
  throw new Error(`no row for ${username} on the users page`);
}

/** Marks the page so a later check can prove it was not reloaded in between. */
async function markNoReload(page: Page) {
  await page.evaluate(() => {
    window.__e2eNotReloaded = true;
  });
}

async function expectNotReloaded(page: Page) {
  expect(await page.evaluate(() => window.__e2eNotReloaded === true), 'the admin page was reloaded').toBe(true);
}

// ---------------------------------------------------------------------------------------
// The two browsers, and what the scenarios learn on the way

interface World {
  adminContext: BrowserContext;
  userContext: BrowserContext;
  userPings: Ping[];
  adminPage?: Page;
  userPage?: Page;
  userId?: string;
  intervalMs?: number;
  originalThreshold?: string;
  idleDetectionOn?: boolean;
}

let world: World;

async function openBrowsers(browser: Browser): Promise<World> {
  // Two contexts: two separate browsers as far as the app is concerned (no shared storage
  // or locks), like a user and an admin on two machines.
  // The config's `use` (baseURL, locale) applies to them, and so do its traces and
  // screenshots of failed tests: the runner records every context open during a test.
  const adminContext = await browser.newContext();
  const userContext = await browser.newContext();
  await userContext.addInitScript(emulatedVisibility);
  return { adminContext, userContext, userPings: recordPings(userContext) };
}

/** admintest1 on the users page, signed in now if no scenario did so before. */
async function adminPage(): Promise<Page> {
  if (!world.adminPage) {
    const page = (world.adminPage = await world.adminContext.newPage());
    await signIn(page, ADMIN);
    await page.waitForURL('/admin/users', { timeout: 5_000 });
  }
  return world.adminPage;
}

/** usertest1 signed in on the home page, signed in now if no scenario did so before. */
async function userPage(): Promise<Page> {
  if (!world.userPage) {
    const page = (world.userPage = await world.userContext.newPage());
    await signIn(page, USER);
    await page.getByTestId('home-signed-in').waitFor({ timeout: 5_000 });
    world.userId = await signedInUserId(page);
  }
  return world.userPage;
}

/** The ping interval, measured between two scheduled pings (the server chooses it). */
async function pingInterval(): Promise<number> {
  if (world.intervalMs === undefined) {
    await userPage();
    const pings = world.userPings;
    const from = pings.length;
    await expect
      .poll(() => pings.length, { timeout: 2 * MAX_PING_INTERVAL_MS, message: 'two scheduled pings' })
      .toBeGreaterThanOrEqual(from + 2);
    world.intervalMs = (pings[from + 1]?.at ?? 0) - (pings[from]?.at ?? 0);
    console.log(`    ping interval measured: ${(world.intervalMs / 1000).toFixed(1)} s`);
  }
  return world.intervalMs;
}

test.describe.configure({ mode: 'serial' });

test.beforeAll(async ({ browser }) => {
  world = await openBrowsers(browser);
});

test.afterAll(async () => {
  await restoreThreshold().catch((error: unknown) => {
    console.log(`! could not restore the threshold: ${String(error)}`);
  });
  await turnIdleDetectionOff().catch((error: unknown) => {
    console.log(`! could not turn idle detection off: ${String(error)}`);
  });
  // Leave nobody signed in, so the next run starts from "offline".
  for (const page of [world.userPage, world.adminPage]) {
    if (page && !page.isClosed() && (await page.getByTestId('sign-out').isVisible().catch(() => false))) {
      await page.getByTestId('sign-out').click().catch(() => undefined);
      await page.getByTestId('signed-out').waitFor({ timeout: 5_000 }).catch(() => undefined);
    }
  }
  await world.adminContext.close();
  await world.userContext.close();
});

async function restoreThreshold() {
  if (world.originalThreshold === undefined || !world.adminPage || world.adminPage.isClosed()) return;
  const page = world.adminPage;
  await page.goto('/admin/settings');
  const field = page.getByLabel(THRESHOLD_LABEL);
  await expect(field).not.toHaveValue('', { timeout: 5_000 });
  await field.fill(world.originalThreshold);
  await page.getByTestId('threshold-save').click();
  await page.getByText('Seuil enregistré.').waitFor({ timeout: 5_000 });
  console.log(`  threshold restored to ${world.originalThreshold}`);
}

// ---------------------------------------------------------------------------------------
// The scenarios

test('admintest1 signs in and lands on the users page', async () => {
  const page = await adminPage();
  await showUserRow(page, USER.username);
  await expectLive(page);
  const initially = (await page.getByTestId(`status-badge-${USER.username}`).textContent()) ?? '';
  if (initially.includes('En ligne')) {
    console.log(`    note: ${USER.username} is already online (an earlier session?), so « En ligne » below proves less`);
  }
  await markNoReload(page);
  await screenshot(page, '01-admin-users-before');
});

test('usertest1 signs in: pings, the Redis key appears, the admin sees « En ligne » live', async () => {
  const admin = await adminPage();
  await showUserRow(admin, USER.username);
  await markNoReload(admin);

  const page = (world.userPage = await world.userContext.newPage());
  await page.goto('/login');
  await screenshot(page, '02-login');
  await signIn(page, USER);
  expect(new URL(page.url()).pathname, 'usertest1 lands on the home page').toBe('/');
  await page.getByTestId('home-signed-in').waitFor({ timeout: 5_000 });
  await expect.poll(() => world.userPings.length, { timeout: 5_000, message: 'the first ping after sign-in' }).toBeGreaterThan(0);
  const userId = (world.userId = await signedInUserId(page));
  await expect.poll(() => keyExists(userId), { timeout: 5_000, message: `Redis key ${activityKey(userId)}` }).toBe(true);
  const stamp = Number(redis('GET', activityKey(userId)).replace(/^"|"$/g, ''));
  expect(Math.abs(Date.now() / 1000 - stamp), `the Redis key holds ${stamp}, not a recent Unix time`).toBeLessThan(120);
  await screenshot(page, '03-user-home');

  await expectBadge(admin, USER.username, 'En ligne');
  await expectNotReloaded(admin);
  await screenshot(admin, '04-admin-users-online');

  // A user who opens an admin page is refused politely (the page reloads the app: the
  // pinger pings again at once, which the interval measurement below tolerates).
  await page.goto('/admin/users');
  await page.getByText('Cette page est réservée aux administrateurs.').waitFor({ timeout: 5_000 });
  await screenshot(page, '05-user-refused');
  await page.getByRole('link', { name: "Retour à l'accueil" }).click();
  await page.getByTestId('home-signed-in').waitFor({ timeout: 5_000 });
});

test('admintest1 finds usertest1 by typing « user »; the link keeps the search', async () => {
  const admin = await adminPage();
  await markNoReload(admin);
  await admin.getByLabel('Rechercher un utilisateur').fill('user');
  await admin.waitForURL('/admin/users?q=user', { timeout: 5_000 });
  await expect(admin.getByTestId(`user-row-${USER.username}`)).toBeVisible({ timeout: 5_000 });
  await expect(admin.getByTestId(`user-row-${ADMIN.username}`), 'admintest1 does not match « user »').toBeHidden();
  await expectBadge(admin, USER.username, 'En ligne');
  await expectNotReloaded(admin);
  await screenshot(admin, '04b-admin-users-search');

  // Clearing the field lists everyone again, for the scenarios that follow.
  await admin.getByLabel('Rechercher un utilisateur').fill('');
  await admin.waitForURL('/admin/users', { timeout: 5_000 });
  await expect(admin.getByTestId(`user-row-${ADMIN.username}`)).toBeVisible({ timeout: 5_000 });
});

test("admintest1 opens usertest1's page: online by a recent ping, the sign-in listed, and back", async () => {
  const admin = await adminPage();
  await admin.getByRole('link', { name: USER.username, exact: true }).click();
  await admin.waitForURL(`/admin/users/${world.userId ?? ''}`, { timeout: 5_000 });
  const sentence = admin.getByTestId('presence-sentence');
  await expect(sentence).toHaveText(/En ligne — dernière activité (il y a \d+\s*s|à l'instant)/, { timeout: 5_000 });
  const events = admin.getByTestId('login-events').locator('tbody tr');
  await expect(events.first(), 'the newest event is the sign-in').toContainText('Connexion');
  await expect(events.first()).toContainText('127.0.0.1');
  await screenshot(admin, '04d-admin-user-presence');
  await admin.getByRole('link', { name: /Retour à la liste/ }).click();
  await admin.waitForURL('/admin/users', { timeout: 5_000 });
  await showUserRow(admin, USER.username);
});

test('usertest1 opens « Ce que nous enregistrons »: their own sign-in, last signal and retention', async () => {
  const page = await userPage();
  await page.getByRole('navigation', { name: 'Navigation principale' }).getByRole('link', { name: 'Ce que nous enregistrons' }).click();
  await page.waitForURL('/my-records', { timeout: 5_000 });
  await expect(page.getByRole('heading', { level: 1 })).toHaveText('Ce que nous enregistrons');
  await expect(page.getByTestId('my-last-activity')).toHaveText(/Dernier signal : (il y a \d+\s*(s|min)|à l'instant).*— conservé \d+ (min|h)/, {
    timeout: 5_000,
  });
  const events = page.getByTestId('my-login-events').locator('tbody tr');
  await expect(events.first(), 'the newest event is their sign-in').toContainText('Connexion');
  await expect(events.first()).toContainText('127.0.0.1');
  await expect(page.getByRole('heading', { name: /20 derniers événements de connexion — conservés \d+ jours?/ })).toBeVisible();
  await expect(page.getByTestId('my-online-counts')).toContainText('seulement des totaux, jamais qui');
  await screenshot(page, '04e-user-my-records');
  await page.getByRole('link', { name: 'Accueil' }).click();
  await page.getByTestId('home-signed-in').waitFor({ timeout: 5_000 });
});

test('admintest1 sees the online count chart with at least one point, and its table', async () => {
  const admin = await adminPage();
  const chart = admin.getByTestId('online-chart').locator('svg[data-points]');
  const ranges = ['7 jours', '24 heures'];
  let choice = 0;
  // The chart refreshes every minute; switching the range fetches it at once.
  await expect
    .poll(
      async () => {
        await admin.getByLabel(ranges[choice++ % 2] ?? '24 heures').check();
        return Number((await chart.getAttribute('data-points')) ?? '0');
      },
      { timeout: 30_000, message: 'a recorded online count on the chart' },
    )
    .toBeGreaterThan(0);
  await admin.getByText('Voir les données en tableau').click();
  await expect(admin.getByTestId('online-chart-table').locator('tbody tr').first()).toBeVisible();
  await screenshot(admin, '04c-admin-online-chart');
  await admin.getByText('Voir les données en tableau').click();
});

test('a hidden tab sends no ping for two intervals, and pings at once when shown', async () => {
  const page = await userPage();
  const intervalMs = await pingInterval();
  const pings = world.userPings;

  await setVisibility(page, 'hidden');
  const whenHidden = pings.length;
  await sleep(2 * intervalMs + 1_000);
  expect(pings.length - whenHidden, 'pings sent while the tab was hidden').toBe(0);

  const beforeShown = Date.now();
  await setVisibility(page, 'visible');
  await expect
    .poll(() => pings.at(-1)?.at ?? 0, { timeout: 3_000, message: 'a ping as soon as the tab is visible again' })
    .toBeGreaterThanOrEqual(beforeShown);
  const userId = world.userId ?? '';
  await expect
    .poll(() => keyExists(userId), { timeout: 3_000, message: 'the Redis key after the tab is visible again' })
    .toBe(true);
});

test('two tabs of usertest1: only one pings, the other takes over when it closes', async () => {
  const first = await userPage();
  const intervalMs = await pingInterval();
  const pings = world.userPings;
  // A tab opened from the app shares its session (sessionStorage is copied to it).
  const [second] = await Promise.all([
    world.userContext.waitForEvent('page'),
    first.evaluate(() => {
      window.open('/', '_blank');
    }),
  ]);
  await second.getByTestId('home-signed-in').waitFor({ timeout: 5_000 });
  const from = pings.length;
  await sleep(2 * intervalMs + 1_000);
  const tabs = new Set(pings.slice(from).map((ping) => ping.page));
  expect(pings.length, 'no tab pinged').toBeGreaterThan(from);
  expect(tabs.size === 1 && tabs.has(first), `pings came from ${tabs.size} tab(s), not just the first one`).toBe(true);

  const beforeClose = Date.now();
  await first.close();
  await expect
    .poll(() => pings.some((ping) => ping.page === second && ping.at >= beforeClose), {
      timeout: 3_000,
      message: 'the second tab to take over pinging',
    })
    .toBe(true);
  world.userPage = second;
});

test('admintest1 changes the threshold; it persists after a reload', async () => {
  const page = await adminPage();
  await page.getByRole('link', { name: 'Paramètres', exact: true }).click();
  const field = page.getByLabel(THRESHOLD_LABEL);
  await expect(field, 'the current threshold').not.toHaveValue('', { timeout: 5_000 });
  const original = await field.inputValue();

  // Invalid input is refused in the browser, next to the field.
  await field.fill('0');
  await page.getByTestId('threshold-save').click();
  await expect(page.getByTestId('threshold-error'), 'the range error').toContainText('entre 1 et 1440', { timeout: 3_000 });
  await screenshot(page, '06-admin-settings-invalid');

  const next = original === '30' ? '31' : '30';
  await field.fill(next);
  await page.getByTestId('threshold-save').click();
  await page.getByText('Seuil enregistré.').waitFor({ timeout: 5_000 });
  world.originalThreshold = original;
  await screenshot(page, '07-admin-settings-saved');

  await page.reload();
  await expect(page.getByLabel(THRESHOLD_LABEL), `the threshold ${next} after reload`).toHaveValue(next, { timeout: 5_000 });
});

test('on a 390 px wide phone the users page shows every user as a compact row, nothing cut', async () => {
  const admin = await adminPage();
  const wide = admin.viewportSize();
  await admin.setViewportSize({ width: 390, height: 844 });
  try {
    await admin.getByRole('link', { name: 'Utilisateurs', exact: true }).click();
    await showUserRow(admin, USER.username);
    const badge = admin.getByTestId(`status-badge-${USER.username}`);
    await expect(badge).toBeVisible();
    const box = await badge.boundingBox();
    expect(box && box.x + box.width <= 390, `the status badge ends at ${String(box && box.x + box.width)} px`).toBe(true);
    const overflow = await admin.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    expect(overflow, 'the page scrolls sideways').toBeLessThanOrEqual(0);
    const lastSeen = admin.getByTestId(`user-row-${USER.username}`).locator('td[data-label="Dernière activité"]');
    await expect(lastSeen).toBeVisible();
    const seenBox = await lastSeen.boundingBox();
    expect(seenBox && seenBox.x + seenBox.width <= 390, 'the last activity fits the screen').toBe(true);
    await screenshot(admin, '07b-admin-users-390px');
  } finally {
    if (wide) await admin.setViewportSize(wide);
  }
});

test('usertest1 in a second browser: the admin sees « 2 navigateurs », and one signing out leaves « En ligne »', async ({
  browser,
}) => {
  const admin = await adminPage();
  await userPage();
  await admin.getByRole('link', { name: 'Utilisateurs', exact: true }).click();
  await showUserRow(admin, USER.username);
  await expectBadge(admin, USER.username, 'En ligne');
  await expectLive(admin);
  await markNoReload(admin);

  // Another browser context: its own localStorage, so its own browser id (a phone, say).
  const phoneContext = await browser.newContext();
  try {
    const phone = await phoneContext.newPage();
    await signIn(phone, USER);
    await expect(admin.getByTestId(`browsers-${USER.username}`), 'the admin to see two browsers').toHaveText('2 navigateurs', {
      timeout: LIVE_UPDATE_TIMEOUT_MS + MAX_PING_INTERVAL_MS,
    });
    await screenshot(admin, '07c-admin-users-two-browsers');

    await phone.getByTestId('sign-out').click();
    await phone.getByText('Vous êtes déconnecté.').waitFor({ timeout: 5_000 });
    await expect(admin.getByTestId(`browsers-${USER.username}`), 'one browser left').toHaveCount(0, {
      timeout: LIVE_UPDATE_TIMEOUT_MS,
    });
    await expectBadge(admin, USER.username, 'En ligne');
    await expectNotReloaded(admin);
  } finally {
    await phoneContext.close();
  }
});

test('with idle detection on and a one-minute delay, the admin sees « Absent », and input brings « En ligne » back', async () => {
  const admin = await adminPage();
  const page = await userPage();
  await admin.getByRole('link', { name: 'Paramètres', exact: true }).click();
  await admin.getByTestId('idle-enabled').check();
  await admin.getByTestId('idle-minutes').fill('1');
  await admin.getByTestId('idle-save').click();
  await admin.getByText('Détection d’absence activée.').waitFor({ timeout: 5_000 });
  world.idleDetectionOn = true;
  await screenshot(admin, '07d-admin-settings-idle-detection');

  await admin.getByRole('link', { name: 'Utilisateurs', exact: true }).click();
  await showUserRow(admin, USER.username);
  await expectLive(admin);
  // No input in the user's tab: after the minute, and the ping that follows, « Absent ».
  await expectBadgeWithin(admin, USER.username, 'Absent', 60_000 + 2 * MAX_PING_INTERVAL_MS);
  await screenshot(admin, '07e-admin-users-away');

  await page.mouse.move(20, 20);
  await page.mouse.move(60, 60);
  await expectBadge(admin, USER.username, 'En ligne');

  await turnIdleDetectionOff();
});

async function expectBadgeWithin(page: Page, username: string, text: string, timeout: number) {
  await expect(page.getByTestId(`status-badge-${username}`), `${username} to show « ${text} »`).toHaveText(text, { timeout });
}

async function turnIdleDetectionOff() {
  if (!world.idleDetectionOn || !world.adminPage || world.adminPage.isClosed()) return;
  const page = world.adminPage;
  await page.goto('/admin/settings');
  await page.getByTestId('idle-enabled').uncheck();
  await page.getByTestId('idle-save').click();
  await page.getByText('Détection d’absence désactivée.').waitFor({ timeout: 5_000 });
  world.idleDetectionOn = false;
}

test('usertest1 signs out: the key is gone and the admin sees « Hors ligne » live', async () => {
  const admin = await adminPage();
  const page = await userPage();
  await admin.getByRole('link', { name: 'Utilisateurs', exact: true }).click();
  await showUserRow(admin, USER.username);
  await expectBadge(admin, USER.username, 'En ligne');
  await expectLive(admin);
  await markNoReload(admin);

  await page.getByTestId('sign-out').click();
  await page.getByText('Vous êtes déconnecté.').waitFor({ timeout: 5_000 });
  await screenshot(page, '08-user-signed-out');
  const userId = world.userId ?? '';
  await expect
    .poll(() => keyExists(userId), { timeout: 5_000, message: `Redis key ${activityKey(userId)} to be deleted` })
    .toBe(false);

  await expectBadge(admin, USER.username, 'Hors ligne');
  await expectNotReloaded(admin);
  await screenshot(admin, '09-admin-users-offline');
  const pingsAfterSignOut = world.userPings.length;
  await sleep(1_000);
  expect(world.userPings.length, 'the signed-out tab kept pinging').toBe(pingsAfterSignOut);

  // The user's page says why: the sign-out, at the minute it happened.
  await admin.getByRole('link', { name: USER.username, exact: true }).click();
  await expect(admin.getByTestId('presence-sentence')).toHaveText(/Hors ligne — déconnecté à \d\d:\d\d/, { timeout: 5_000 });
  await expect(admin.getByTestId('login-events').locator('tbody tr').first()).toContainText('Déconnexion');
  await screenshot(admin, '09b-admin-user-signed-out');
});
