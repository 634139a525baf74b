/** Sign-in: username and password, with French messages for every way it can fail. */
import { useState, type SubmitEvent } from 'react';
import { Navigate, useLocation } from 'react-router';
import { loginErrorMessage, SESSION_EXPIRED_MESSAGE } from '../errors';
import { landingPath, type ReturnTo } from '../ui/paths';
import { usePageTitle, useServices, useSessionState } from '../ui/services-context';

export function LoginPage() {
  usePageTitle('Connexion');
  const { signIn } = useServices();
  const { session, ended } = useSessionState();
  const returnTo = useLocation().state as ReturnTo | null;
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const [error, setError] = useState('');
  const [pending, setPending] = useState(false);

  // Signed in (now or already): go where the user was headed, or to their landing page.
  if (session) return <Navigate to={returnTo?.from ?? landingPath(session)} replace />;

  const onSubmit = async (event: SubmitEvent<HTMLFormElement>) => {
    event.preventDefault();
    if (username.trim() === '' || password === '') {
      setError("Veuillez saisir votre nom d'utilisateur et votre mot de passe.");
      return;
    }
    setError('');
    setPending(true);
    try {
      await signIn(username.trim(), password);
    } catch (failure) {
      setError(loginErrorMessage(failure));
      setPending(false);
    }
  };

  return (
    <main id="main" className="login">
      <h1>Connexion</h1>
      {ended === 'expired' && (
        <p className="notice notice--warning" role="alert" data-testid="session-expired">
          {SESSION_EXPIRED_MESSAGE}
        </p>
      )}
      {ended === 'signed-out' && (
        <p className="notice" role="status" data-testid="signed-out">
          Vous êtes déconnecté.
        </p>
      )}
      <form onSubmit={(event) => void onSubmit(event)} noValidate aria-describedby="login-error">
        <div className="field">
          <label htmlFor="username">Nom d'utilisateur</label>
          <input
            id="username"
            name="username"
            autoComplete="username"
            autoCapitalize="none"
            spellCheck={false}
            required
            maxLength={64}
            value={username}
            onChange={(event) => {
              setUsername(event.target.value);
            }}
          />
        </div>
        <div className="field">
          <label htmlFor="password">Mot de passe</label>
          <input
            id="password"
            name="password"
            type="password"
            autoComplete="current-password"
            required
            value={password}
            onChange={(event) => {
              setPassword(event.target.value);
            }}
          />
        </div>
        <p id="login-error" className="error" role="alert" data-testid="login-error">
          {error}
        </p>
        <button type="submit" disabled={pending}>
          Se connecter
        </button>
      </form>
    </main>
  );
}
