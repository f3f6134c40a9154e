import { randomBytes, createPublicKey, type KeyObject } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { createRemoteJWKSet, jwtVerify, SignJWT, type JWTVerifyGetKey } from 'jose';
import type { Config } from '../../config.js';
import { PRINCIPAL_ROLES, type Principal, type PrincipalRole } from './principal.js';

export class TokenError extends Error {
  /** Signed by the key, but past its `exp`: a client to refresh its token, not a guesser. */
  get expired(): boolean {
    return this.message === 'ERR_JWT_EXPIRED';
  }
}

export interface TokenVerifier {
  verify(token: string): Promise<Principal>;
}

const SECRET_FILE = 'jwt-secret';
const VERIFIED_REMEMBERED_MS = 300_000;
const JWKS_TIMEOUT_MS = 5_000;
const VERIFIED_TOKENS_MAX = 10_000;

/** The HS256 secret: JWT_SECRET, or one generated once into the data folder for the embedded default. */
export function resolveHmacSecret(config: Config): Uint8Array | undefined {
  if (config.JWT_SECRET) return new TextEncoder().encode(config.JWT_SECRET);
  if (config.JWT_PUBLIC_KEY || config.JWT_JWKS_URL) return undefined;
  const dataDir = resolve(config.LEDGER_DATA_DIR);
  const file = resolve(dataDir, SECRET_FILE);
  if (!existsSync(file)) {
    mkdirSync(dataDir, { recursive: true });
    writeFileSync(file, randomBytes(48).toString('base64url'), { flag: 'wx', mode: 0o600 });
  }
  chmodSync(file, 0o600);
  const secret = readFileSync(file, 'utf8').trim();
  // As JWT_SECRET: a short secret (a file truncated or edited by hand) is refused, not used.
  if (secret.length < 32) throw new Error(`${file} holds ${secret.length} characters; an HS256 secret needs 32 or more (delete the file to have one generated)`);
  return new TextEncoder().encode(secret);
}

/**
 * Verifies bearer tokens with exactly one key kind. The accepted algorithms follow from the key, so
 * an HS256 token signed with a public key (algorithm confusion) or `alg: none` never verifies.
 */
export function createTokenVerifier(config: Config): TokenVerifier {
  const options = { issuer: config.JWT_ISSUER, audience: config.JWT_AUDIENCE, requiredClaims: ['sub', 'exp'] };
  let key: Uint8Array | KeyObject | JWTVerifyGetKey;
  let algorithms: string[];
  if (config.JWT_JWKS_URL) {
    key = createRemoteJWKSet(new URL(config.JWT_JWKS_URL), { timeoutDuration: JWKS_TIMEOUT_MS });
    algorithms = ['RS256', 'ES256'];
  } else if (config.JWT_PUBLIC_KEY) {
    const publicKey = createPublicKey(config.JWT_PUBLIC_KEY.replace(/\\n/g, '\n'));
    key = publicKey;
    algorithms = publicKey.asymmetricKeyType === 'ec' ? ['ES256'] : ['RS256'];
  } else {
    key = resolveHmacSecret(config)!;
    algorithms = ['HS256'];
  }
  // Verified tokens are remembered until they expire: signature checks dominate a request's CPU.
  const verified = new Map<string, { principal: Principal; expiresAtMs: number }>();
  return {
    async verify(token: string): Promise<Principal> {
      const known = verified.get(token);
      if (known && known.expiresAtMs > Date.now()) return known.principal;
      if (known) verified.delete(token);
      let payload;
      try {
        ({ payload } = await jwtVerify(token, key as Uint8Array, { ...options, algorithms }));
      } catch (error) {
        throw new TokenError(error instanceof Error && 'code' in error ? String((error as { code: string }).code) : 'invalid token');
      }
      const role = payload.role;
      if (typeof payload.sub !== 'string' || payload.sub.length === 0 || payload.sub.length > 200) throw new TokenError('token has no subject');
      if (typeof role !== 'string' || !PRINCIPAL_ROLES.includes(role as PrincipalRole)) throw new TokenError('token has no valid role');
      const principal: Principal = { subject: payload.sub, role: role as PrincipalRole };
      if (verified.size >= VERIFIED_TOKENS_MAX) verified.delete(verified.keys().next().value!);
      // At most a few minutes, whatever the token's lifetime: a key withdrawn from the key set stops
      // verifying its tokens here within that, not at their expiry.
      verified.set(token, { principal, expiresAtMs: Math.min((payload.exp ?? 0) * 1000, Date.now() + VERIFIED_REMEMBERED_MS) });
      return principal;
    },
  };
}

/** Mints an HS256 token for local use (`ledger token`) and for tests. */
export async function mintToken(secret: Uint8Array, principal: Principal, options: { ttlSeconds: number; issuer?: string; audience?: string }): Promise<string> {
  let jwt = new SignJWT({ role: principal.role }).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).setSubject(principal.subject).setIssuedAt().setExpirationTime(`${options.ttlSeconds}s`);
  if (options.issuer) jwt = jwt.setIssuer(options.issuer);
  if (options.audience) jwt = jwt.setAudience(options.audience);
  return jwt.sign(secret);
}
