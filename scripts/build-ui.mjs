// Builds the console (ui/src) into dist/ui: one esbuild bundle, the page and its stylesheet. Everything comes from
// node_modules, so a clean `npm ci && npm run build` needs no network beyond the registry and no CDN at run time.
import { copyFileSync, mkdirSync } from 'node:fs';
import { build } from 'esbuild';

const out = 'dist/ui';
mkdirSync(out, { recursive: true });
await build({
  entryPoints: ['ui/src/main.ts'],
  outfile: `${out}/app.js`,
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: ['es2022'],
  minify: true,
  sourcemap: true,
  legalComments: 'none',
  logLevel: 'warning',
});
for (const file of ['index.html', 'styles.css']) copyFileSync(`ui/src/${file}`, `${out}/${file}`);
