/**
 * The activity settings: the "online" threshold, checked in the browser (1 to 1440 whole
 * minutes) before it is sent, with the server's verdict shown next to the field.
 */
import { useEffect, useRef, useState, type SubmitEvent } from 'react';
import { Link } from 'react-router';
import { formatDateTime } from '../format';
import type { ActivitySettings } from '../gen/presence/admin/v1/admin_pb';
import { requestErrorMessage } from '../errors';
import { parseThreshold, THRESHOLD_MAX_MINUTES, THRESHOLD_MIN_MINUTES } from '../threshold';
import { paths } from '../ui/paths';
import { usePageTitle, useServices } from '../ui/services-context';

const IDLE_MIN_MINUTES = 1;
const IDLE_MAX_MINUTES = 240;

/** Idle detection (« Absent »): off by default; turning it on says what it is for and not. */
function IdleDetectionForm({
  settings,
  onSaved,
}: {
  settings: ActivitySettings;
  onSaved: (saved: ActivitySettings) => void;
}) {
  const { api } = useServices();
  const [enabled, setEnabled] = useState(settings.idleDetectionEnabled);
  const [minutes, setMinutes] = useState(String(settings.idleAfterMinutes));
  const [error, setError] = useState('');
  const [confirmation, setConfirmation] = useState('');
  const [saving, setSaving] = useState(false);

  const onSubmit = async (event: SubmitEvent<HTMLFormElement>) => {
    event.preventDefault();
    setConfirmation('');
    const parsed = Number(minutes);
    if (!/^\d+$/.test(minutes.trim()) || parsed < IDLE_MIN_MINUTES || parsed > IDLE_MAX_MINUTES) {
      setError(`Le délai doit être un nombre entier de minutes, de ${IDLE_MIN_MINUTES} à ${IDLE_MAX_MINUTES}.`);
      return;
    }
    setError('');
    setSaving(true);
    try {
      const saved = await api.admin.updateActivitySettings({ idleDetectionEnabled: enabled, idleAfterMinutes: parsed });
      onSaved(saved);
      setEnabled(saved.idleDetectionEnabled);
      setMinutes(String(saved.idleAfterMinutes));
      setConfirmation(saved.idleDetectionEnabled ? 'Détection d’absence activée.' : 'Détection d’absence désactivée.');
    } catch (failure) {
      setError(requestErrorMessage(failure));
    } finally {
      setSaving(false);
    }
  };

  return (
    <form onSubmit={(event) => void onSubmit(event)} noValidate aria-labelledby="idle-title" className="idle-settings">
      <h2 id="idle-title">Détection d’absence (« Absent »)</h2>
      <p className="hint">
        Désactivée par défaut. Activée, chaque navigateur indique seulement s’il y a eu une saisie (clavier, souris ou
        toucher) pendant le délai, jamais laquelle ; une personne dont tous les navigateurs sont inactifs apparaît
        « Absent ». Seul l’état présent est gardé, aucun historique d’inactivité : c’est une indication de
        disponibilité, pas une mesure du travail.
      </p>
      <div className="field field--inline">
        <input
          id="idle-enabled"
          type="checkbox"
          checked={enabled}
          data-testid="idle-enabled"
          onChange={(event) => {
            setEnabled(event.target.checked);
            setConfirmation('');
          }}
        />
        <label htmlFor="idle-enabled">Afficher « Absent » après un délai sans saisie</label>
      </div>
      <div className="field">
        <label htmlFor="idle-minutes">Délai avant « Absent » (minutes)</label>
        <input
          id="idle-minutes"
          type="number"
          inputMode="numeric"
          min={IDLE_MIN_MINUTES}
          max={IDLE_MAX_MINUTES}
          step={1}
          value={minutes}
          aria-invalid={error !== ''}
          aria-describedby="idle-error"
          data-testid="idle-minutes"
          onChange={(event) => {
            setMinutes(event.target.value);
            setConfirmation('');
          }}
        />
        <p id="idle-error" className="error" role="alert" data-testid="idle-error">
          {error}
        </p>
      </div>
      <button type="submit" disabled={saving} data-testid="idle-save">
        Enregistrer
      </button>
      <p className="confirmation" role="status" data-testid="idle-status">
        {confirmation}
      </p>
    </form>
  );
}

export function AdminSettingsPage() {
  usePageTitle('Paramètres');
  const { api } = useServices();
  const [settings, setSettings] = useState<ActivitySettings | null>(null);
  const [loadError, setLoadError] = useState('');
  const [value, setValue] = useState('');
  const [fieldError, setFieldError] = useState('');
  const [confirmation, setConfirmation] = useState('');
  const [saving, setSaving] = useState(false);
  const input = useRef<HTMLInputElement>(null);

  useEffect(() => {
    let current = true;
    api.admin.getActivitySettings({}).then(
      (loaded) => {
        if (!current) return;
        setSettings(loaded);
        setValue(String(loaded.thresholdMinutes));
      },
      (failure: unknown) => {
        if (current) setLoadError(requestErrorMessage(failure));
      },
    );
    return () => {
      current = false;
    };
  }, [api]);

  const onSubmit = async (event: SubmitEvent<HTMLFormElement>) => {
    event.preventDefault();
    setConfirmation('');
    const parsed = parseThreshold(value);
    if (!parsed.ok) {
      setFieldError(parsed.message);
      input.current?.focus();
      return;
    }
    setFieldError('');
    setSaving(true);
    try {
      const saved = await api.admin.updateActivitySettings({ thresholdMinutes: parsed.minutes });
      setSettings(saved);
      setValue(String(saved.thresholdMinutes));
      setConfirmation('Seuil enregistré.');
    } catch (failure) {
      setFieldError(requestErrorMessage(failure));
      input.current?.focus();
    } finally {
      setSaving(false);
    }
  };

  return (
    <section aria-labelledby="settings-title">
      <h1 id="settings-title">Paramètres d'activité</h1>
      <p>
        <Link to={paths.adminUsers}>Voir les statuts des utilisateurs</Link>
      </p>
      {loadError && (
        <p className="error" role="alert">
          {loadError}
        </p>
      )}
      <form onSubmit={(event) => void onSubmit(event)} noValidate>
        <div className="field">
          <label htmlFor="threshold-minutes">Seuil d'activité 'En ligne' (minutes)</label>
          <input
            ref={input}
            id="threshold-minutes"
            name="thresholdMinutes"
            type="number"
            inputMode="numeric"
            min={THRESHOLD_MIN_MINUTES}
            max={THRESHOLD_MAX_MINUTES}
            step={1}
            required
            disabled={!settings}
            value={value}
            aria-invalid={fieldError !== ''}
            aria-describedby="threshold-hint threshold-error"
            data-testid="threshold-input"
            onChange={(event) => {
              setValue(event.target.value);
              setConfirmation('');
            }}
          />
          <p id="threshold-hint" className="hint">
            Nombre entier de minutes, de {THRESHOLD_MIN_MINUTES} à {THRESHOLD_MAX_MINUTES}. Un utilisateur est « En
            ligne » tant que sa dernière activité date de moins que ce seuil.
          </p>
          <p id="threshold-error" className="error" role="alert" data-testid="threshold-error">
            {fieldError}
          </p>
        </div>
        <button type="submit" disabled={!settings || saving} data-testid="threshold-save">
          Enregistrer
        </button>
        <p className="confirmation" role="status" data-testid="threshold-status">
          {confirmation}
        </p>
      </form>
      {settings && <IdleDetectionForm settings={settings} onSaved={setSettings} />}
      {settings?.updatedAt && (
        <p className="hint" data-testid="threshold-updated">
          Dernière modification le {formatDateTime(settings.updatedAt)}
          {settings.updatedBy && <> par {settings.updatedBy}</>}.
        </p>
      )}
    </section>
  );
}
