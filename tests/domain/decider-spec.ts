/**
 * given(events) / when(command) / then(events) | thenNothing() | thenThrows(code), in the style of
 * Emmett's DeciderSpecification. `then` also folds the new events, so an event evolve rejects fails
 * the spec, and checks that every event with legs balances.
 */
import { expect } from 'vitest';
import type { Decider } from '../../src/domain/decider.js';
import { DomainError } from '../../src/domain/errors.js';
import { assertBalanced, postingOf } from '../../src/domain/ledger.js';

type ErrorClass = { prototype: DomainError };

export type Outcome<Event> = {
  then: (expected: Event[]) => Event[];
  thenNothing: () => void;
  thenThrows: (code: string, errorClass?: ErrorClass) => DomainError;
  /** The events decided, for assertions that do not fit `then`. */
  events: () => Event[];
};

export function deciderSpec<State, Command, Event extends { type: string; data: unknown }>(decider: Decider<State, Command, Event>) {
  return {
    given(history: Event[]) {
      return {
        when(command: Command): Outcome<Event> {
          const run = (): Event[] => {
            let state = decider.initialState();
            for (const event of history) state = decider.evolve(state, event);
            const events = decider.decide(command, state);
            for (const event of events) {
              state = decider.evolve(state, event);
              const posting = postingOf(event);
              if (posting !== null) assertBalanced(posting.legs);
            }
            return events;
          };
          return {
            then(expected) {
              const events = run();
              expect(events).toEqual(expected);
              return events;
            },
            thenNothing() {
              expect(run()).toEqual([]);
            },
            thenThrows(code, errorClass = DomainError) {
              let thrown: unknown;
              try {
                run();
              } catch (error) {
                thrown = error;
              }
              expect(thrown, `expected ${code} to be thrown`).toBeInstanceOf(errorClass);
              expect((thrown as DomainError).code).toBe(code);
              return thrown as DomainError;
            },
            events: run,
          };
        },
      };
    },
  };
}
