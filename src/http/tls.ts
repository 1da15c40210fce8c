import { readFileSync } from 'node:fs';
import type { SecureContextOptions, TlsOptions } from 'node:tls';
import type { TlsConfig } from '../config.js';
import { StartupError } from '../errors.js';

function readPem(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (error) {
    throw new StartupError(`Cannot read ${what} ${path}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`);
  }
}

/**
 * The HTTPS server's options. With a client CA, the server asks for a client certificate but does not refuse the
 * handshake without one or with a bad one: Node verifies the chain and records its verdict on the socket, and the
 * SPIFFE authenticator answers 401 as a problem document (and an audit record) instead of a bare TLS alert. Clients
 * without a certificate can still authenticate with a bearer credential.
 */
export function tlsServerOptions(tls: TlsConfig): TlsOptions & SecureContextOptions {
  const options: TlsOptions & SecureContextOptions = {
    cert: readPem(tls.certFile, 'KEYHOLD_TLS_CERT_FILE'),
    key: readPem(tls.keyFile, 'KEYHOLD_TLS_KEY_FILE'),
    minVersion: 'TLSv1.2',
  };
  if (tls.clientCaFile === undefined) return options;
  return { ...options, ca: readPem(tls.clientCaFile, 'KEYHOLD_TLS_CLIENT_CA_FILE'), requestCert: true, rejectUnauthorized: false };
}
