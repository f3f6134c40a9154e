import { createHash } from 'node:crypto';

/**
 * Fingerprint of a request. Canonical: a retry that sends its JSON keys in another order, or an
 * empty optional field as null instead of leaving it out, is the same request (both were refused
 * as another request with 422).
 */
export function requestFingerprint(...parts: unknown[]): string {
  return fingerprintOf(parts.map(canonical));
}

/** The fingerprint before it was canonical; kept so that requests recorded then still match their repeats. */
export function formerRequestFingerprint(...parts: unknown[]): string {
  return fingerprintOf(parts);
}

/** Whether a recorded fingerprint is this request's, in its canonical or its former form. */
export function isSameRequest(recordedHash: string, context: { requestHash: string; formerRequestHash?: () => string }): boolean {
  return recordedHash === context.requestHash || (context.formerRequestHash !== undefined && recordedHash === context.formerRequestHash());
}

function fingerprintOf(parts: readonly unknown[]): string {
  const hash = createHash('sha256');
  for (const part of parts) hash.update(JSON.stringify(part, (_key, value: unknown) => (typeof value === 'bigint' ? value.toString() : value)) ?? 'undefined').update('\u0000');
  return hash.digest('hex');
}

/** Object keys sorted, null and undefined members left out; arrays keep their order. */
function canonical(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(canonical);
  if (typeof value !== 'object' || value === null) return value;
  const sorted: Record<string, unknown> = {};
  for (const key of Object.keys(value).sort()) {
    const member = (value as Record<string, unknown>)[key];
    if (member !== null && member !== undefined) sorted[key] = canonical(member);
  }
  return sorted;
}
