/**
 * « Ce que nous enregistrons »: what presence records about the signed-in user right now
 * (GetMyPresence: only their own records), and how long each is kept, in plain French.
 * Fetched again every `MY_PRESENCE_REFRESH_MS`, so the last signal follows the pings.
 */
import { usePolled } from '../admin/use-polled';
import { daysLabel, durationLabel, UNKNOWN } from '../format';
import { type MyPresence } from '../gen/presence/activity/v1/activity_pb';
import { LoginEventsTable } from '../ui/LoginEventsTable';
import { RelativeTime, useNow } from '../ui/RelativeTime';
import { usePageTitle, useServices, useSessionState } from '../ui/services-context';

export const MY_PRESENCE_REFRESH_MS = 15_000;
export const MY_PRESENCE_TITLE = 'Ce que nous enregistrons';

export function MyPresencePage() {
  usePageTitle(MY_PRESENCE_TITLE);
  const { api } = useServices();
  const { session } = useSessionState();
  const { value: presence, error } = usePolled(session?.userId ?? '', MY_PRESENCE_REFRESH_MS, (signal) =>
    api.activity.getMyPresence({}, { signal }),
  );
  const nowMs = useNow(1_000);

  return (
    <section aria-labelledby="my-presence-title">
      <h1 id="my-presence-title">{MY_PRESENCE_TITLE}</h1>
      <p className="hint">
        Tout ce que Presence conserve sur vous en ce moment, et pendant combien de temps. Les administrateurs voient
        votre statut (en ligne ou non) et ces mêmes événements de connexion.
      </p>
      {error && (
        <p className="error" role="alert" data-testid="my-presence-error">
          {error}
        </p>
      )}
      {presence?.degraded && (
        <p className="notice notice--warning" role="status" data-testid="my-presence-degraded">
          Mode dégradé : le stockage de l'activité est indisponible ; votre dernier signal et vos navigateurs ne
          peuvent pas être affichés pour le moment.
        </p>
      )}
      {presence && <Records presence={presence} nowMs={nowMs} />}
    </section>
  );
}

function Records({ presence, nowMs }: { presence: MyPresence; nowMs: number }) {
  const retention = presence.retention;
  const activityKept = retention ? durationLabel(retention.activitySeconds) : UNKNOWN;
  const historyKept = retention ? daysLabel(retention.loginHistoryDays) : UNKNOWN;
  const threshold = retention ? durationLabel(retention.thresholdMinutes * 60) : UNKNOWN;
  return (
    <>
      <h2>Dernier signal</h2>
      <p data-testid="my-last-activity">
        Dernier signal :{' '}
        {presence.lastActivity ? (
          <RelativeTime value={presence.lastActivity} nowMs={nowMs} />
        ) : presence.degraded ? (
          'inconnu'
        ) : (
          'aucun enregistré'
        )}{' '}
        — conservé {activityKept}
      </p>
      <p className="hint">
        Votre navigateur envoie un signal régulièrement tant que Presence est affiché à l'écran ; seul le dernier est
        gardé, puis effacé {activityKept} après, ou dès que vous vous déconnectez.
      </p>

      <h2>Navigateurs actifs</h2>
      <p className="hint">
        Les navigateurs qui ont envoyé un signal depuis moins de {threshold} (le seuil « en ligne »), désignés par le
        début de leur identifiant — conservés {activityKept} après leur dernier signal.
      </p>
      <Browsers presence={presence} nowMs={nowMs} />

      <h2>Détection d’absence</h2>
      {presence.idleAfterMinutes > 0 ? (
        <p data-testid="my-idle-detection">
          Activée : à chaque signal, votre navigateur indique seulement s’il y a eu une saisie (clavier, souris ou toucher)
          depuis {presence.idleAfterMinutes} min, jamais laquelle. Seul l’état présent est gardé, aucun historique.{' '}
          {presence.away
            ? 'En ce moment, les administrateurs vous voient « Absent ».'
            : 'En ce moment, les administrateurs vous voient « En ligne ».'}
        </p>
      ) : (
        <p data-testid="my-idle-detection">Désactivée : rien n’est observé de vos saisies.</p>
      )}

      <h2>20 derniers événements de connexion — conservés {historyKept}</h2>
      <p className="hint">
        Connexions, échecs de connexion et déconnexions, avec l'adresse et le navigateur d'où ils viennent : chacun est
        effacé au bout de {historyKept}.
      </p>
      <LoginEventsTable events={presence.recentEvents} nowMs={nowMs} caption="Vos derniers événements de connexion, du plus récent au plus ancien" testId="my-login-events" />

      <h2>Nombre d'utilisateurs en ligne</h2>
      <p data-testid="my-online-counts">
        Nombre d'utilisateurs en ligne : seulement des totaux, jamais qui. Rien de ce qui y est gardé ne vous concerne
        personnellement.
      </p>
    </>
  );
}

function Browsers({ presence, nowMs }: { presence: MyPresence; nowMs: number }) {
  if (presence.degraded) return <p>{UNKNOWN}</p>;
  if (presence.browsers.length === 0) return <p data-testid="no-browsers">Aucun navigateur actif.</p>;
  return (
    <ul data-testid="my-browsers">
      {presence.browsers.map((browser) => (
        <li key={browser.label}>
          Navigateur <code>{browser.label}</code> : dernier signal <RelativeTime value={browser.lastActivity} nowMs={nowMs} />
        </li>
      ))}
    </ul>
  );
}

