/**
 * The architecture on one page: what each part of `src/` may import. `npm test` runs this; a cycle, an import that
 * no rule below allows, or a driver, framework or server import in the wrong place fails it.
 *
 * Layers, lowest first. A folder (or root file) may import itself and the parts it lists, nothing else of `src/`.
 */
const MAY_IMPORT = {
  // Pure: no I/O, no framework, no configuration.
  'errors.ts': [],
  lib: [], // clock, timeouts, log destination, the driver-error checks
  crypto: ['errors.ts'], // AES-GCM, HKDF, the ciphertext format, secret bytes
  context: ['errors.ts'], // who calls (principal), what they may ask (actions), what was decided, the audit trail
  // Domain: rules and services, with repository ports; adapters are injected.
  changes: ['errors.ts', 'lib'],
  identity: ['errors.ts', 'lib', 'context'],
  policy: ['errors.ts', 'lib', 'context', 'crypto', 'changes'],
  'root-keys': ['errors.ts', 'lib', 'crypto', 'audit'], // audit: the audit key is derived once from the first root key
  audit: ['errors.ts', 'lib', 'crypto', 'context', 'policy'],
  keys: ['errors.ts', 'lib', 'crypto', 'context', 'policy', 'changes', 'root-keys'],
  tokens: ['errors.ts', 'lib', 'context', 'policy', 'identity', 'changes'],
  // The AWS-KMS-compatible endpoint: access keys bound to principals, SigV4, and AWS operations on the key services.
  'aws-kms': ['errors.ts', 'lib', 'crypto', 'context', 'policy', 'changes', 'identity', 'keys', 'root-keys'],
  // Configuration: read once, validated, frozen.
  'config-schema.ts': ['errors.ts', 'root-keys'],
  'config.ts': ['errors.ts', 'lib', 'crypto', 'root-keys', 'config-schema.ts'],
  // Adapters and edges.
  storage: ['errors.ts', 'lib', 'config.ts', 'context', 'audit', 'changes', 'keys', 'policy', 'root-keys', 'tokens', 'aws-kms'],
  jobs: ['lib', 'audit', 'changes', 'keys'],
  // The Prometheus registry: implements the services' observer interfaces and reads their counters at scrape.
  metrics: ['lib', 'context', 'audit', 'keys', 'policy', 'http'],
  'services.ts': ['audit', 'changes', 'identity', 'keys', 'policy', 'tokens', 'aws-kms'],
  http: ['errors.ts', 'lib', 'config.ts', 'crypto', 'context', 'identity', 'policy', 'keys', 'tokens', 'aws-kms', 'audit', 'changes', 'services.ts'],
  'app.ts': ['errors.ts', 'lib', 'config.ts', 'http', 'services.ts'],
  // The composition root wires adapters into services and services into the app; the CLI runs it.
  'compose.ts': ['*'],
  // The Kubernetes KMS v2 plugin: a client of the service's JSON API, so it imports nothing of the server.
  'kms-plugin': [],
  cli: ['*'],
  'main.ts': ['errors.ts', 'cli'],
};

const escape = (part) => part.replace(/[.-]/g, (c) => `\\${c}`);
const pathOf = (part) => (part.endsWith('.ts') ? `^src/${escape(part)}$` : `^src/${escape(part)}/`);
const everythingBut = (...parts) => `^src/(?!(${parts.map(escape).join('|')})(/|$))`;

const layerRules = Object.entries(MAY_IMPORT).flatMap(([part, allowed]) => [
  { from: { path: pathOf(part) }, to: { path: pathOf(part) } },
  ...(allowed.includes('*')
    ? [{ from: { path: pathOf(part) }, to: { path: everythingBut('main.ts') } }]
    : allowed.map((other) => ({ from: { path: pathOf(part) }, to: { path: pathOf(other) } }))),
]);

/** What `import … from '@keyhold/sdk'` resolves to (the workspace package's `exports`): its types, then its code. */
const SDK_PACKAGE_ENTRY = '^sdk/dist/index\\.(d\\.ts|js)$';

/** Packages that only the named parts of the server may load. */
const packageHomes = [
  { name: 'database-drivers', packages: 'knex|pg|better-sqlite3', home: ['storage'] },
  { name: 'http-framework', packages: 'fastify|@fastify/[^/]+|fastify-plugin', home: ['http', 'app.ts', 'compose.ts', 'cli'] },
  { name: 'der-parser', packages: 'node-forge', home: ['identity'] },
  { name: 'metrics-library', packages: 'prom-client', home: ['metrics'] },
  { name: 'grpc', packages: '@grpc/[^/]+', home: ['kms-plugin'] },
  { name: 'aws-signing', packages: '@smithy/[^/]+', home: ['aws-kms'] },
  // The PKCS#11 addon, an optional dependency: only the root-key provider loads it, lazily.
  { name: 'pkcs11-addon', packages: 'pkcs11js', home: ['root-keys'] },
];

module.exports = {
  forbidden: [
    { name: 'no-circular', severity: 'error', comment: 'A module cycle: break it with a port or by moving the shared type down.', from: {}, to: { circular: true } },
    // pkcs11js is optional: where it could not be built it is absent, and only the PKCS#11 provider misses it.
    { name: 'not-to-unresolvable', severity: 'error', from: {}, to: { couldNotResolve: true, pathNot: '^pkcs11js$' } },
    {
      name: 'sdk-stands-alone',
      severity: 'error',
      comment: 'The SDK ships alone: it imports no server code and has no runtime dependency.',
      from: { path: '^sdk/src/' },
      to: { pathNot: '^sdk/src/', dependencyTypesNot: ['core', 'type-only'] },
    },
    {
      name: 'ui-stands-alone',
      severity: 'error',
      comment: 'The console is bundled for the browser: no server, SDK or Node code, and no package but preact and htm.',
      from: { path: '^ui/src/' },
      to: { pathNot: '^ui/src/|node_modules/(preact|htm)/' },
    },
    { name: 'server-not-ui', severity: 'error', from: { path: '^(src|sdk/src|migrations)/' }, to: { path: '^ui/' } },
    {
      name: 'server-not-sdk',
      severity: 'error',
      comment: 'The server never runs SDK code; only the CLI (an API client) uses the SDK.',
      from: { path: '^(src|migrations)/', pathNot: '^src/cli/' },
      to: { path: '^sdk/' },
    },
    {
      name: 'cli-sdk-as-package',
      severity: 'error',
      comment: 'The CLI uses the SDK as its users do: the published package (@keyhold/sdk), never its sources or internals.',
      from: { path: '^src/cli/' },
      to: { path: '^sdk/', pathNot: SDK_PACKAGE_ENTRY },
    },
    {
      name: 'pure-core-no-packages',
      severity: 'error',
      comment: 'The crypto core, the request context, the policy evaluator and the key rules load no package.',
      from: { path: '^src/(crypto|context)/|^src/policy/(evaluate|glob|policy)\\.ts$|^src/keys/(key-record|lifecycle|bound-context)\\.ts$' },
      to: { dependencyTypes: ['npm', 'npm-dev', 'npm-optional', 'npm-peer', 'npm-no-pkg', 'npm-unknown'] },
    },
    {
      name: 'pure-core-within-core',
      severity: 'error',
      comment: 'The policy evaluator and the key rules use only the pure core, never the services beside them.',
      from: { path: '^src/policy/(evaluate|glob|policy)\\.ts$|^src/keys/(key-record|lifecycle|bound-context)\\.ts$' },
      to: { path: '^src/', pathNot: '^src/(errors\\.ts|crypto/|context/|policy/(evaluate|glob|policy)\\.ts|keys/(key-record|lifecycle|bound-context)\\.ts)' },
    },
    ...packageHomes.map(({ name, packages, home }) => ({
      name,
      severity: 'error',
      comment: `Only ${home.join(', ')} may load ${packages.replace(/\|/g, ', ')}.`,
      from: { path: '^src/', pathNot: home.map(pathOf).join('|') },
      to: { path: `node_modules/(${packages})/` },
    })),
  ],
  allowed: [
    ...layerRules,
    // Runtime packages only: a development dependency is not installed in production.
    { from: { path: '^src/' }, to: { dependencyTypes: ['core', 'npm'], pathNot: '^src/' } },
    // An optional dependency may be missing (it did not build): only its package home loads it, and says so if absent.
    { from: { path: '^src/root-keys/' }, to: { dependencyTypes: ['npm-optional'], path: 'node_modules/pkcs11js/' } },
    { from: { path: '^src/root-keys/' }, to: { couldNotResolve: true, path: '^pkcs11js$' } },
    { from: { path: '^src/' }, to: { dependencyTypes: ['type-only'], pathNot: '^src/' } },
    { from: { path: '^src/cli/' }, to: { path: SDK_PACKAGE_ENTRY } },
    { from: { path: '^src/storage/' }, to: { path: '^migrations/' } },
    { from: { path: '^migrations/' }, to: { path: '^migrations/' } },
    { from: { path: '^migrations/' }, to: { dependencyTypes: ['core', 'npm'] } },
    { from: { path: '^sdk/src/' }, to: { path: '^sdk/src/' } },
    { from: { path: '^sdk/src/' }, to: { dependencyTypes: ['core'] } },
    // The console runs in a browser: it imports itself and the UI library it is bundled with, nothing of the server.
    { from: { path: '^ui/src/' }, to: { path: '^ui/src/' } },
    { from: { path: '^ui/src/' }, to: { path: 'node_modules/(preact|htm)/' } },
  ],
  allowedSeverity: 'error',
  options: {
    // The SDK's build is the package the CLI loads; its sources are cruised as sdk/src.
    doNotFollow: { path: ['node_modules', '^sdk/dist/'] },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default', 'types'],
    },
  },
};
