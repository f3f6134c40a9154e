import { DomainValidationError } from './errors.js';

/** ISO-8601 UTC as Date.prototype.toISOString writes it; the milliseconds are optional. */
const INSTANT_TEXT = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,3})?Z$/;

/**
 * Milliseconds since the epoch for a strict ISO-8601 UTC timestamp. Comparing parsed instants, not
 * strings, keeps "…00Z" and "…00.000Z" equal. Date.parse rolls "02-30" over to March, so the
 * round trip through toISOString rejects impossible calendar dates.
 */
export function parseInstantMs(text: string, field: string): number {
  const instantMs = typeof text === 'string' && INSTANT_TEXT.test(text) ? Date.parse(text) : Number.NaN;
  if (Number.isNaN(instantMs) || new Date(instantMs).toISOString().slice(0, 19) !== text.slice(0, 19)) {
    throw new DomainValidationError('invalid_timestamp', `${field} must be an ISO-8601 UTC timestamp`, { field });
  }
  return instantMs;
}
