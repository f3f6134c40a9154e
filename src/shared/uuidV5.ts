import { createHash } from 'node:crypto';

/**
 * Name-based UUIDs, version 5 (RFC 9562: SHA-1 of namespace and name), for a fixed namespace.
 * Byte-for-byte what the `uuid` package's v5 gives (a property test holds it to that), without its
 * per-call namespace parsing and JavaScript UTF-8 encoding: the write path derives one per event.
 */
export function uuidV5Namer(namespace: string): (name: string) => string {
  const hex = namespace.replaceAll('-', '');
  if (!/^[0-9a-f]{32}$/i.test(hex)) throw new Error(`not a UUID: ${namespace}`);
  const namespaceBytes = Buffer.from(hex, 'hex');
  return (name) => {
    const digest = createHash('sha1').update(namespaceBytes).update(name, 'utf8').digest();
    digest[6] = (digest[6]! & 0x0f) | 0x50;
    digest[8] = (digest[8]! & 0x3f) | 0x80;
    const h = digest.toString('hex', 0, 16);
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  };
}
