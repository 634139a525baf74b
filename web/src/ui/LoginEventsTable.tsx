/**
 * A user's last sign-in events, newest first: the admin's page of one user and the
 * user's own « Ce que nous enregistrons » show the same table (the two contracts carry
 * the same event, each in its own package).
 */
import { timestampMs, type Timestamp } from '@bufbuild/protobuf/wkt';
import { loginEventLabel, UNKNOWN } from '../format';
import { LoginEventKind } from '../gen/presence/admin/v1/admin_pb';
import { RelativeTime } from './RelativeTime';

/** What both contracts' LoginEvent hold. */
export interface LoginEventRow {
  kind: number;
  occurredAt?: Timestamp;
  failureReason: string;
  clientAddress: string;
  userAgent: string;
}

const ms = (value: Timestamp | undefined) => (value ? timestampMs(value) : undefined);

export function LoginEventsTable({
  events,
  nowMs,
  caption,
  testId,
}: {
  events: LoginEventRow[];
  nowMs: number;
  caption: string;
  testId: string;
}) {
  if (events.length === 0) return <p data-testid="no-events">Aucun événement enregistré.</p>;
  return (
    <div className="table-wrap">
      <table data-testid={testId}>
        <caption className="visually-hidden">{caption}</caption>
        <thead>
          <tr>
            <th scope="col">Quand</th>
            <th scope="col">Événement</th>
            <th scope="col">Adresse</th>
            <th scope="col">Navigateur</th>
          </tr>
        </thead>
        <tbody>
          {events.map((event, index) => (
            // Two events may share a time; their order is the server's.
            <tr key={`${String(ms(event.occurredAt))}-${index}`} data-kind={LoginEventKind[event.kind]}>
              <td>
                <RelativeTime value={event.occurredAt} nowMs={nowMs} />
              </td>
              <td>{loginEventLabel(event.kind, event.failureReason)}</td>
              <td>{event.clientAddress || UNKNOWN}</td>
              <td className="user-agent">{event.userAgent || UNKNOWN}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
