import fc from 'fast-check';
import { v5 as referenceV5 } from 'uuid';
import { describe, expect, it } from 'vitest';
import { uuidV5Namer } from '../../src/shared/uuidV5.js';
import { EVENT_ID_NAMESPACE, eventIdFor } from '../../src/write/commandHandler.js';

describe('name-based event ids (UUID v5)', () => {
  const name = uuidV5Namer(EVENT_ID_NAMESPACE);

  it('derives exactly the ids the uuid package derives, for any name, so stored ids stay reproducible', () => {
    fc.assert(fc.property(fc.string({ unit: 'binary', maxLength: 300 }), (text) => name(text) === referenceV5(text, EVENT_ID_NAMESPACE)), { numRuns: 2_000 });
  });

  it('keeps the ids already in the log: a known event id is derived unchanged', () => {
    // Written down once from the uuid package; an event store holding it must still match a repeat.
    expect(eventIdFor('account-1', 'teller:abc', 0)).toBe('8acd9f82-3bd0-55af-baa8-47e933f6aa39');
    expect(name('')).toBe(referenceV5('', EVENT_ID_NAMESPACE));
  });

  it('refuses a namespace that is not a UUID', () => {
    expect(() => uuidV5Namer('not-a-uuid')).toThrow(/not a UUID/);
  });
});
