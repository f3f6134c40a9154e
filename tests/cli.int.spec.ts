import { randomUUID } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { once } from 'node:events';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { loadConfig } from '../src/config.js';
import { openRuntime } from '../src/runtime.js';
import { mintToken } from '../src/shared/auth/keys.js';
import { runLedger as run } from './support/cli.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';

/**
 * As root, the embedded server runs as a `postgres` user, which must be able to reach its binaries
 * in this checkout: not so in a private directory (a `mktemp -d` clone). Then the test is skipped.
 */
const embeddedUnreachable = (() => {
  if (process.getuid?.() !== 0) return false;
  for (let dir = dirname(fileURLToPath(import.meta.url)); ; dir = dirname(dir)) {
    if ((statSync(dir).mode & 0o001) === 0) {
      console.warn(`[skip] embedded start-up and Ctrl-C tests: as root the embedded PostgreSQL runs as "postgres", which cannot enter ${dir}`);
      return true;
    }
    if (dir === dirname(dir)) return false;
  }
})();

const WITHOUT_EMBEDDED_BINARIES = new URL('./support/withoutEmbeddedBinaries.mjs', import.meta.url).pathname;


/** The port a ledger started with PORT=0 bound, from its "ledger started" line (a random fixed port could be taken). */
async function boundPort(output: () => { stdout: string; stderr: string }): Promise<number> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    const line = output().stdout.split('\n').find((text) => text.includes('"ledger started"'));
    if (line) return (JSON.parse(line) as { port: number }).port;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`the ledger did not start\n${output().stdout.slice(-2_000)}${output().stderr}`);
}

describe('the ledger executable', () => {
  let database: TestDatabase;

  beforeAll(async () => {
    database = await createTestDatabase('cli');
  });
  afterAll(async () => {
    await database?.drop();
  });

  it.each([
    [{ PORT: 'abc' }, /^ledger: invalid configuration: PORT must be an integer from 0 to 65535 \(got "abc"\)\n$/],
    [{ LOG_LEVEL: 'loud' }, /^ledger: invalid configuration: LOG_LEVEL must be one of .*\n$/],
    [{ DATABASE_URL: 'mysql://nope' }, /^ledger: invalid configuration: DATABASE_URL must match .* \(got "<redacted>"\)\n$/],
    [{ JWT_SECRET: 'CHANGE_ME-at-least-32-characters-of-random-data' }, /^ledger: invalid configuration: JWT_SECRET is a placeholder from this repository; set 32\+ random characters .*\n$/],
    [{ JWT_PUBLIC_KEY: 'not-read-before-the-check' }, /^ledger: invalid configuration: JWT_ISSUER and JWT_AUDIENCE are required with JWT_PUBLIC_KEY or JWT_JWKS_URL\n$/],
    [{ JWT_JWKS_URL: 'http://idp.example/jwks.json', JWT_ISSUER: 'https://idp.example', JWT_AUDIENCE: 'ledger' }, /^ledger: invalid configuration: JWT_JWKS_URL must be https:\/\/ \(http:\/\/ only on the loopback address\)\n$/],
  ])('stops on bad configuration %o with one clear line and no stack trace', async (env, message) => {
    const { child, output } = run(['start'], env);
    const [code] = await once(child, 'exit');
    expect(code).toBe(1);
    expect(output().stderr).toMatch(message);
  });

  it('runs with DATABASE_URL set when the embedded PostgreSQL binaries are missing, as in the Docker image', async () => {
    const { child, output } = run(['migrate'], { DATABASE_URL: database.url, JWT_SECRET: 'x'.repeat(40) }, ['--import', WITHOUT_EMBEDDED_BINARIES]);
    const [code] = await once(child, 'exit');
    expect(code, output().stderr).toBe(0);
    expect(output().stderr).not.toMatch(/embedded-postgres/);
  });

  it('starts every role, answers health, and shuts down cleanly on SIGTERM', async () => {
    const { child, output } = run(['start'], { DATABASE_URL: database.url, PORT: '0', HOST: '127.0.0.1', JWT_SECRET: 'x'.repeat(40), LOG_LEVEL: 'info' });
    const port = await boundPort(output);
    const deadline = Date.now() + 30_000;
    let ready: Response | undefined;
    while (Date.now() < deadline) {
      ready = await fetch(`http://127.0.0.1:${port}/health/ready`).catch(() => undefined);
      if (ready?.status === 200) break;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    expect(ready?.status, output().stderr).toBe(200);
    const body = (await ready!.json()) as { roles: string[]; eventStore: string };
    expect(body.roles).toEqual(['write-api', 'read-api', 'projector', 'process-manager']);
    expect(body.eventStore).toBe('postgres');
    expect((await fetch(`http://127.0.0.1:${port}/health/live`)).status).toBe(200);
    const openapi = (await (await fetch(`http://127.0.0.1:${port}/docs/json`)).json()) as { openapi: string; paths: Record<string, unknown> };
    expect(openapi.openapi).toMatch(/^3\./);
    expect(Object.keys(openapi.paths)).toEqual(expect.arrayContaining(['/v1/customers', '/v1/accounts/{id}/deposits', '/v1/transfers', '/v1/accounts/{id}/transactions']));
    child.kill('SIGTERM');
    const [code] = await once(child, 'exit');
    // On failure, show how the shutdown went (a timeout logs 'shutdown timed out').
    expect(code, `${output().stdout.slice(-3_000)}\n${output().stderr.slice(-1_000)}`).toBe(0);
    expect(output().stdout).toContain('"msg":"stopped"');
  });

  it('exits with 1 at the shutdown bound even while a projection batch waits on a lock, not when the lock goes', async () => {
    const secret = 'y'.repeat(40);
    const { child, output } = run(['start'], { DATABASE_URL: database.url, PORT: '0', HOST: '127.0.0.1', JWT_SECRET: secret, LOG_LEVEL: 'info', SHUTDOWN_TIMEOUT_MS: '1000' });
    const port = await boundPort(output);
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline && (await fetch(`http://127.0.0.1:${port}/health/ready`).catch(() => undefined))?.status !== 200) await new Promise((resolve) => setTimeout(resolve, 200));
    const locker = new pg.Client({ connectionString: database.url });
    await locker.connect();
    try {
      // Every projection batch moves its checkpoint row: with the rows locked, the batches wait.
      await locker.query('begin');
      await locker.query('select * from projection_checkpoints for update');
      const token = await mintToken(new TextEncoder().encode(secret), { role: 'admin', subject: 'shutdown-test' }, { ttlSeconds: 60 });
      const registered = await fetch(`http://127.0.0.1:${port}/v1/customers`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'idempotency-key': randomUUID() },
        body: JSON.stringify({ email: `${randomUUID()}@example.com`, firstName: 'Ada', lastName: 'Lovelace' }),
      });
      expect(registered.status).toBe(201);
      await new Promise((resolve) => setTimeout(resolve, 500));
      const signalledAt = Date.now();
      child.kill('SIGTERM');
      const [code] = await once(child, 'exit');
      const exitedAfterMs = Date.now() - signalledAt;
      expect(code, output().stdout.slice(-2_000)).toBe(1);
      expect(output().stdout).toContain('shutdown timed out');
      expect(exitedAfterMs).toBeLessThan(1_000 + 3_000);
    } finally {
      await locker.query('rollback').catch(() => undefined);
      await locker.end();
    }
  });

  /** A fresh data folder for `ledger start` with an embedded PostgreSQL; after `body`, the next start must work, then the folder goes. */
  async function withEmbeddedDataDir(body: (env: Record<string, string>, serverRunning: () => boolean) => Promise<void>): Promise<void> {
    const dataDir = mkdtempSync(join(tmpdir(), 'ledger-embedded-'));
    chmodSync(dataDir, 0o755); // as root, the embedded server runs as a `postgres` user that must reach it
    const env = { LEDGER_DATA_DIR: dataDir, EMBEDDED_PG_PORT: String(20_000 + Math.floor(Math.random() * 10_000)), PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'info' };
    // The server itself (`postgres -D <dir>`), not initdb, which ends on its own.
    const serverRunning = () => execFileSync('ps', ['-eo', 'args']).toString().split('\n').some((line) => /\/postgres\s+-D\s/.test(line) && line.includes(join(dataDir, 'pg')));
    try {
      await body(env, serverRunning);
      const again = run(['migrate'], env);
      const [againCode] = await once(again.child, 'exit');
      expect(againCode, again.output().stderr).toBe(0);
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  }

  it.skipIf(embeddedUnreachable)('a SIGTERM while start-up runs the embedded PostgreSQL stops it too: nothing is left running, and the next start works', async () => {
    await withEmbeddedDataDir(async (env, serverRunning) => {
      const { child, output } = run(['start'], env);
      // The signal comes once the server process runs, before start-up is done with it.
      const deadline = Date.now() + 60_000;
      while (Date.now() < deadline && !serverRunning()) await new Promise((resolve) => setTimeout(resolve, 20));
      expect(serverRunning(), 'the embedded server started').toBe(true);
      child.kill('SIGTERM');
      await once(child, 'exit');
      expect(serverRunning(), `an embedded PostgreSQL left running\n${output().stdout.slice(-2_000)}${output().stderr}`).toBe(false);
    });
  }, 90_000);

  it.skipIf(embeddedUnreachable)('a start-up that fails after the embedded PostgreSQL started (EventStoreDB unreachable) stops it before exiting, and the next start works', async () => {
    await withEmbeddedDataDir(async (env, serverRunning) => {
      // Port 1 refuses at once; the store's connect fails within its 5 s bound, after the migrations.
      const { child, output } = run(['start'], { ...env, EVENTSTORE_URL: 'esdb://127.0.0.1:1?tls=false' });
      const [code] = await once(child, 'exit');
      expect(code, output().stdout.slice(-2_000)).toBe(1);
      expect(output().stderr).toMatch(/EVENTSTORE_URL\) is unreachable/);
      expect(output().stdout, 'the embedded server had started').toContain('starting embedded PostgreSQL');
      expect(serverRunning(), `an embedded PostgreSQL left running\n${output().stdout.slice(-2_000)}${output().stderr}`).toBe(false);
    });
  }, 90_000);

  it.skipIf(embeddedUnreachable)('Ctrl-C in a terminal (SIGINT to the whole process group, the embedded PostgreSQL included) stops at once, cleanly, and the next start works', async () => {
    await withEmbeddedDataDir(async (env, serverRunning) => {
      const { child, output } = run(['start'], env, [], { ownProcessGroup: true });
      const deadline = Date.now() + 60_000;
      while (Date.now() < deadline && !output().stdout.includes('"ledger started"')) await new Promise((resolve) => setTimeout(resolve, 50));
      expect(output().stdout, output().stderr).toContain('"ledger started"');
      const signalledAt = Date.now();
      process.kill(-child.pid!, 'SIGINT');
      const [code] = await once(child, 'exit');
      expect(code, output().stdout.slice(-2_000)).toBe(0);
      expect(Date.now() - signalledAt, 'well inside SHUTDOWN_TIMEOUT_MS (10 s)').toBeLessThan(5_000);
      expect(output().stdout).toContain('"msg":"stopped"');
      expect(output().stdout).not.toContain('shutdown timed out');
      expect(serverRunning(), 'no embedded PostgreSQL left running').toBe(false);
    });
  }, 90_000);

  it.skipIf(embeddedUnreachable)('an operating command beside a running ledger uses its embedded PostgreSQL, and leaves it running', async () => {
    await withEmbeddedDataDir(async (env, serverRunning) => {
      const { child, output } = run(['start'], env);
      await boundPort(output);
      try {
        const status = run(['projections', 'status'], env);
        const [code] = await once(status.child, 'exit');
        expect(code, status.output().stderr).toBe(0);
        expect(status.output().stdout).toContain('accounts');
        expect(serverRunning(), 'the ledger\'s embedded server still runs').toBe(true);
        // Another data folder on the same port is not served by that server: it is not used.
        const otherDir = mkdtempSync(join(tmpdir(), 'ledger-embedded-other-'));
        chmodSync(otherDir, 0o755);
        try {
          const elsewhere = run(['projections', 'status'], { ...env, LEDGER_DATA_DIR: otherDir });
          const [elsewhereCode] = await once(elsewhere.child, 'exit');
          expect(elsewhereCode).toBe(1);
          expect(elsewhere.output().stderr).toContain('embedded PostgreSQL did not start');
        } finally {
          rmSync(otherDir, { recursive: true, force: true });
        }
      } finally {
        child.kill('SIGTERM');
        await once(child, 'exit');
      }
      expect(serverRunning(), 'stopped with the ledger that started it').toBe(false);
    });
  }, 90_000);

  it('replays a stream as JSON lines in the audit API form, says so for a stream with no events, and stops quietly when its reader goes away', async () => {
    const runtime = await openRuntime(loadConfig({ DATABASE_URL: database.url, JWT_SECRET: 'x'.repeat(40), LOG_LEVEL: 'silent' }), pino({ level: 'silent' }));
    const stream = `account-${randomUUID()}`;
    try {
      for (const part of [0, 1]) {
        const events = Array.from({ length: 600 }, (_, n) => ({ id: randomUUID(), type: 'Seeded', data: { n: part * 600 + n, amountMinor: 10n ** 20n, note: 'x'.repeat(200) } }));
        await runtime.store.append(stream, events, { expectedRevision: part === 0 ? 'no_stream' : 599n });
      }
    } finally {
      await runtime.close();
    }
    const env = { DATABASE_URL: database.url, LOG_LEVEL: 'silent' };

    const whole = run(['audit', 'replay', stream], env);
    const [code] = await once(whole.child, 'exit');
    expect(code, whole.output().stderr).toBe(0);
    const lines = whole.output().stdout.trim().split('\n').map((line) => JSON.parse(line) as { revision: string; position: string; type: string; data: { n: number; amountMinor: string } });
    expect(lines).toHaveLength(1_200);
    expect(lines.map((line) => line.data.n)).toEqual(Array.from({ length: 1_200 }, (_, n) => n));
    expect(lines[1_199]).toMatchObject({ revision: '1199', type: 'Seeded', data: { amountMinor: '100000000000000000000' } });
    expect(typeof lines[0]!.position).toBe('string');

    const none = run(['audit', 'replay', `account-${randomUUID()}`], env);
    const [noneCode] = await once(none.child, 'exit');
    expect(noneCode).toBe(1);
    expect(none.output().stderr).toMatch(/^ledger: stream account-\S+ has no events\n$/);

    // As `| head -1`: the reader closes its end after the first chunk.
    const cut = run(['audit', 'replay', stream], env);
    cut.child.stdout!.once('data', () => cut.child.stdout!.destroy());
    const [cutCode] = await once(cut.child, 'exit');
    expect(cutCode, cut.output().stderr).toBe(0);
    expect(cut.output().stderr).toBe('');
  });

  it('refuses a verify while another rebuild or verify of the projection runs, with one clear line and a failing exit code', async () => {
    // Held as a running rebuild holds it (rebuild.ts, runLockKey).
    const other = new pg.Client({ connectionString: database.url });
    await other.connect();
    try {
      await other.query(`select pg_advisory_lock(hashtext('projection-rebuild:accounts'))`);
      const { child, output } = run(['audit', 'verify', 'accounts'], { DATABASE_URL: database.url, JWT_SECRET: 'x'.repeat(40), LOG_LEVEL: 'error' });
      const [code] = await once(child, 'exit');
      expect(code, output().stderr).toBe(1);
      expect(output().stderr).toMatch(/^ledger: a rebuild or verify of accounts is already running\n$/m);
    } finally {
      await other.end();
    }
  });
});
