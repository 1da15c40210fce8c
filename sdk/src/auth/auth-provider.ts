/** TLS client material for mutual TLS, as PEM. */
export interface TlsIdentity {
  /** The client certificate chain, leaf first. */
  readonly cert: string;
  /** The client private key. */
  readonly key: string;
  /** The trust bundle for the server, when the identity brings one (a SPIFFE bundle). */
  readonly ca?: string;
  /** Changes whenever the material changes, so the transport knows to open new connections. */
  readonly generation: number;
}

/** What a request carries to prove the workload's identity. */
export interface Credentials {
  /** Headers to add to the request, such as `authorization`. */
  readonly headers: Readonly<Record<string, string>>;
  /** Client certificate and key, for mutual TLS. */
  readonly tls?: TlsIdentity;
}

/**
 * How the client proves who the workload is. Providers re-read rotated credentials themselves: the kubelet rotates
 * projected tokens and SPIRE rotates SVIDs while the process runs.
 */
export interface AuthProvider {
  /** The credentials for the next request. Cheap when nothing changed. */
  credentials(): Promise<Credentials>;
  /** Called after the service answered 401, so the next `credentials()` reads the source again. */
  invalidate(): void;
}
