// @vitest-environment jsdom
import { cleanup, fireEvent, render, screen, within } from '@testing-library/react';
import { MemoryRouter, useLocation } from 'react-router';
import { timestampFromMs } from '@bufbuild/protobuf/wkt';
import { afterEach, describe, expect, it } from 'vitest';
import { LoginEventKind } from '../gen/presence/activity/v1/activity_pb';
import { App } from '../App';
import { FAKE_PASSWORD, FakePresenceServer, servicesOver, someUsers } from '../testing/fake-server';
import { ServicesProvider } from '../ui/services-context';

afterEach(cleanup);

function Location() {
  const location = useLocation();
  return <output data-testid="location">{location.pathname}</output>;
}

const text = (element: HTMLElement) => element.textContent.replace(/\s+/g, ' ').trim();

/** The whole app over a fake server, `username` signed in, then on « Ce que nous enregistrons » from the menu. */
async function onMyRecordsPage(server: FakePresenceServer, username: string) {
  const services = servicesOver(server);
  render(
    <ServicesProvider services={services}>
      <MemoryRouter initialEntries={['/login']}>
        <App />
        <Location />
      </MemoryRouter>
    </ServicesProvider>,
  );
  fireEvent.change(screen.getByLabelText("Nom d'utilisateur"), { target: { value: username } });
  fireEvent.change(screen.getByLabelText('Mot de passe'), { target: { value: FAKE_PASSWORD } });
  fireEvent.click(screen.getByRole('button', { name: 'Se connecter' }));
  const navigation = await screen.findByRole('navigation', { name: 'Navigation principale' });
  fireEvent.click(within(navigation).getByRole('link', { name: 'Ce que nous enregistrons' }));
  await screen.findByRole('heading', { level: 1, name: 'Ce que nous enregistrons' });
}

describe('« Ce que nous enregistrons »', () => {
  it("shows a user's own records and how long each is kept, in plain French", async () => {
    const server = new FakePresenceServer(someUsers(2));
    server.thresholdMinutes = 15;
    const now = Date.now();
    server.myPresences.set('user-1', {
      lastActivity: timestampFromMs(now - 2 * 60_000),
      browsers: [
        { label: '01234567', lastActivity: timestampFromMs(now - 2 * 60_000) },
        { label: 'fedcba98', lastActivity: timestampFromMs(now - 10 * 60_000) },
      ],
      recentEvents: [
        {
          kind: LoginEventKind.LOGIN_FAILURE,
          occurredAt: timestampFromMs(now - 3_600_000),
          failureReason: 'wrong_password',
          clientAddress: '192.0.2.7',
          userAgent: 'Firefox/140',
        },
        { kind: LoginEventKind.LOGIN_SUCCESS, occurredAt: timestampFromMs(now - 2 * 3_600_000) },
      ],
    });

    await onMyRecordsPage(server, 'user1');

    expect(screen.getByTestId('location').textContent).toBe('/my-records');
    expect(document.title).toBe('Ce que nous enregistrons — Presence');
    const lastSignal = await screen.findByTestId('my-last-activity');
    expect(text(lastSignal)).toMatch(/^Dernier signal : il y a 2 min .*— conservé 30 min$/);
    expect(screen.getByRole('heading', { name: 'Navigateurs actifs' })).toBeTruthy();
    const browsers = within(screen.getByTestId('my-browsers')).getAllByRole('listitem').map(text);
    expect(browsers[0]).toMatch(/^Navigateur 01234567 : dernier signal il y a 2 min/);
    expect(browsers[1]).toMatch(/^Navigateur fedcba98 : dernier signal il y a 10 min/);
    expect(screen.getByRole('heading', { name: '20 derniers événements de connexion — conservés 365 jours' })).toBeTruthy();
    const rows = within(screen.getByTestId('my-login-events')).getAllByRole('row').slice(1);
    expect(rows.map((row) => row.querySelectorAll('td').item(1).textContent)).toEqual([
      'Échec de connexion (mot de passe incorrect)',
      'Connexion',
    ]);
    expect(rows[0]?.textContent).toContain('192.0.2.7');
    expect(rows[0]?.textContent).toContain('Firefox/140');
    expect(text(screen.getByTestId('my-online-counts'))).toContain(
      "Nombre d'utilisateurs en ligne : seulement des totaux, jamais qui",
    );
    // Only the caller's own records were asked for.
    expect(new Set(server.myPresenceCallers)).toEqual(new Set(['user-1']));
  });

  it('says whether idle detection observes anything, and what admins see now', async () => {
    const server = new FakePresenceServer(someUsers(1));
    server.myPresences.set('user-1', { idleAfterMinutes: 5, away: true });
    await onMyRecordsPage(server, 'user1');
    const idle = await screen.findByTestId('my-idle-detection');
    expect(text(idle)).toMatch(/^Activée : .* depuis 5 min, jamais laquelle\..*vous voient « Absent »\.$/);
  });

  it('says idle detection observes nothing while it is off', async () => {
    const server = new FakePresenceServer(someUsers(1));
    await onMyRecordsPage(server, 'user1');
    expect(text(await screen.findByTestId('my-idle-detection'))).toBe('Désactivée : rien n’est observé de vos saisies.');
  });

  it('says when nothing is kept', async () => {
    const server = new FakePresenceServer(someUsers(1));
    server.thresholdMinutes = 60;

    await onMyRecordsPage(server, 'user1');

    expect(text(await screen.findByTestId('my-last-activity'))).toBe('Dernier signal : aucun enregistré — conservé 2 h');
    expect(screen.getByTestId('no-browsers').textContent).toBe('Aucun navigateur actif.');
    expect(screen.getByTestId('no-events').textContent).toBe('Aucun événement enregistré.');
  });

  it('says the activity is unknown, not absent, when the server answers degraded', async () => {
    const server = new FakePresenceServer(someUsers(1));
    server.myPresences.set('user-1', {
      degraded: true,
      recentEvents: [{ kind: LoginEventKind.LOGIN_SUCCESS, occurredAt: timestampFromMs(Date.now() - 60_000) }],
    });

    await onMyRecordsPage(server, 'user1');

    expect((await screen.findByTestId('my-presence-degraded')).textContent).toContain('Mode dégradé');
    expect(text(screen.getByTestId('my-last-activity'))).toMatch(/^Dernier signal : inconnu/);
    expect(screen.queryByTestId('no-browsers')).toBeNull();
    expect(within(screen.getByTestId('my-login-events')).getAllByRole('row')).toHaveLength(2);
  });

  it('is in the menu of an administrator too, with their own records', async () => {
    const server = new FakePresenceServer(someUsers(1));
    server.myPresences.set('admin-1', {
      recentEvents: [{ kind: LoginEventKind.LOGOUT, occurredAt: timestampFromMs(Date.now() - 60_000) }],
    });

    await onMyRecordsPage(server, 'admintest1');

    const rows = within(await screen.findByTestId('my-login-events')).getAllByRole('row').slice(1);
    expect(rows.map((row) => row.querySelectorAll('td').item(1).textContent)).toEqual(['Déconnexion']);
    expect(new Set(server.myPresenceCallers)).toEqual(new Set(['admin-1']));
  });
});
