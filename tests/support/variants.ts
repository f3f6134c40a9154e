import { describe, it } from 'vitest';

export interface StoreVariant {
  name: string;
  env: Record<string, string>;
}

/**
 * The event stores an integration suite runs against: PostgreSQL always, EventStoreDB when
 * EVENTSTORE_URL is set. Without it the EventStoreDB variant is registered as skipped, with the
 * reason in its name and printed, so it never passes silently.
 */
export function storeVariants(suite: string): StoreVariant[] {
  const variants: StoreVariant[] = [{ name: 'PostgreSQL', env: {} }];
  const url = process.env.EVENTSTORE_URL;
  if (url) variants.push({ name: 'EventStoreDB', env: { EVENTSTORE_URL: url } });
  else {
    console.warn(`[skip] ${suite} on EventStoreDB: EVENTSTORE_URL is not set`);
    describe.skip(`${suite} on EventStoreDB (skipped: EVENTSTORE_URL is not set)`, () => {
      it('runs only when EVENTSTORE_URL points at an EventStoreDB server', () => undefined);
    });
  }
  return variants;
}
