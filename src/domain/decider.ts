/** The shape every aggregate exposes to the write side (Emmett's Decider, without the dependency). */
export type Decider<State, Command, Event> = {
  decide: (command: Command, state: State) => Event[];
  evolve: (state: State, event: Event) => State;
  initialState: () => State;
};

/** Exhaustiveness guard for a `switch` over a discriminated union. */
export function assertNever(value: never, what: string): never {
  throw new Error(`unexpected ${what}: ${JSON.stringify(value, (_key, item: unknown) => (typeof item === 'bigint' ? item.toString() : item))}`);
}

/** Folds events onto a decider's initial state. */
export function foldEvents<State, Event>(decider: Pick<Decider<State, unknown, Event>, 'evolve' | 'initialState'>, events: Iterable<Event>): State {
  let state = decider.initialState();
  for (const event of events) state = decider.evolve(state, event);
  return state;
}
