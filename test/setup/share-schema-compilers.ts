import { createRequire } from 'node:module';

/**
 * Test-process only: every app a test file builds compiles the same route schemas again, and that was most of what
 * building an app cost (about 175 of 225 ms: fast-json-stringify and Ajv code generation). Fastify takes its default
 * compilers from `@fastify/ajv-compiler` and `@fastify/fast-json-stringify-compiler` when it builds an instance; here
 * those two modules are replaced, in this process's module cache, by the same compilers behind a cache of the
 * functions they return, keyed by the schema's JSON (and the shared schemas and options it was compiled with). A
 * validator or serializer is a pure function of exactly that, so every app still validates and serialises with code
 * that fastify's own compilers generated; it is only not generated twice. Production code and options are untouched:
 * fastify still sees its default compilers (so nothing it does differently for custom compilers applies).
 */

type Compile = (route: { schema: unknown }) => unknown;
type Selector = (externalSchemas: unknown, options: unknown) => Compile;

/** JSON that stands for a schema, or undefined when it holds something JSON would lose (a function, a RegExp). */
function keyOf(value: unknown): string | undefined {
  let lossy = false;
  const json = JSON.stringify(value, (_key, inner: unknown) => {
    if (typeof inner === 'function' || inner instanceof RegExp || typeof inner === 'bigint') lossy = true;
    return inner;
  });
  return lossy ? undefined : json;
}

function memoised(selector: Selector): Selector {
  const compilers = new Map<string, Compile>();
  return (externalSchemas, options) => {
    const factoryKey = keyOf([externalSchemas, options]);
    if (factoryKey === undefined) return selector(externalSchemas, options);
    let compiler = compilers.get(factoryKey);
    if (compiler === undefined) {
      const compile = selector(externalSchemas, options);
      const compiled = new Map<string, unknown>();
      compiler = (route) => {
        const key = keyOf(route.schema);
        if (key === undefined) return compile(route);
        if (!compiled.has(key)) compiled.set(key, compile(route));
        return compiled.get(key);
      };
      compilers.set(factoryKey, compiler);
    }
    return compiler;
  };
}

const fromFastify = createRequire(createRequire(import.meta.url).resolve('fastify'));

/** Marks a replacement, so that a setup file run again in the same process (isolate: false) does not wrap it again. */
const SHARED = Symbol.for('keyhold.test.shared-schema-compiler');

function replaceSelector(id: string, make: (real: () => Selector) => Selector): void {
  const path = fromFastify.resolve(id);
  const real = fromFastify(id) as (() => Selector) & Record<PropertyKey, unknown>;
  if (real[SHARED] === true) return;
  const shared = make(real);
  const replacement = Object.assign(() => shared, real, { default: undefined as unknown, [SHARED]: true });
  replacement.default = replacement;
  fromFastify.cache[path]!.exports = replacement;
}

replaceSelector('@fastify/ajv-compiler', (AjvCompiler) => memoised(AjvCompiler()));
replaceSelector('@fastify/fast-json-stringify-compiler', (SerializerSelector) => memoised(SerializerSelector()));
