/** A signed-in user's page: confirms the sign-in; admins go straight to their pages. */
import { Navigate } from 'react-router';
import { isAdmin } from '../session';
import { paths } from '../ui/paths';
import { usePageTitle, useSessionState } from '../ui/services-context';

export function HomePage() {
  usePageTitle('Accueil');
  const { session } = useSessionState();
  if (!session) return null;
  if (isAdmin(session)) return <Navigate to={paths.adminUsers} replace />;

  return (
    <section aria-labelledby="home-title">
      <h1 id="home-title">Bonjour {session.displayName}</h1>
      <p data-testid="home-signed-in">Vous êtes connecté.</p>
      <p className="hint">
        Votre présence est signalée automatiquement tant que cette page est affichée à l'écran.
      </p>
    </section>
  );
}
