import { pino, type Logger, type LoggerOptions } from 'pino';

/** Paths pino removes from every log line: credentials and personal data. */
export const REDACTED_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["idempotency-key"]',
  'headers.authorization',
  'authorization',
  'token',
  '*.token',
  'password',
  '*.password',
  'email',
  '*.email',
  'firstName',
  '*.firstName',
  'lastName',
  '*.lastName',
  'body.email',
  'body.firstName',
  'body.lastName',
];

export function createLogger(level: string, options: LoggerOptions = {}): Logger {
  const pretty = process.stdout.isTTY === true;
  return pino({
    level,
    redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
    ...(pretty ? { transport: { target: 'pino-pretty', options: { colorize: true, translateTime: 'SYS:HH:MM:ss.l' } } } : {}),
    ...options,
  });
}
