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
      {settings?.updatedAt && (
        <p className="hint" data-testid="threshold-updated">
          Dernière modification le {formatDateTime(settings.updatedAt)}
          {settings.updatedBy && <> par {settings.updatedBy}</>}.
        </p>
      )}
    </section>
  );
}
