import { createHash } from 'node:crypto';

/**
 * A request's fingerprints. `requestHash` is the JSON as sent, as every version of the ledger
 * records and compares it; `canonicalRequestHash` (recorded since canonical fingerprints came)
 * ignores the order of keys and null members, so a retry that orders its JSON keys otherwise or
 * sends an empty optional field as null rather than leaving it out is the same request.
 */
export interface RequestFingerprints {
  requestHash: string;
  canonicalRequestHash?: string;
}

export function requestFingerprints(...parts: unknown[]): Required<RequestFingerprints> {
  return { requestHash: fingerprintOf(parts), canonicalRequestHash: fingerprintOf(parts.map(canonical)) };
}

/**
 * The same request: by the canonical fingerprints where both sides have one, else by the raw ones
 * (a request recorded before canonical fingerprints matches its exact repeats only). Both are
 * recorded, so an instance of an earlier version, comparing the raw ones, still replays an exact
 * repeat during a rolling deploy.
 */
export function isSameRequest(recorded: RequestFingerprints, request: RequestFingerprints): boolean {
  if (recorded.canonicalRequestHash !== undefined && request.canonicalRequestHash !== undefined) return recorded.canonicalRequestHash === request.canonicalRequestHash;
  // A raw fingerprint of JSON already canonical (or one an interim build recorded canonically in
  // its place) equals the canonical fingerprint of the same request.
  return recorded.requestHash === request.requestHash || (request.canonicalRequestHash !== undefined && recorded.requestHash === request.canonicalRequestHash);
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
