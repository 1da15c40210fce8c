import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, posix } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { copies, environment, execForm, parseDockerfile, readDockerfile, user, workdir, type DockerStage } from '../helpers/dockerfile.js';
import { waitFor } from '../helpers/wait.js';

/**
 * There is no Docker daemon in CI, so this builds the layout the image would have, from the Dockerfile itself: the
 * final stage's COPY lines, with stages that run `npm run build` standing for this (built) checkout and every
 * other stage materialised in a temp dir by running its COPY and RUN lines. Then it starts the ENTRYPOINT and CMD
 * there, with the image's ENV, as the container would.
 */
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const stages = readDockerfile(join(ROOT, 'Dockerfile'));
const final = stages.at(-1)!;

/**
 * better-sqlite3's install script downloads a prebuilt binary from GitHub, or compiles SQLite (45 s here) when it
 * cannot. This checkout's own install already holds that binary for this Node and platform, so the layout reuses it
 * for the one `npm rebuild better-sqlite3` step, when the versions match.
 */
const REBUILD_SQLITE = 'npm rebuild better-sqlite3';

async function registryReachable(): Promise<string | undefined> {
  const registry = execFileSync('npm', ['config', 'get', 'registry'], { encoding: 'utf8' }).trim();
  try {
    const response = await fetch(new URL('-/ping', registry.endsWith('/') ? registry : `${registry}/`), {
      signal: AbortSignal.timeout(5000),
    });
    return response.ok ? undefined : `the npm registry ${registry} answered ${response.status}`;
  } catch (error) {
    return `the npm registry ${registry} is unreachable (${(error as Error).message})`;
  }
}

const unreachable = await registryReachable();
if (unreachable !== undefined) console.warn(`image-layout.test.ts skipped: ${unreachable}; npm ci --omit=dev needs it`);

const temp = mkdtempSync(join(tmpdir(), 'keyhold-image-'));
const children: ChildProcess[] = [];
afterAll(() => {
  for (const child of children) child.kill('SIGKILL');
  rmSync(temp, { recursive: true, force: true });
});

function stageNamed(name: string): DockerStage {
  const stage = stages.find((s) => s.name === name);
  if (stage === undefined) throw new Error(`COPY --from=${name}: no such stage`);
  return stage;
}

function isBuildStage(stage: DockerStage): boolean {
  return stage.instructions.some((i) => i.keyword === 'RUN' && i.args.includes('npm run build'));
}

function runCommands(stage: DockerStage): string[] {
  return stage.instructions.filter((i) => i.keyword === 'RUN').flatMap((i) => i.args.split(' && '));
}

const materialised = new Map<string, string>();

/** Runs a dependency stage's COPY and RUN lines in a temp dir standing for its WORKDIR; returns the dir. */
function materialise(stage: DockerStage): string {
  const known = materialised.get(stage.name!);
  if (known !== undefined) return known;
  const dir = join(temp, `stage-${stage.name}`);
  mkdirSync(dir, { recursive: true });
  for (const copy of copies(stage)) {
    if (copy.from !== undefined) throw new Error(`stage ${stage.name}: COPY --from is not supported here`);
    for (const source of copy.sources) copyInto(join(ROOT, source), dir, copy.dest, copy.sources.length > 1);
  }
  for (const command of runCommands(stage)) {
    if (command.trim() === REBUILD_SQLITE) {
      const ours = JSON.parse(readFileSync(join(ROOT, 'node_modules/better-sqlite3/package.json'), 'utf8')).version;
      const theirs = JSON.parse(readFileSync(join(dir, 'node_modules/better-sqlite3/package.json'), 'utf8')).version;
      if (ours === theirs) {
        cpSync(join(ROOT, 'node_modules/better-sqlite3/build'), join(dir, 'node_modules/better-sqlite3/build'), {
          recursive: true,
        });
        continue;
      }
    }
    execFileSync('sh', ['-c', command], { cwd: dir, stdio: 'pipe', timeout: 120_000 });
  }
  materialised.set(stage.name!, dir);
  return dir;
}

/** COPY semantics for what we use: a file or a directory's content goes to DEST (a dir when it ends in `/`). */
function copyInto(source: string, root: string, dest: string, destIsDir: boolean): void {
  const target = dest.endsWith('/') || destIsDir ? join(root, dest, posix.basename(source)) : join(root, dest);
  mkdirSync(dirname(target), { recursive: true });
  cpSync(source, target, { recursive: true, verbatimSymlinks: true });
}

function buildLayout(): string {
  const layout = join(temp, 'image', workdir(final));
  mkdirSync(layout, { recursive: true });
  for (const copy of copies(final)) {
    for (const source of copy.sources) {
      let from: string;
      if (copy.from === undefined) {
        from = join(ROOT, source);
      } else {
        const stage = stageNamed(copy.from);
        const relative = posix.relative(workdir(stage), source);
        if (relative.startsWith('..')) throw new Error(`COPY --from=${copy.from} ${source}: outside its WORKDIR`);
        from = join(isBuildStage(stage) ? ROOT : materialise(stage), relative);
      }
      if (!existsSync(from)) throw new Error(`COPY ${source}: ${from} does not exist (run npm run build first)`);
      copyInto(from, layout, copy.dest, copy.sources.length > 1);
    }
  }
  return layout;
}

describe('the container image (Dockerfile)', () => {
  it('is read strictly: a stray line, a stage defined twice or a shell-form ENTRYPOINT is an error, and the file has three stages', () => {
    expect(() => parseDockerfile('FROM a AS b\nFROM c AS b\n')).toThrow(/defined twice/);
    expect(() => parseDockerfile('FROM a\nENTRYPOINT and CMD from there\n')).toThrow(/exec form/);
    expect(() => parseDockerfile('FROM a\nKeep every COPY in\n')).toThrow(/not a Dockerfile instruction/);
    expect(readDockerfile(new URL('../../Dockerfile', import.meta.url))).toHaveLength(3);
  });

  it('runs as a numeric non-root user and sets NODE_OPTIONS to the tuned heap of npm start', () => {
    expect(user(final)).toMatch(/^[1-9]\d*(:\d+)?$/);
    const start = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).scripts.start as string;
    const tuned = start.split(' ').filter((word) => word.startsWith('--max-'));
    expect(tuned.length).toBeGreaterThan(0);
    expect(environment(final).NODE_OPTIONS?.split(' ')).toEqual(expect.arrayContaining(tuned));
    expect(execForm(final, 'ENTRYPOINT')).toEqual(['node', 'dist/src/main.js']);
    expect(execForm(final, 'CMD')).toEqual(['server']);
  });

  it.skipIf(unreachable !== undefined)(
    'starts keyhold server from the layout its COPY lines build, is ready, and exits 0 on SIGTERM',
    async () => {
      const layout = buildLayout();
      const dataDir = mkdtempSync(join(temp, 'data-'));
      const [command, ...args] = [...execForm(final, 'ENTRYPOINT')!, ...execForm(final, 'CMD')!];
      expect(command).toBe('node');
      const child = spawn(process.execPath, args, {
        cwd: layout,
        env: {
          PATH: process.env.PATH ?? '',
          ...environment(final),
          // A free port and loopback rather than the image's 7780 on every interface; a temp dir for the volume.
          KEYHOLD_HOST: '127.0.0.1',
          KEYHOLD_PORT: '0',
          KEYHOLD_DATA_DIR: dataDir,
          KEYHOLD_LOG_LEVEL: 'warn',
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      children.push(child);
      let output = '';
      child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
      child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
      const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
      const address = await waitFor(() => /Keyhold listening on (http:\/\/\S+)/.exec(output)?.[1], 15_000).catch(() => {
        throw new Error(`the server did not start:\n${output}`);
      });
      expect((await fetch(`${address}/readyz`)).status).toBe(200);
      // The console is served from dist/ui, which the image must carry too.
      expect((await fetch(`${address}/ui/`)).status).toBe(200);
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
    },
    90_000,
  );
});
