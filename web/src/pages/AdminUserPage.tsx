/**
 * One user: why they have their status, in a French sentence, the facts it was judged on
 * (last ping, last login, last logout, threshold, the rule that decided) and their last
 * login_history events. Its own URL, /admin/users/<id>, so it can be shared.
 */
import { timestampMs, type Timestamp } from '@bufbuild/protobuf/wkt';
import { Link, useLocation, useParams } from 'react-router';
import { useUserPresence } from '../admin/use-user-presence';
import { ruleLabel, statusSentence, type StatusEvidence } from '../format';
import { StatusSource, type UserPresence } from '../gen/presence/admin/v1/admin_pb';
import { paths, type BackTo } from '../ui/paths';
import { LoginEventsTable } from '../ui/LoginEventsTable';
import { RelativeTime, useNow } from '../ui/RelativeTime';
import { usePageTitle, useServices } from '../ui/services-context';

const ms = (value: Timestamp | undefined) => (value ? timestampMs(value) : undefined);

function evidenceOf(presence: UserPresence): StatusEvidence {
  const status = presence.status;
  return {
    online: status?.online ?? false,
    source: status?.source ?? StatusSource.UNSPECIFIED,
    lastActivityMs: ms(status?.lastActivityAt),
    lastLoginMs: ms(status?.lastLoginAt),
    lastLogoutMs: ms(presence.lastLogoutAt),
    thresholdMinutes: presence.thresholdMinutes,
    disabled: presence.disabled,
  };
}

export function AdminUserPage() {
  const { userId = '' } = useParams();
  const { api } = useServices();
  const back = (useLocation().state as BackTo | null)?.list ?? paths.adminUsers;
  const { presence, error } = useUserPresence(api, userId);
  const nowMs = useNow(1_000);
  const status = presence?.status;
  usePageTitle(status ? `${status.displayName} (${status.username})` : 'Utilisateur');

  return (
    <section aria-labelledby="user-title">
      <p>
        <Link to={back}>← Retour à la liste des utilisateurs</Link>
      </p>
      <h1 id="user-title">{status ? `${status.displayName} (${status.username})` : 'Utilisateur'}</h1>
      {error && (
        <p className="error" role="alert" data-testid="presence-error">
          {error}
        </p>
      )}
      {presence?.degraded && (
        <p className="notice notice--warning" role="status">
          Mode dégradé : Redis est indisponible, statut calculé depuis l'historique de connexion.
        </p>
      )}
      {presence && status && (
        <>
          <p className="presence-sentence" data-testid="presence-sentence" data-online={status.online}>
            <span className={status.online ? 'badge badge--online' : 'badge badge--offline'} aria-hidden="true">
              <span className="badge__dot" />
            </span>{' '}
            {statusSentence(evidenceOf(presence), nowMs)}
          </p>
          <h2>Sur quoi ce statut repose</h2>
          <dl className="evidence">
            <div>
              <dt>Règle appliquée</dt>
              <dd>{ruleLabel(evidenceOf(presence))}</dd>
            </div>
            <div>
              <dt>Dernière activité (ping)</dt>
              <dd>
                <RelativeTime value={status.lastActivityAt} nowMs={nowMs} />
              </dd>
            </div>
            <div>
              <dt>Dernière connexion réussie</dt>
              <dd>
                <RelativeTime value={status.lastLoginAt} nowMs={nowMs} />
              </dd>
            </div>
            <div>
              <dt>Dernière déconnexion</dt>
              <dd>
                <RelativeTime value={presence.lastLogoutAt} nowMs={nowMs} />
              </dd>
            </div>
            <div>
              <dt>Seuil</dt>
              <dd>{presence.thresholdMinutes} min</dd>
            </div>
          </dl>
          <h2>Derniers événements de connexion</h2>
          <LoginEventsTable events={presence.recentEvents} nowMs={nowMs} caption="Derniers événements de connexion, du plus récent au plus ancien" testId="login-events" />
        </>
      )}
    </section>
  );
}

