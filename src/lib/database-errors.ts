/**
 * How to read a database driver's error: pure checks of its name, code and message, so services can tell an outage
 * or a duplicate from a bug without loading a driver.
 */

const UNAVAILABLE_NET_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH']);

/**
 * PostgreSQL SQLSTATEs that mean "the server cannot serve now, retry", not "the query is wrong": 08 connection
 * exception, 53 insufficient resources, 57P0x operator intervention (shutdown), 57014 a statement cancelled by
 * statement_timeout, 55P03 a lock wait cut by lock_timeout, 40001/40P01 serialisation failure and deadlock.
 */
function isUnavailableSqlState(code: string): boolean {
  return (
    code.startsWith('08') ||
    code.startsWith('53') ||
    /^57P0[1-4]$/.test(code) ||
    code === '57014' ||
    code === '55P03' ||
    code === '40001' ||
    code === '40P01'
  );
}

/** True when `error` says the database cannot be reached or cannot serve right now. */
export function isDatabaseUnavailable(error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false;
  const { name, code, message } = error as { name?: unknown; code?: unknown; message?: unknown };
  // knex's pool and query timeouts (KnexTimeoutError sets its name).
  if (name === 'KnexTimeoutError') return true;
  if (typeof code === 'string') {
    if (UNAVAILABLE_NET_CODES.has(code) || isUnavailableSqlState(code)) return true;
    if (code === 'SQLITE_BUSY' || code === 'SQLITE_IOERR' || code === 'SQLITE_CANTOPEN' || code === 'SQLITE_FULL') return true;
  }
  return (
    typeof message === 'string' &&
    (message.includes('Connection terminated') ||
      // pg's client-side query_timeout: the server stopped answering. knex puts the statement (without its values)
      // in front of the message.
      message.endsWith('Query read timeout') ||
      message.includes('timeout exceeded when trying to connect') ||
      // knex, when its pool is gone or cannot open a connection at all.
      message.startsWith('Unable to acquire a connection'))
  );
}

export function isUniqueViolation(error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false;
  const code = (error as { code?: unknown }).code;
  return code === '23505' || code === 'SQLITE_CONSTRAINT_UNIQUE' || code === 'SQLITE_CONSTRAINT_PRIMARYKEY';
}
