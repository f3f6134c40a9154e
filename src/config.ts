import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';

/**
 * Every setting the ledger reads from the environment. The README's configuration table lists the
 * same names; tests/deploy.unit.spec.ts checks docker-compose and k8s against this schema.
 */
const Integer = (options: { minimum: number; maximum: number; default: number; description: string }) =>
  Type.Integer({ ...options });

export const ConfigSchema = Type.Object(
  {
    DATABASE_URL: Type.Optional(Type.String({ pattern: '^postgres(ql)?://', description: 'PostgreSQL for events (unless EVENTSTORE_URL) and read models. Unset: embedded PostgreSQL.' })),
    EVENTSTORE_URL: Type.Optional(Type.String({ pattern: '^esdb(\\+discover)?://', description: 'EventStoreDB connection string; when set, events live in EventStoreDB.' })),
    REDIS_URL: Type.Optional(Type.String({ pattern: '^rediss?://', description: 'Redis for shared rate limits and the idempotency response cache.' })),
    PORT: Integer({ minimum: 0, maximum: 65_535, default: 3000, description: 'HTTP port of `ledger start` (both APIs).' }),
    HOST: Type.String({ default: '0.0.0.0', minLength: 1, description: 'Interface to listen on.' }),
    LEDGER_DATA_DIR: Type.String({ default: './.ledger-data', minLength: 1, description: 'Folder of the embedded PostgreSQL and the local token secret.' }),
    EMBEDDED_PG_PORT: Integer({ minimum: 1024, maximum: 65_535, default: 54_329, description: 'Port of the embedded PostgreSQL.' }),
    LOG_LEVEL: Type.Union(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((level) => Type.Literal(level)), { default: 'info' }),
    PG_POOL_MAX: Integer({ minimum: 1, maximum: 200, default: 16, description: 'Connections per process in the PostgreSQL pool.' }),
    PG_APPENDS_IN_FLIGHT: Integer({ minimum: 1, maximum: 200, default: 8, description: 'Append statements in flight at most (at most the pool size); appends arriving meanwhile are grouped into the next statement and commit.' }),
    PG_APPEND_PIPELINE_EVENTS: Integer({ minimum: 1, maximum: 100_000, default: 64, description: 'While an append statement is in flight, another starts only once this many events wait; until then they share the next statement and commit.' }),
    PG_STATEMENT_TIMEOUT_MS: Integer({ minimum: 100, maximum: 600_000, default: 30_000, description: 'Bound on any one SQL statement.' }),
    SHUTDOWN_TIMEOUT_MS: Integer({ minimum: 100, maximum: 120_000, default: 10_000, description: 'Bound on draining in-flight work at shutdown.' }),
    BODY_LIMIT_BYTES: Integer({ minimum: 1_024, maximum: 1_048_576, default: 16_384, description: 'Largest accepted request body.' }),
    REQUEST_TIMEOUT_MS: Integer({ minimum: 1_000, maximum: 120_000, default: 15_000, description: 'Bound on one HTTP request.' }),
    COMMAND_RETRY_LIMIT: Integer({ minimum: 1, maximum: 50, default: 8, description: 'Attempts of a command on a concurrency conflict before answering 409.' }),
    READ_WAIT_TIMEOUT_MS: Integer({ minimum: 0, maximum: 30_000, default: 3_000, description: 'How long a query with minPosition waits for projections.' }),
    PROJECTION_BATCH_SIZE: Integer({ minimum: 1, maximum: 1_000, default: 500, description: 'Events per projection transaction.' }),
    TRANSFER_DEADLINE_MS: Integer({ minimum: 1_000, maximum: 86_400_000, default: 30_000, description: 'A transfer not past its reservation step by then is compensated and failed.' }),
    TRANSFER_ADMISSION_MAX_LAG_MS: Integer({ minimum: 0, maximum: 3_600_000, default: 5_000, description: 'New transfers get 503 while the running process manager is this far behind the log; 0 never refuses.' }),
    TRANSFER_ADMISSION_MAX_APPEND_WAIT_MS: Integer({ minimum: 0, maximum: 600_000, default: 1_000, description: 'New transfers get 503 while the oldest append queued in this process has waited this long; 0 never refuses.' }),
    // At least a minute: a credit decided just before the deadline must still find the hold when its
    // capture comes, and under load that can take seconds (docs/architecture.md, "Deadlines").
    TRANSFER_HOLD_GRACE_MS: Integer({ minimum: 60_000, maximum: 604_800_000, default: 3_600_000, description: 'How long after the deadline a transfer hold still reserves funds.' }),
    JWT_SECRET: Type.Optional(Type.String({ minLength: 32, description: 'HS256 secret for bearer tokens. Unset with embedded PostgreSQL: generated into LEDGER_DATA_DIR.' })),
    JWT_PUBLIC_KEY: Type.Optional(Type.String({ minLength: 1, description: 'PEM public key for RS256/ES256 tokens.' })),
    JWT_JWKS_URL: Type.Optional(Type.String({ pattern: '^https?://', description: 'JWKS URL for RS256/ES256 tokens.' })),
    JWT_ISSUER: Type.Optional(Type.String({ minLength: 1 })),
    JWT_AUDIENCE: Type.Optional(Type.String({ minLength: 1 })),
    CORS_ORIGINS: Type.String({ default: '', description: 'Comma-separated allowed origins; empty allows none.' }),
    RATE_LIMIT_PER_MINUTE: Integer({ minimum: 1, maximum: 1_000_000, default: 6_000, description: 'Requests per minute per principal and per IP.' }),
  },
  { additionalProperties: true },
);

export type Config = Static<typeof ConfigSchema>;

export const CONFIG_KEYS = Object.keys(ConfigSchema.properties) as (keyof Config)[];

export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** Reads and validates the environment. Throws ConfigError with one line naming the variable. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const raw: Record<string, unknown> = {};
  for (const key of CONFIG_KEYS) {
    const value = env[key];
    if (value === undefined || value === '') continue;
    raw[key] = coerce(ConfigSchema.properties[key], value);
  }
  const withDefaults = Value.Default(ConfigSchema, raw) as Record<string, unknown>;
  const firstError = Value.Errors(ConfigSchema, withDefaults).First();
  if (firstError) {
    const variable = firstError.path.replace(/^\//, '') || 'environment';
    const shown = env[variable] === undefined ? '' : ` (got ${JSON.stringify(redact(variable, env[variable]!))})`;
    throw new ConfigError(`invalid configuration: ${variable} ${describe(firstError.message, firstError.schema)}${shown}`);
  }
  // A public key or a key set is usually an identity provider's, signing tokens for other services
  // too: only tokens naming this ledger as their audience, from the issuer expected, may act here.
  if ((withDefaults.JWT_PUBLIC_KEY || withDefaults.JWT_JWKS_URL) && (!withDefaults.JWT_ISSUER || !withDefaults.JWT_AUDIENCE)) {
    throw new ConfigError('invalid configuration: JWT_ISSUER and JWT_AUDIENCE are required with JWT_PUBLIC_KEY or JWT_JWKS_URL');
  }
  // Keys fetched in clear text could be swapped on the way; plain http only to this machine.
  if (typeof withDefaults.JWT_JWKS_URL === 'string' && !/^https:\/\//.test(withDefaults.JWT_JWKS_URL) && !/^http:\/\/(127\.\d+\.\d+\.\d+|localhost|\[::1\])(:\d+)?\//.test(withDefaults.JWT_JWKS_URL)) {
    throw new ConfigError('invalid configuration: JWT_JWKS_URL must be https:// (http:// only on the loopback address)');
  }
  // A secret anyone can read in this repository signs anyone's admin token.
  const secret = withDefaults.JWT_SECRET;
  if (typeof secret === 'string' && SHIPPED_PLACEHOLDER_SECRETS.some((placeholder) => secret.toLowerCase().includes(placeholder))) {
    throw new ConfigError('invalid configuration: JWT_SECRET is a placeholder from this repository; set 32+ random characters (e.g. openssl rand -base64 48)');
  }
  return withDefaults as Config;
}

/** Parts of the example secrets shipped in deploy files and docs, refused wherever they appear. */
const SHIPPED_PLACEHOLDER_SECRETS = ['change_me', 'changeme', 'do-not-use-in-production'];

function coerce(schema: TSchema | undefined, value: string): unknown {
  if (schema?.type === 'integer') return /^-?\d+$/.test(value.trim()) ? Number(value.trim()) : value;
  return value;
}

function describe(message: string, schema: TSchema): string {
  if (schema.type === 'integer') return `must be an integer from ${schema.minimum} to ${schema.maximum}`;
  if (schema.pattern) return `must match ${schema.pattern}`;
  if (schema.anyOf) return `must be one of ${schema.anyOf.map((option: TSchema) => option.const).join(', ')}`;
  return message.toLowerCase();
}

function redact(variable: string, value: string): string {
  return /SECRET|URL|KEY/.test(variable) ? '<redacted>' : value;
}
