import type { Migration } from 'kysely';

/** Read-model migrations, each owned by its read model's folder. */
export const readModelMigrations: Record<string, Migration> = {};
