import { DomainValidationError } from './errors.js';

const CONTROL_CHARACTER = /\p{Cc}/u;
export const ID_LENGTH_MAX = 128;
export const REFERENCE_LENGTH_MAX = 140;
export const DESCRIPTION_LENGTH_MAX = 500;

export function hasControlCharacter(text: string): boolean {
  return CONTROL_CHARACTER.test(text);
}

/** Client-chosen ids are idempotency keys: non-empty, bounded, no whitespace or control characters. */
export function assertId(value: string, field: string): void {
  if (typeof value !== 'string' || value.length === 0 || value.length > ID_LENGTH_MAX || /[\s\p{Cc}]/u.test(value)) {
    throw new DomainValidationError('invalid_id', `${field} must be 1..${ID_LENGTH_MAX} characters without whitespace`, { field });
  }
}

/** Optional free text: trimmed, empty becomes null, bounded, no control characters. */
export function optionalText(value: string | null | undefined, field: string, lengthMax: number): string | null {
  if (value === null || value === undefined) return null;
  if (typeof value !== 'string') throw new DomainValidationError('invalid_text', `${field} must be a string`, { field });
  const trimmed = value.trim();
  if (trimmed.length === 0) return null;
  if (trimmed.length > lengthMax || hasControlCharacter(trimmed)) {
    throw new DomainValidationError('invalid_text', `${field} must be at most ${lengthMax} characters without control characters`, { field });
  }
  return trimmed;
}
