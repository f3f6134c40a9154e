export const PRINCIPAL_ROLES = ['customer', 'teller', 'auditor', 'admin'] as const;
export type PrincipalRole = (typeof PRINCIPAL_ROLES)[number];

/** Who is acting. For a customer, `subject` is their customer id. */
export interface Principal {
  subject: string;
  role: PrincipalRole;
}

export function actorOf(principal: Principal): string {
  return `${principal.role}:${principal.subject}`;
}

/**
 * The principal as the prefix of its idempotency keys: `role:subject`, which a key may follow with
 * anything, colons included, and still not collide, as long as the subject has no colon. A subject
 * that has one (or starts with the escape `~`) is written `~` + base64url: `teller` `a` with key
 * `b:x` and `teller` `a:b` with key `x` were both `teller:a:b:x`. Unchanged for every other
 * subject, so keys recorded before still match their repeats.
 */
export function idempotencyScopeOf(principal: Principal): string {
  const { role, subject } = principal;
  const plain = !subject.includes(':') && !subject.startsWith('~');
  return `${role}:${plain ? subject : `~${Buffer.from(subject, 'utf8').toString('base64url')}`}`;
}

/**
 * Who may call a route. A customer may call it only where `ownership` names how to find the owner,
 * and only for what they own; anyone else's resource answers 404 so ids cannot be probed.
 */
export interface AccessRule {
  roles: readonly PrincipalRole[];
  ownership?: 'customer-param' | 'account-param' | 'customer-body' | 'transfer-source' | 'transfer-param';
}
