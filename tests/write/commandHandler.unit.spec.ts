/**
 * The command handler's own robustness, apart from any store: a failure nobody planned for must
 * answer every caller, never leave a request or a process-manager step waiting for ever.
 */
import { describe, expect, it } from 'vitest';
import type { EventStore } from '../../src/eventstore/port.js';
import { CommandHandler } from '../../src/write/commandHandler.js';

type Event = { type: 'Counted'; data: { by: number } };

describe('command handler', () => {
  it('answers every queued command when a decider throws where it never should (evolve on its own decision), and goes on after', async () => {
    let appended = 0;
    // A stand-in store: what is under test is the handler's queue, not the store.
    const store = { kind: 'postgres', append: async () => ({ nextExpectedRevision: BigInt(appended++), position: 1n, duplicate: false }), readStream: async () => [] } as unknown as EventStore;
    let evolveThrows = true;
    const decider = {
      initialState: () => 0,
      decide: (by: number): Event[] => [{ type: 'Counted', data: { by } }],
      evolve: (state: number, event: Event) => {
        if (evolveThrows) throw new Error('a bug in evolve');
        return state + event.data.by;
      },
    };
    const handler = new CommandHandler<number, number, Event>(store, decider, () => true, { retryLimit: 3 });
    const context = (key: string) => ({ idempotencyKey: key, requestHash: 'h', actor: 'test', correlationId: 'c' });
    const outcomes = await Promise.race([
      Promise.allSettled([handler.handle('s-1', 1, context('k1')), handler.handle('s-1', 2, context('k2'))]),
      new Promise<'pending'>((resolve) => setTimeout(() => resolve('pending'), 2_000)),
    ]);
    expect(outcomes).not.toBe('pending');
    expect((outcomes as PromiseSettledResult<unknown>[]).map((outcome) => outcome.status)).toEqual(['rejected', 'rejected']);
    evolveThrows = false;
    await expect(handler.handle('s-1', 3, context('k3'))).resolves.toMatchObject({ events: [{ type: 'Counted', data: { by: 3 } }] });
  });
});
