import { Type } from '@sinclair/typebox';
import type { RecordedEvent } from '../../eventstore/port.js';

/** A stored event as auditors see it, over HTTP and from `ledger audit replay` alike. */
export const AuditEvent = Type.Object({
  id: Type.String(),
  revision: Type.String(),
  position: Type.String(),
  type: Type.String(),
  schemaVersion: Type.Integer(),
  recordedAt: Type.String(),
  actor: Type.Union([Type.String(), Type.Null()]),
  correlationId: Type.Union([Type.String(), Type.Null()]),
  causationId: Type.Union([Type.String(), Type.Null()]),
  /** Event data with bigints as decimal strings. */
  data: Type.Unknown(),
});

export function auditEventView(event: RecordedEvent) {
  return {
    id: event.id,
    revision: event.revision.toString(),
    position: event.position.toString(),
    type: event.type,
    schemaVersion: event.schemaVersion,
    recordedAt: event.metadata.recordedAt,
    actor: event.metadata.actor ?? null,
    correlationId: event.metadata.correlationId ?? null,
    causationId: event.metadata.causationId ?? null,
    data: JSON.parse(JSON.stringify(event.data, (_key, item: unknown) => (typeof item === 'bigint' ? item.toString() : item))) as unknown,
  };
}
