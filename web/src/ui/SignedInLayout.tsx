/**
 * The frame of every page behind sign-in: header, navigation and sign-out. Without a
 * session it sends the visitor to the sign-in page, remembering where they were going.
 */
import { useState } from 'react';
import { Navigate, NavLink, Outlet, useLocation } from 'react-router';
import { MY_PRESENCE_TITLE } from '../pages/MyPresencePage';
import { isAdmin } from '../session';
import { paths, type ReturnTo } from './paths';
import { useServices, useSessionState } from './services-context';

export function SignedInLayout() {
  const { signOut } = useServices();
  const { session } = useSessionState();
  const location = useLocation();
  const [signingOut, setSigningOut] = useState(false);

  if (!session) {
    const returnTo: ReturnTo = { from: location.pathname };
    return <Navigate to={paths.login} replace state={returnTo} />;
  }

  const onSignOut = () => {
    setSigningOut(true);
    // The session ends whatever the network does, and this layout then redirects.
    void signOut().finally(() => {
      setSigningOut(false);
    });
  };

  return (
    <>
      <a className="skip-link" href="#main">
        Aller au contenu
      </a>
      <header className="site-header">
        <span className="brand">Presence</span>
        <nav aria-label="Navigation principale">
          <ul>
            {isAdmin(session) ? (
              <>
                <li>
                  <NavLink to={paths.adminUsers}>Utilisateurs</NavLink>
                </li>
                <li>
                  <NavLink to={paths.adminSettings}>Paramètres</NavLink>
                </li>
              </>
            ) : (
              <li>
                <NavLink to={paths.home}>Accueil</NavLink>
              </li>
            )}
            <li>
              <NavLink to={paths.myPresence}>{MY_PRESENCE_TITLE}</NavLink>
            </li>
          </ul>
        </nav>
        <div className="account">
          <span data-testid="signed-in-as">Connecté en tant que {session.displayName}</span>
          <button type="button" onClick={onSignOut} disabled={signingOut} data-testid="sign-out">
            Se déconnecter
          </button>
        </div>
      </header>
      <main id="main" tabIndex={-1}>
        <Outlet />
      </main>
    </>
  );
}
