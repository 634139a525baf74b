// @vitest-environment jsdom
import { cleanup, fireEvent, render, screen, waitFor, within } from '@testing-library/react';
import { MemoryRouter, useLocation } from 'react-router';
import { timestampFromMs } from '@bufbuild/protobuf/wkt';
import { afterEach, describe, expect, it } from 'vitest';
import { LoginEventKind, StatusFilter } from '../gen/presence/admin/v1/admin_pb';
import { USER_NOT_FOUND_MESSAGE } from '../admin/use-user-presence';
import { App } from '../App';
import { SESSION_EXPIRED_MESSAGE } from '../errors';
import { FAKE_PASSWORD, FakePresenceServer, servicesOver, someUsers } from '../testing/fake-server';
import { ServicesProvider } from '../ui/services-context';

afterEach(cleanup);

/** Shows where the app is, as a link to it would say. */
function Location() {
  const location = useLocation();
  return <output data-testid="location">{location.pathname + location.search}</output>;
}

const shownUsers = () =>
  screen
    .getAllByRole('row')
    .map((row) => row.dataset.testid?.replace('user-row-', ''))
    .filter(Boolean);

/** The whole app over a fake server, with admintest1 signed in on the live users page. */
async function adminOnUsersPage(server = new FakePresenceServer(someUsers(3))) {
  const services = servicesOver(server);
  render(
    <ServicesProvider services={services}>
      <MemoryRouter initialEntries={['/login']}>
        <App />
        <Location />
      </MemoryRouter>
    </ServicesProvider>,
  );
  fireEvent.change(screen.getByLabelText("Nom d'utilisateur"), { target: { value: 'admintest1' } });
  fireEvent.change(screen.getByLabelText('Mot de passe'), { target: { value: FAKE_PASSWORD } });
  fireEvent.click(screen.getByRole('button', { name: 'Se connecter' }));
  // Live, and the snapshot's refetch done: from here on only the stream calls the server.
  await waitFor(() => {
    expect(screen.getByTestId('live-status').dataset.state).toBe('live');
    expect(server.listRequests).toHaveLength(2);
    expect(screen.getByRole('table', { name: /Utilisateurs, page/ }).getAttribute('aria-busy')).toBe('false');
  });
  expect(screen.getByTestId('status-badge-user1').textContent).toContain('Hors ligne');
  return { server, services };
}

describe('the live users page', () => {
  it('shows « Vous êtes déconnecté » after signing out, not an expired session', async () => {
    const { server } = await adminOnUsersPage();

    // Logout revokes the token, so the server ends the page's stream with UNAUTHENTICATED.
    fireEvent.click(screen.getByTestId('sign-out'));
    expect((await screen.findByTestId('signed-out')).textContent).toBe('Vous êtes déconnecté.');
    expect(screen.queryByTestId('session-expired')).toBeNull();
    // And the server did sign the token out.
    await waitFor(() => {
      expect(server.liveTokens()).toBe(0);
    });
  });

  it('says the session expired when the server ends the stream of a revoked token', async () => {
    const { server } = await adminOnUsersPage();

    server.revokeTokensOf('admintest1');
    expect((await screen.findByTestId('session-expired')).textContent).toBe(SESSION_EXPIRED_MESSAGE);
    expect(screen.queryByTestId('signed-out')).toBeNull();
  });
});

describe('the users search', () => {
  it('asks once when typing pauses, puts the query in the URL and shows only the matches', async () => {
    const users = someUsers(3);
    users.push({ userId: 'user-e', username: 'edurand', displayName: 'Élodie Durand', role: 'user', online: false });
    const { server } = await adminOnUsersPage(new FakePresenceServer(users));
    const listedBefore = server.listRequests.length;
    const field = screen.getByLabelText('Rechercher un utilisateur');

    for (const typed of ['e', 'el', 'elo', 'elodie']) fireEvent.change(field, { target: { value: typed } });
    await waitFor(() => {
      expect(shownUsers()).toEqual(['edurand']);
    });
    const searches = server.listRequests.slice(listedBefore);
    expect(searches.map((request) => request.query)).toEqual(['elodie']);
    expect(screen.getByTestId('location').textContent).toBe('/admin/users?q=elodie');

    // Clearing the field lists everyone again, and the URL loses its query.
    fireEvent.change(field, { target: { value: '' } });
    await waitFor(() => {
      expect(shownUsers()).toEqual(['admintest1', 'user1', 'user2', 'user3', 'edurand']);
    });
    expect(screen.getByTestId('location').textContent).toBe('/admin/users');
  });

  it('says « 2 navigateurs » live when a user is online in more than one browser, and nothing for one', async () => {
    const { server } = await adminOnUsersPage();
    server.setOnline('user2', true, 2);
    await waitFor(() => {
      expect(screen.getByTestId('browsers-user2').textContent).toBe('2 navigateurs');
    });
    server.setOnline('user2', true, 1);
    await waitFor(() => {
      expect(screen.queryByTestId('browsers-user2')).toBeNull();
    });
    expect(screen.getByTestId('status-badge-user2').textContent).toContain('En ligne');
  });

  it('shows « Absent » live, and counts away users apart from online and offline ones', async () => {
    const { server } = await adminOnUsersPage();
    server.setOnline('user2', true);
    server.setAway('user2', true);
    await waitFor(() => {
      expect(screen.getByTestId('status-badge-user2').textContent).toBe('Absent');
    });
    await waitFor(() => {
      expect(screen.getByTestId('count-away').textContent).toBe('1');
    });
    server.setAway('user2', false);
    await waitFor(() => {
      expect(screen.getByTestId('status-badge-user2').textContent).toBe('En ligne');
    });
  });

  it('says when nothing matches, applies live changes to the matches and keeps the query with the filter', async () => {
    const { server } = await adminOnUsersPage();
    const field = screen.getByLabelText('Rechercher un utilisateur');

    fireEvent.change(field, { target: { value: 'nobody' } });
    expect((await screen.findByTestId('no-users')).textContent).toBe('Aucun utilisateur ne correspond à « nobody ».');

    fireEvent.change(field, { target: { value: 'USER2' } });
    await waitFor(() => {
      expect(shownUsers()).toEqual(['user2']);
    });
    server.setOnline('user2', true);
    await waitFor(() => {
      expect(screen.getByTestId('status-badge-user2').textContent).toContain('En ligne');
    });

    // The filter applies to the matches: user2 is online now, so no offline user matches.
    fireEvent.click(screen.getByLabelText('Hors ligne'));
    expect((await screen.findByTestId('no-users')).textContent).toBe('Aucun utilisateur ne correspond à « USER2 ».');
    const last = server.listRequests.at(-1);
    expect(last?.filter).toBe(StatusFilter.OFFLINE);
    expect(last?.query).toBe('USER2');
  });
});

describe('the online count trend', () => {
  it('shows the last 24 hours at first, then the range chosen', async () => {
    const server = new FakePresenceServer(someUsers(3));
    server.historyPoints = [{ at: timestampFromMs(Date.now() - 60_000), maxOnline: 2n, meanOnline: 2, samples: 1 }];
    await adminOnUsersPage(server);
    await waitFor(() => {
      expect(screen.getByTestId('online-chart').querySelector('svg')?.dataset.points).toBe('1');
    });
    const span = (index: number) => {
      const request = server.historyRequests.at(index);
      return Number((request?.to?.seconds ?? 0n) - (request?.from?.seconds ?? 0n));
    };
    expect(span(0)).toBe(86_400);

    fireEvent.click(screen.getByLabelText('7 jours'));
    await waitFor(() => {
      expect(server.historyRequests).toHaveLength(2);
    });
    expect(span(1)).toBe(7 * 86_400);
  });
});

describe('the last seen column', () => {
  it('shows relative times, sorts the page by last seen both ways and back to usernames', async () => {
    const users = someUsers(3);
    const now = Date.now();
    const seen: Record<string, number> = { user1: now - 3 * 60_000, user2: now - 40_000, admintest1: now - 2 * 3_600_000 };
    for (const user of users) user.lastActivityMs = seen[user.username];
    await adminOnUsersPage(new FakePresenceServer(users));

    const lastActivity = (username: string) => screen.getByTestId(`user-row-${username}`).querySelectorAll('td').item(2);
    expect(lastActivity('user2').querySelector('time')?.firstChild?.textContent).toMatch(/^il y a 4\d\s?s$/);
    expect(lastActivity('user1').querySelector('time')?.firstChild?.textContent).toMatch(/^il y a 3\smin$/);
    expect(lastActivity('user3').textContent).toBe('—');
    // The exact time is there for hover (title) and for screen readers.
    const exact = lastActivity('user1').querySelector('time')?.getAttribute('title') ?? '';
    expect(exact).toMatch(/^\d\d\/\d\d\/\d{4} \d\d:\d\d:\d\d$/);
    expect(lastActivity('user1').textContent).toContain(`(${exact})`);

    const header = screen.getByTestId('sort-last-seen');
    expect(header.closest('th')?.getAttribute('aria-sort')).toBe('none');
    fireEvent.click(header);
    expect(shownUsers()).toEqual(['user2', 'user1', 'admintest1', 'user3']);
    expect(header.closest('th')?.getAttribute('aria-sort')).toBe('descending');
    fireEvent.click(header);
    expect(shownUsers()).toEqual(['admintest1', 'user1', 'user2', 'user3']);
    expect(header.closest('th')?.getAttribute('aria-sort')).toBe('ascending');
    fireEvent.click(header);
    expect(shownUsers()).toEqual(['admintest1', 'user1', 'user2', 'user3']);
    expect(header.closest('th')?.getAttribute('aria-sort')).toBe('none');
  });
});

describe("a user's page", () => {
  it('opens from the row with its own URL, says why in French, lists the events and goes back to the search', async () => {
    const server = new FakePresenceServer(someUsers(3));
    const now = Date.now();
    server.presences.set('user-2', {
      status: { online: false, lastActivityAt: timestampFromMs(now - 2 * 3_600_000) },
      thresholdMinutes: 15,
      recentEvents: [
        {
          kind: LoginEventKind.LOGIN_FAILURE,
          occurredAt: timestampFromMs(now - 3 * 3_600_000),
          failureReason: 'wrong_password',
          clientAddress: '192.0.2.7',
          userAgent: 'Firefox/140',
        },
        { kind: LoginEventKind.LOGIN_SUCCESS, occurredAt: timestampFromMs(now - 4 * 3_600_000) },
      ],
    });
    await adminOnUsersPage(server);
    fireEvent.change(screen.getByLabelText('Rechercher un utilisateur'), { target: { value: 'user' } });
    await waitFor(() => {
      expect(screen.getByTestId('location').textContent).toBe('/admin/users?q=user');
    });

    fireEvent.click(screen.getByRole('link', { name: 'user2' }));
    const sentence = await screen.findByTestId('presence-sentence');
    expect(screen.getByTestId('location').textContent).toBe('/admin/users/user-2');
    expect(server.presenceRequests).toEqual(['user-2']);
    expect(sentence.textContent.replace(/\s/g, ' ')).toContain('Hors ligne — dernière activité il y a 2 h (seuil : 15 min)');
    expect(screen.getByRole('heading', { level: 1 }).textContent).toBe('User 2 (user2)');
    const rows = within(screen.getByTestId('login-events')).getAllByRole('row').slice(1);
    expect(rows.map((row) => row.querySelectorAll('td').item(1).textContent)).toEqual([
      'Échec de connexion (mot de passe incorrect)',
      'Connexion',
    ]);
    expect(rows[0]?.textContent).toContain('192.0.2.7');
    expect(rows[0]?.textContent).toContain('Firefox/140');

    fireEvent.click(screen.getByRole('link', { name: /Retour à la liste/ }));
    await waitFor(() => {
      expect(screen.getByTestId('location').textContent).toBe('/admin/users?q=user');
    });
  });

  it('says so when the user no longer exists', async () => {
    const { server } = await adminOnUsersPage();
    // Deleted after the list was shown.
    server.users.splice(server.users.findIndex((user) => user.username === 'user1'), 1);
    fireEvent.click(screen.getByRole('link', { name: 'user1' }));
    expect((await screen.findByTestId('presence-error')).textContent).toBe(USER_NOT_FOUND_MESSAGE);
    expect(screen.queryByTestId('presence-sentence')).toBeNull();
  });
});
