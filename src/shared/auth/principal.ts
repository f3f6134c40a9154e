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
 * Who may call a route. A customer may call it only where `ownership` names how to find the owner,
 * and only for what they own; anyone else's resource answers 404 so ids cannot be probed.
 */
export interface AccessRule {
  roles: readonly PrincipalRole[];
  ownership?: 'customer-param' | 'account-param' | 'customer-body' | 'transfer-source' | 'transfer-param';
}
