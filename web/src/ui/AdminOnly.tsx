/** Shows admin pages to admins, and a polite refusal to everyone else. */
import { Link, Outlet } from 'react-router';
import { ADMIN_ONLY_MESSAGE } from '../errors';
import { isAdmin } from '../session';
import { paths } from './paths';
import { usePageTitle, useSessionState } from './services-context';

export function AdminOnly() {
  const { session } = useSessionState();
  if (session && isAdmin(session)) return <Outlet />;
  return <AdminRefusal />;
}

function AdminRefusal() {
  usePageTitle('Accès réservé');
  return (
    <section aria-labelledby="refusal-title">
      <h1 id="refusal-title">Accès réservé</h1>
      <p data-testid="admin-refusal">{ADMIN_ONLY_MESSAGE}</p>
      <p>
        <Link to={paths.home}>Retour à l'accueil</Link>
      </p>
    </section>
  );
}
