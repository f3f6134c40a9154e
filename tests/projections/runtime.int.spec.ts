import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import type { Batch, RecordedEvent } from '../../src/eventstore/port.js';
import { accountsProjection } from '../../src/projections/accounts/projection.js';
import { projectionStatuses } from '../../src/projections/checkpoints.js';
import { customersProjection } from '../../src/projections/customers/projection.js';
import { createShadowTables, shadowTables, type Projection } from '../../src/projections/projection.js';
import { PROJECTIONS } from '../../src/projections/registry.js';
import type { ProjectionRunner } from '../../src/projections/runner.js';
import { accountStream } from '../../src/write/streams.js';
import {
  buildReference,
  checkpointOf,
  customerMonth,
  customerMonths,
  deposit,
  differencesFromReference,
  namedKysely,
  noDifferences,
  projectionEnvPerTest,
  readEverything,
  settledHead,
  sleep,
  snapshot,
  waitForCheckpoints,
  waitUntil,
  type ProjectionEnv,
} from './helpers.js';

/** Waits until `ms` have passed since `sinceMs` (a wall-clock instant): what a lag in seconds is measured against. */
async function waitUntilElapsed(sinceMs: number, ms: number): Promise<void> {
  await waitUntil(() => Date.now() - sinceMs >= ms, `${ms} ms have passed`, ms + 5_000);
}

describe('projection runtime', () => {
  const { open, current: currentEnv, cleanups } = projectionEnvPerTest();

  async function expectMatchesReference(current: ProjectionEnv, projections: readonly Projection[] = PROJECTIONS): Promise<void> {
    for (const projection of projections) {
      expect(await buildReference(current, projection), `${projection.name} has events`).toBeGreaterThan(0);
      expect(await differencesFromReference(current.db, projection), projection.name).toEqual(noDifferences(projection));
    }
  }

  it('ends with the same rows when every projection is given the same events twice', async () => {
    const current = await open();
    await customerMonths(current.write, 3);
    const head = await settledHead(current.db);

    // Directly: the whole log applied twice, then again in overlapping slices, into shadow tables.
    for (const projection of PROJECTIONS) {
      const events = await readEverything(current.store, projection.filter);
      expect(events.length, projection.name).toBeGreaterThan(5);
      await createShadowTables(current.db, projection);
      await current.db.transaction().execute((trx) => projection.apply(trx, events, shadowTables));
      const once = await snapshot(current.db, [projection], shadowTables);
      for (const table of projection.tables) expect(once[table]!.length, table).toBeGreaterThan(0);
      await current.db.transaction().execute((trx) => projection.apply(trx, events, shadowTables));
      expect(await snapshot(current.db, [projection], shadowTables), `${projection.name} applied twice`).toEqual(once);
      for (let start = 0; start < events.length; start += 7) {
        await current.db.transaction().execute((trx) => projection.apply(trx, events.slice(start, start + 11), shadowTables));
      }
      expect(await snapshot(current.db, [projection], shadowTables), `${projection.name} replayed in overlapping slices`).toEqual(once);
    }

    // Through runners: a clean run, then the checkpoint reset to 0 with the rows kept.
    const first = PROJECTIONS.map((projection) => current.runner(projection, { batchSize: 25 }).start());
    await waitForCheckpoints(current.db, PROJECTIONS, head);
    await Promise.all(first.map((runner) => runner.stop()));
    const clean = await snapshot(current.db);
    await expectMatchesReference(current);

    await sql`update projection_checkpoints set position = 0`.execute(current.db);
    let reapplied = 0;
    const again = PROJECTIONS.map((projection) =>
      current.runner(projection, { batchSize: 25, beforeCommit: async (batch) => void (reapplied += batch.events.length) }).start(),
    );
    await waitForCheckpoints(current.db, PROJECTIONS, head);
    await Promise.all(again.map((runner) => runner.stop()));
    expect(reapplied).toBeGreaterThanOrEqual((await Promise.all(PROJECTIONS.map((projection) => readEverything(current.store, projection.filter)))).flat().length);
    expect(await snapshot(current.db)).toEqual(clean);
  });

  it('a batch transaction holds the shared swap lock, commits asynchronously and joins by key from its first statement; the rest of the pool keeps the defaults', async () => {
    const current = await open();
    await customerMonths(current.write, 1);
    const head = await settledHead(current.db);
    const seen: { synchronousCommit: string; keyedJoins: boolean; swapLocks: number; checkpoint: bigint; stored: bigint }[] = [];
    const runner = current.runner(accountsProjection, {
      batchSize: 5,
      beforeCommit: async (batch, trx) => {
        const row = await sql<{ synchronous_commit: string; keyed_joins: boolean; swap_locks: number; stored: bigint }>`
          select current_setting('synchronous_commit') as synchronous_commit,
                 current_setting('enable_hashjoin') = 'off' and current_setting('enable_mergejoin') = 'off' and current_setting('enable_seqscan') = 'off' as keyed_joins,
                 (select count(*)::int from pg_locks where pid = pg_backend_pid() and locktype = 'advisory' and mode = 'ShareLock') as swap_locks,
                 (select position from projection_checkpoints where name = ${accountsProjection.name}) as stored`.execute(trx);
        const { synchronous_commit, keyed_joins, swap_locks, stored } = row.rows[0]!;
        seen.push({ synchronousCommit: synchronous_commit, keyedJoins: keyed_joins, swapLocks: swap_locks, checkpoint: batch.checkpoint, stored: BigInt(stored) });
      },
    });
    runner.start();
    cleanups.push(() => runner.stop());
    await waitForCheckpoints(current.db, [accountsProjection], head);
    expect(seen.length).toBeGreaterThan(1);
    for (const { synchronousCommit, keyedJoins, swapLocks, checkpoint, stored } of seen) {
      expect({ synchronousCommit, keyedJoins, swapLocks }).toEqual({ synchronousCommit: 'off', keyedJoins: true, swapLocks: 1 });
      // The first statement already moved the checkpoint to this batch's own.
      expect(stored).toBe(checkpoint);
    }
    // Only the batch transaction runs asynchronously: the pool's other sessions keep the default.
    // (The server's own default: the embedded server of the tests runs with synchronous_commit off.)
    const outside = await sql<{ synchronous_commit: string; server_default: string; enable_hashjoin: string }>`
      select current_setting('synchronous_commit') as synchronous_commit, (select reset_val from pg_settings where name = 'synchronous_commit') as server_default,
             current_setting('enable_hashjoin') as enable_hashjoin`.execute(current.db);
    const { server_default: serverDefault, ...settings } = outside.rows[0]!;
    expect(settings).toEqual({ synchronous_commit: serverDefault, enable_hashjoin: 'on' });
  });

  it('a batch that dies before its commit leaves neither rows nor checkpoint, and a fresh runner ends exactly as a clean run', async () => {
    const current = await open();
    await customerMonths(current.write, 4);
    const head = await settledHead(current.db);

    const batchSize = 5;
    const crashes = PROJECTIONS.map((projection) => {
      const batches: Batch[] = [];
      let crashed!: () => void;
      const crashedOnce = new Promise<void>((resolve) => (crashed = resolve));
      const runner = current.runner(projection, {
        batchSize,
        beforeCommit: async (batch) => {
          batches.push(batch);
          if (batches.length === 3) {
            crashed();
            throw new Error('simulated crash between the rows and the commit');
          }
        },
      });
      // Stopped as soon as it crashed: a runner left to retry commits again after its backoff,
      // before the slowest projection has crashed too.
      const stopped = crashedOnce.then(() => runner.stop());
      runner.start();
      return { projection, batches, stopped };
    });
    await Promise.all(crashes.map(({ stopped }) => stopped));

    for (const { projection, batches } of crashes) {
      expect(batches.slice(0, 3).map((batch) => batch.events.length), projection.name).toEqual([batchSize, batchSize, batchSize]);
      const lastCommitted = batches[1]!.checkpoint;
      expect((await checkpointOf(current.db, projection.name))?.position, projection.name).toBe(lastCommitted);
      // The rows are exactly those of the two committed batches: nothing of the third survived.
      await buildReference(current, projection, lastCommitted);
      expect(await differencesFromReference(current.db, projection), projection.name).toEqual(noDifferences(projection));
    }

    PROJECTIONS.forEach((projection) => current.runner(projection, { batchSize }).start());
    await waitForCheckpoints(current.db, PROJECTIONS, head);
    await expectMatchesReference(current);
  });

  describe('when the active projector is killed mid-batch while writes continue', () => {
    type KillPoint = 'before its batch transaction' | 'inside its batch transaction';

    /**
     * Leaders (each on a pool of its own) apply slow batches while standbys wait and writers keep
     * writing. On its third batch with events after that, each leader is killed at `point` and the
     * batch lingers, so the dead leader's batch overlaps the takeover. Returns how many dead
     * leaders still committed that lingering batch.
     */
    async function killLeaderMidBatch(point: KillPoint, kill: (runner: ProjectionRunner, applicationName: string) => Promise<void>, lingerMs: number): Promise<number> {
      const current = await open();
      await customerMonths(current.write, 1);

      let armed = false;
      const killedAt = new Map<string, number>();
      const positionAtKill = new Map<ProjectionRunner, bigint>();
      const kills: Promise<void>[] = [];
      const active = PROJECTIONS.map((projection) => {
        const applicationName = `projector-leader-${projection.name}-${randomUUID().slice(0, 8)}`;
        const leader = namedKysely(current, applicationName);
        cleanups.push(() => leader.db.destroy());
        let batches = 0;
        const killOnThirdBatch = async (events: number): Promise<boolean> => {
          if (armed && events > 0) batches += 1;
          if (batches !== 3 || killedAt.has(projection.name)) return false;
          killedAt.set(projection.name, Date.now());
          positionAtKill.set(runner, BigInt(runner.health().detail.position));
          kills.push(kill(runner, applicationName));
          await sleep(lingerMs);
          return true;
        };
        const leaderProjection: Projection =
          point === 'before its batch transaction'
            ? { ...projection, beforeTransaction: async (events) => void (await killOnThirdBatch(events.length)) }
            : projection;
        const runner: ProjectionRunner = current.runner(leaderProjection, {
          db: leader.db,
          batchSize: 5,
          beforeCommit: async (batch) => {
            if (point === 'inside its batch transaction' && (await killOnThirdBatch(batch.events.length))) return;
            await sleep(30);
          },
        });
        return runner.start();
      });
      await waitUntil(() => active.every((runner) => runner.currentState === 'active'), 'the first runners lead');
      const standbys = PROJECTIONS.map((projection) => current.runner(projection, { batchSize: 5, lockRetryMs: 200 }).start());
      await waitUntil(() => standbys.every((runner) => runner.currentState === 'standby'), 'the second runners stand by');

      let lateCommits = -1;
      let writing = true;
      const writer = (async () => {
        while (writing) await customerMonth(current.write);
      })();
      armed = true;
      try {
        await waitUntil(() => killedAt.size === PROJECTIONS.length, 'every leader was killed mid-batch', 20_000);
        const tookOverAt = new Map<string, number>();
        await waitUntil(() => {
          standbys.forEach((runner, index) => {
            if (runner.currentState === 'active' && !tookOverAt.has(PROJECTIONS[index]!.name)) tookOverAt.set(PROJECTIONS[index]!.name, Date.now());
          });
          return tookOverAt.size === PROJECTIONS.length;
        }, 'every standby took over', 10_000);
        for (const projection of PROJECTIONS) expect(tookOverAt.get(projection.name)! - killedAt.get(projection.name)!, projection.name).toBeLessThan(5_000);
        await Promise.all(kills);
        expect(active.map((runner) => runner.currentState)).toEqual(PROJECTIONS.map(() => 'stopped'));
        // A runner's position moves only after its commit succeeded.
        lateCommits = active.filter((runner) => BigInt(runner.health().detail.position) > positionAtKill.get(runner)!).length;
        // Keep writing a little while the new leaders run.
        await sleep(300);
      } finally {
        writing = false;
        await writer;
      }

      const head = await settledHead(current.db);
      await waitForCheckpoints(current.db, PROJECTIONS, head);
      await Promise.all(standbys.map((runner) => runner.stop()));
      await expectMatchesReference(current);
      return lateCommits;
    }

    it('lock lost before the batch transaction: the standby applies the batch and the checkpoint guard refuses the dead leader\'s copy', async () => {
      const lateCommits = await killLeaderMidBatch('before its batch transaction', (runner) => runner.crash(), 1_500);
      expect(lateCommits).toBe(0);
    });

    it('lock lost inside the batch transaction: the dead leader\'s batch commits late, the standby continues after it, nothing is lost or doubled', async () => {
      const lateCommits = await killLeaderMidBatch('inside its batch transaction', (runner) => runner.crash(), 1_000);
      expect(lateCommits).toBe(PROJECTIONS.length);
    });

    it('whole process dies inside the batch transaction: its open batch leaves nothing behind and the standby redoes it', async () => {
      const lateCommits = await killLeaderMidBatch(
        'inside its batch transaction',
        async (runner, applicationName) => {
          const crashing = runner.crash();
          const { rows } = await sql<{ killed: boolean }>`select pg_terminate_backend(pid) as killed from pg_stat_activity
            where datname = current_database() and application_name = ${applicationName}`.execute(currentEnv().db);
          expect(rows.length).toBeGreaterThan(0);
          await crashing;
        },
        1_000,
      );
      expect(lateCommits).toBe(0);
    });
  });

  it('a runner stopped while it is still starting stops at once, without subscribing', async () => {
    const current = await open();
    for (let attempt = 0; attempt < 5; attempt++) {
      const runner = current.runner(accountsProjection).start();
      const stoppedInMs = await Promise.race([
        (async () => {
          const startedAt = Date.now();
          await runner.stop();
          return Date.now() - startedAt;
        })(),
        sleep(5_000).then(() => Number.POSITIVE_INFINITY),
      ]);
      expect(stoppedInMs, `attempt ${attempt}`).toBeLessThan(5_000);
      expect(runner.currentState).toBe('stopped');
    }
  });

  it('two runners started together: exactly one is active and the other stands by, until the active one stops', async () => {
    const current = await open();
    await customerMonths(current.write, 1);
    const runners = [current.runner(customersProjection, { lockRetryMs: 100 }), current.runner(customersProjection, { lockRetryMs: 100 })];
    runners.forEach((runner) => runner.start());
    await waitUntil(() => runners.every((runner) => runner.currentState !== 'starting'), 'both runners decided');
    for (let check = 0; check < 10; check++) {
      expect(runners.map((runner) => runner.currentState).sort()).toEqual(['active', 'standby']);
      await sleep(50);
    }
    const leader = runners.find((runner) => runner.currentState === 'active')!;
    const standby = runners.find((runner) => runner.currentState === 'standby')!;
    await leader.stop();
    await waitUntil(() => standby.currentState === 'active', 'the standby takes over after a graceful stop', 3_000);
    const head = await settledHead(current.db);
    await waitForCheckpoints(current.db, [customersProjection], head);
    await expectMatchesReference(current, [customersProjection]);
  });

  it('the leader\'s lock session has TCP keepalives that end it within about half a minute of the leader going silent', async () => {
    const current = await open();
    const runner = current.runner(customersProjection).start();
    await waitUntil(() => runner.currentState === 'active', 'the runner leads');
    // Private: the session that holds the leader lock. A real partition is not simulated here.
    const lockClient = (runner as unknown as { lockClient: pg.Client }).lockClient;
    const { rows } = await lockClient.query<{ name: string; setting: string }>(`
      select name, setting from pg_settings where name in ('tcp_keepalives_idle', 'tcp_keepalives_interval', 'tcp_keepalives_count', 'tcp_user_timeout')
      union all
      select 'leader locks', count(*)::text from pg_locks where pid = pg_backend_pid() and locktype = 'advisory' and granted`);
    const settings = Object.fromEntries(rows.map((row) => [row.name, Number(row.setting)]));
    expect(settings['leader locks'], 'this is the session that holds the leader lock').toBe(1);
    // Over TCP these read as in effect: by default the OS's two hours idle, then 9 probes 75 s apart. Over a Unix socket, 0.
    for (const name of ['tcp_keepalives_idle', 'tcp_keepalives_interval', 'tcp_keepalives_count', 'tcp_user_timeout']) expect(settings[name], name).toBeGreaterThan(0);
    expect(settings.tcp_keepalives_idle! + settings.tcp_keepalives_interval! * settings.tcp_keepalives_count!, 'seconds until a silent peer is dropped').toBeLessThanOrEqual(30);
    expect(settings.tcp_user_timeout, 'ms').toBeLessThanOrEqual(30_000);
  });

  it('a poison event stops the projection visibly, just before it, even with more good events behind it', async () => {
    const current = await open();
    const { accountIds } = await customerMonth(current.write);
    const poisonId = randomUUID();
    const ghost = randomUUID();
    const beforePoison = Date.now();
    // A deposit to an account that was never opened: valid JSON, valid type, impossible history.
    const poison = await current.store.append(
      accountStream(ghost),
      [
        {
          id: poisonId,
          type: 'FundsDeposited',
          data: { accountId: ghost, transactionId: randomUUID(), currency: 'EUR', amountMinor: 5_00n, reference: null, description: null, balanceAfterMinor: 5_00n, legs: [], at: new Date().toISOString() },
        },
      ],
      { expectedRevision: 'no_stream' },
    );
    const poisonRecorded = Date.now();
    await deposit(current.write, accountIds[0]!, 7_00n);
    const later = await customerMonth(current.write);
    await settledHead(current.db);

    // One large batch holds the good events, the poison and the good events after it.
    const runner = current.runner(accountsProjection, { batchSize: 200 }).start();
    await waitUntil(() => !runner.health().ok, 'the runner reports the poison event', 10_000);
    expect(runner.health()).toMatchObject({ ok: false, detail: { state: 'failing', failingEventId: poisonId } });

    const checkpoint = await checkpointOf(current.db, accountsProjection.name);
    expect(checkpoint?.failing_event_id).toBe(poisonId);
    expect(checkpoint!.position).toBeLessThan(poison.position);
    const next = await current.store.readAll({ after: checkpoint!.position, maxCount: 1, filter: accountsProjection.filter });
    expect(next.map((event) => event.id), 'the checkpoint stops just before the poison event').toEqual([poisonId]);
    // Rows are exactly those of the events before the poison.
    await buildReference(current, accountsProjection, poison.position - 1n);
    expect(await differencesFromReference(current.db, accountsProjection)).toEqual(noDifferences(accountsProjection));
    const { rows } = await sql<{ account_id: string }>`select account_id from account_balances`.execute(current.db);
    expect(rows.map((row) => row.account_id).sort()).toEqual([...accountIds].sort());
    expect(rows.map((row) => row.account_id)).not.toContain(later.accountIds[0]);

    // The lag is the age of the poison event, the first one not applied: over a second once a second has passed.
    await waitUntilElapsed(poisonRecorded, 1_200);
    const [status] = await projectionStatuses(current.db, current.store, [accountsProjection]);
    const upperSeconds = (Date.now() - beforePoison) / 1000;
    expect(status).toMatchObject({ name: 'accounts', failingEventId: poisonId });
    expect(status!.lagEvents).toBeGreaterThan(0);
    expect(status!.lagSeconds).toBeGreaterThan(1);
    expect(status!.lagSeconds, 'no older than the poison event').toBeLessThanOrEqual(upperSeconds + 0.25);

    // More good events arrive; the projection stays stopped at the same place.
    await deposit(current.write, accountIds[0]!, 1_00n);
    await sleep(1_200);
    expect(runner.health()).toMatchObject({ ok: false, detail: { failingEventId: poisonId } });
    expect((await checkpointOf(current.db, accountsProjection.name))?.position).toBe(checkpoint!.position);
  });

  describe('a projection with side effects and batches in flight', () => {
    /** A projection that records its side effects and its committed batches; `react` decides how each batch's side effects go. */
    function probe(react: (call: number, events: readonly RecordedEvent[]) => Promise<void>) {
      const started: bigint[][] = [];
      const applied: bigint[] = [];
      const projection: Projection = {
        name: `probe-${randomUUID().slice(0, 8)}`,
        tables: [],
        filter: accountsProjection.filter,
        beforeTransaction: (events) => {
          started.push(events.map((event) => event.position));
          return react(started.length, events);
        },
        apply: async (_trx, events) => void applied.push(...events.map((event) => event.position)),
      };
      return { projection, started, applied };
    }

    async function accountEvents(current: ProjectionEnv): Promise<bigint[]> {
      await customerMonth(current.write);
      await settledHead(current.db);
      return (await readEverything(current.store, accountsProjection.filter)).map((event) => event.position);
    }

    it('starts the next batches while an earlier one is still running, and commits them only after it, in log order', async () => {
      const current = await open();
      const positions = await accountEvents(current);
      let release!: () => void;
      const gate = new Promise<void>((resolve) => (release = resolve));
      const { projection, started, applied } = probe((call) => (call === 1 ? gate : Promise.resolve()));
      current.runner(projection, { batchSize: 2, batchesInFlight: 4 }).start();

      await waitUntil(() => started.length >= 4, 'four batches started while the first is held');
      await sleep(200);
      expect(started.length, 'no more than four batches are in flight').toBe(4);
      expect((await checkpointOf(current.db, projection.name))?.position, 'nothing commits past the held batch').toBe(0n);
      expect(applied).toEqual([]);

      release();
      await waitForCheckpoints(current.db, [projection], positions.at(-1)!);
      expect(applied, 'every event committed once, in log order').toEqual(positions);
    });

    it('a failed batch commits nothing after the last good one; the runner resumes there and applies every event once', async () => {
      const current = await open();
      const positions = await accountEvents(current);
      let release!: () => void;
      const gate = new Promise<void>((resolve) => (release = resolve));
      let failed = false;
      const { projection, started, applied } = probe(async (call) => {
        if (call !== 2) return;
        await gate;
        failed = true;
        throw new Error('the second batch fails once');
      });
      const runner = current.runner(projection, { batchSize: 2, batchesInFlight: 4 }).start();

      await waitUntil(() => started.length >= 4, 'later batches started behind the failing one');
      await waitForCheckpoints(current.db, [projection], started[0]!.at(-1)!);
      const laterBatchesStarted = started.slice(2).flat();
      release();
      await waitUntil(() => failed, 'the second batch failed');
      await sleep(50);
      expect((await checkpointOf(current.db, projection.name))?.position, 'the checkpoint stays after the first batch').toBe(started[0]!.at(-1));
      expect(applied, 'only the first batch committed').toEqual(started[0]);
      expect(laterBatchesStarted.length).toBeGreaterThan(0);

      await waitForCheckpoints(current.db, [projection], positions.at(-1)!);
      expect(applied, 'every event committed once, in log order, after the retry').toEqual(positions);
      expect(runner.health().ok).toBe(true);
    });
  });

  it('reports lag in events and seconds (over 1 s once the oldest pending event is that old) while a runner is stopped, and none once it has caught up', async () => {
    const current = await open();
    await customerMonths(current.write, 1);
    let head = await settledHead(current.db);
    const first = PROJECTIONS.map((projection) => current.runner(projection).start());
    await waitForCheckpoints(current.db, PROJECTIONS, head);
    await Promise.all(first.map((runner) => runner.stop()));

    const beforeWrite = Date.now();
    await customerMonth(current.write);
    head = await settledHead(current.db);
    // Every event behind is at least this old once the wait is over: the lag must say over a second.
    await waitUntilElapsed(Date.now(), 1_200);
    const behind = await projectionStatuses(current.db, current.store, PROJECTIONS);
    const upperSeconds = (Date.now() - beforeWrite) / 1000;
    expect(behind.map((status) => status.name)).toEqual(PROJECTIONS.map((projection) => projection.name));
    for (const status of behind) {
      expect(status.lagEvents, status.name).toBeGreaterThan(0);
      expect(status.lagSeconds, status.name).toBeGreaterThan(1);
      expect(status.lagSeconds, `${status.name}: no older than the write`).toBeLessThanOrEqual(upperSeconds + 0.25);
      expect(status.failingEventId).toBeNull();
    }

    PROJECTIONS.forEach((projection) => current.runner(projection).start());
    await waitForCheckpoints(current.db, PROJECTIONS, head);
    await waitUntil(async () => (await projectionStatuses(current.db, current.store, PROJECTIONS)).every((status) => status.lagEvents === 0), 'no projection lags');
    for (const status of await projectionStatuses(current.db, current.store, PROJECTIONS)) {
      expect(status, status.name).toMatchObject({ lagEvents: 0, lagSeconds: 0, failingEventId: null });
    }
  });
});
