import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { resolveHmacSecret } from '../../src/shared/auth/keys.js';

describe('the generated HS256 secret', () => {
  it('is generated once, 32+ characters, and a short one found in the file is refused, not used', () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'ledger-secret-'));
    try {
      const config = loadConfig({ LEDGER_DATA_DIR: dataDir });
      const first = resolveHmacSecret(config)!;
      expect(first.length).toBeGreaterThanOrEqual(32);
      expect(resolveHmacSecret(config)).toEqual(first);
      expect(readFileSync(join(dataDir, 'jwt-secret'), 'utf8').trim().length).toBeGreaterThanOrEqual(32);
      writeFileSync(join(dataDir, 'jwt-secret'), 'x\n');
      expect(() => resolveHmacSecret(config)).toThrow(/holds 1 characters; an HS256 secret needs 32 or more/);
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
