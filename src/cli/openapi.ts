import { buildApp, createLogger } from '../app.js';
import { loadConfig } from '../config.js';
import type { Services } from '../services.js';

/**
 * Services that were never opened: routes only capture them, and the OpenAPI document needs none of them, so the
 * document is generated without a store or a root key. Calling any of them is a bug and throws.
 */
function unopenedServices(): Services {
  const unopened = (name: string): unknown =>
    new Proxy({}, {
      get: (_target, member) => {
        throw new Error(`services.${name}.${String(member)}: the services are not opened`);
      },
    });
  return new Proxy({} as Services, {
    get: (_target, name) => (name === 'auditWriter' ? undefined : unopened(String(name))),
  });
}

/** Builds the app over unopened services, only to print the OpenAPI document generated from the route schemas. */
export async function renderOpenApi(): Promise<string> {
  const config = loadConfig({ KEYHOLD_LOG_LEVEL: 'silent' });
  const app = await buildApp(unopenedServices(), { logger: createLogger(config) });
  try {
    await app.ready();
    return app.swagger({ yaml: true });
  } finally {
    await app.close();
  }
}
