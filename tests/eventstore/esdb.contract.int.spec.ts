import { describe, it } from 'vitest';
import { EsdbEventStore } from '../../src/eventstore/esdb/eventStore.js';
import { runEventStoreContract } from './contract.js';

const url = process.env.EVENTSTORE_URL;

if (url) {
  // Streams are named with a fresh prefix per test, so the suite shares the server with other runs.
  runEventStoreContract('EventStoreDB', async () => {
    const store = await EsdbEventStore.connect(url);
    return {
      store,
      async cleanup() {
        await store.close();
      },
    };
  });
} else {
  console.warn('[skip] EventStoreDB contract suite: EVENTSTORE_URL is not set');
  describe.skip('event store contract: EventStoreDB (skipped: EVENTSTORE_URL is not set)', () => {
    it('needs a server at EVENTSTORE_URL, for example esdb://localhost:2113?tls=false', () => undefined);
  });
}
