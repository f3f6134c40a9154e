import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeJwt } from 'jose';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { createTokenVerifier } from '../../src/shared/auth/keys.js';

const dataDir = mkdtempSync(join(tmpdir(), 'ledger-token-'));
const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME, LEDGER_DATA_DIR: dataDir, LOG_LEVEL: 'silent' };

function ledger(...args: string[]) {
  const result = spawnSync(process.execPath, ['bin/ledger.js', 'token', ...args], { env, encoding: 'utf8', timeout: 30_000 });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe('ledger token', () => {
  afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

  it('prints only a token that the ledger verifies, with the requested lifetime', async () => {
    const result = ledger('--sub', 'teller-7', '--role', 'teller', '--ttl', '15m');
    expect(result.status, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+\n$/);
    const token = result.stdout.trim();
    const principal = await createTokenVerifier(loadConfig({ LEDGER_DATA_DIR: dataDir })).verify(token);
    expect(principal).toEqual({ subject: 'teller-7', role: 'teller' });
    const { exp, iat } = decodeJwt(token);
    expect(exp! - iat!).toBe(15 * 60);
  });

  it('defaults to one hour', () => {
    const { exp, iat } = decodeJwt(ledger('--sub', 'a', '--role', 'admin').stdout.trim());
    expect(exp! - iat!).toBe(3_600);
  });

  it.each([
    ['an unknown role', ['--sub', 'x', '--role', 'root'], /--role must be one of customer, teller, auditor, admin/],
    ['a missing subject', ['--role', 'admin'], /--sub ID is required/],
    ['a ttl without a unit', ['--sub', 'x', '--role', 'admin', '--ttl', '60'], /--ttl must look like/],
    ['a ttl over 30 days', ['--sub', 'x', '--role', 'admin', '--ttl', '31d'], /at most 30d/],
    ['a negative ttl', ['--sub', 'x', '--role', 'admin', '--ttl', '-1h'], /ttl/],
    ['an unknown option', ['--sub', 'x', '--role', 'admin', '--admin'], /Unknown option/],
  ])('refuses %s with one line and exit code 2', (_label, args, message) => {
    const result = ledger(...args);
    expect(result.status).toBe(2);
    expect(result.stdout).toBe('');
    expect(result.stderr).toMatch(message);
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
  });
});
