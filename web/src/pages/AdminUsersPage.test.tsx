// @vitest-environment jsdom
import { cleanup, fireEvent, render, screen, waitFor } from '@testing-library/react';
import { MemoryRouter } from 'react-router';
import { afterEach, describe, expect, it } from 'vitest';
import { App } from '../App';
import { SESSION_EXPIRED_MESSAGE } from '../errors';
import { soloElection } from '../leader-election';
import { createAppServices } from '../services';
import { FAKE_PASSWORD, FakePresenceServer, someUsers } from '../testing/fake-server';
import { FakeVisibility, memoryStorage } from '../testing/fakes';
import { ServicesProvider } from '../ui/services-context';

afterEach(cleanup);

/** The whole app over a fake server, with admintest1 signed in on the live users page. */
async function adminOnUsersPage() {
  const server = new FakePresenceServer(someUsers(3));
  const services = createAppServices({
    storage: memoryStorage(),
    createApi: (store) => server.api(store),
    visibility: () => new FakeVisibility(true),
    election: () => soloElection(),
  });
  render(
    <ServicesProvider services={services}>
      <MemoryRouter initialEntries={['/login']}>
        <App />
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
    expect(screen.getByRole('table').getAttribute('aria-busy')).toBe('false');
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
