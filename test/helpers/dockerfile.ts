import { readFileSync } from 'node:fs';

/** One `FROM` section of a Dockerfile, with its instructions in order. */
export interface DockerStage {
  readonly name: string | undefined;
  readonly from: string;
  readonly instructions: readonly DockerInstruction[];
}

export interface DockerInstruction {
  readonly keyword: string;
  readonly args: string;
}

/** A plain `COPY [--from=STAGE] SRC… DEST`. */
export interface DockerCopy {
  readonly from: string | undefined;
  readonly sources: readonly string[];
  readonly dest: string;
}

/** The Dockerfile reference's instructions; anything else is a broken line (a comment that lost its `#`, say). */
const KEYWORDS = new Set([
  'ADD', 'ARG', 'CMD', 'COPY', 'ENTRYPOINT', 'ENV', 'EXPOSE', 'FROM', 'HEALTHCHECK', 'LABEL', 'MAINTAINER', 'ONBUILD',
  'RUN', 'SHELL', 'STOPSIGNAL', 'USER', 'VOLUME', 'WORKDIR',
]);

/**
 * Splits a Dockerfile into stages. Enough of the syntax for our own file: comments, `\` continuations and
 * `FROM IMAGE [AS NAME]`; no heredocs, no parser directives besides `# syntax`.
 */
export function parseDockerfile(text: string): DockerStage[] {
  const lines = text.replace(/\\\r?\n/g, ' ').split(/\r?\n/);
  const stages: { name: string | undefined; from: string; instructions: DockerInstruction[] }[] = [];
  for (const line of lines) {
    const trimmed = line.trim();
    if (trimmed === '' || trimmed.startsWith('#')) continue;
    const match = /^(\w+)\s+(.*)$/.exec(trimmed);
    if (match === null) throw new Error(`cannot parse Dockerfile line: ${trimmed}`);
    const keyword = match[1]!.toUpperCase();
    if (!KEYWORDS.has(keyword)) throw new Error(`not a Dockerfile instruction: ${trimmed}`);
    const args = match[2]!.replace(/\s+/g, ' ').trim();
    if (keyword === 'FROM') {
      const [from, as, name] = args.split(' ');
      const stageName = as?.toUpperCase() === 'AS' ? name : undefined;
      if (stageName !== undefined && stages.some((stage) => stage.name === stageName)) throw new Error(`stage ${stageName} is defined twice`);
      stages.push({ from: from!, name: stageName, instructions: [] });
      continue;
    }
    if (keyword === 'ARG' && stages.length === 0) continue;
    const stage = stages.at(-1);
    if (stage === undefined) throw new Error(`${keyword} before FROM`);
    // Shell form would run through /bin/sh and lose signals: our ENTRYPOINT and CMD are exec form, once per stage.
    if ((keyword === 'ENTRYPOINT' || keyword === 'CMD') && !args.startsWith('[')) throw new Error(`${keyword} is not in exec form: ${trimmed}`);
    if ((keyword === 'ENTRYPOINT' || keyword === 'CMD') && stage.instructions.some((i) => i.keyword === keyword)) throw new Error(`${keyword} given twice`);
    stage.instructions.push({ keyword, args });
  }
  return stages;
}

export function readDockerfile(path: URL | string): DockerStage[] {
  return parseDockerfile(readFileSync(path, 'utf8'));
}

export function copies(stage: DockerStage): DockerCopy[] {
  return stage.instructions
    .filter((i) => i.keyword === 'COPY')
    .map((i) => {
      const words = i.args.split(' ');
      const flags = words.filter((w) => w.startsWith('--'));
      const paths = words.filter((w) => !w.startsWith('--'));
      const unknown = flags.filter((f) => !f.startsWith('--from='));
      if (unknown.length > 0 || paths.length < 2) throw new Error(`unsupported COPY: ${i.args}`);
      const from = flags.find((f) => f.startsWith('--from='))?.slice('--from='.length);
      return { from, sources: paths.slice(0, -1), dest: paths.at(-1)! };
    });
}

/** The exec-form (JSON array) value of the stage's last ENTRYPOINT or CMD. */
export function execForm(stage: DockerStage, keyword: 'ENTRYPOINT' | 'CMD'): string[] | undefined {
  const instruction = stage.instructions.filter((i) => i.keyword === keyword).at(-1);
  return instruction === undefined ? undefined : (JSON.parse(instruction.args) as string[]);
}

/** The stage's `ENV` values (`ENV A=1 B=2` form only). */
export function environment(stage: DockerStage): Record<string, string> {
  const env: Record<string, string> = {};
  for (const instruction of stage.instructions.filter((i) => i.keyword === 'ENV')) {
    for (const pair of instruction.args.split(' ')) {
      const eq = pair.indexOf('=');
      if (eq <= 0) throw new Error(`unsupported ENV: ${instruction.args}`);
      env[pair.slice(0, eq)] = pair.slice(eq + 1);
    }
  }
  return env;
}

export function workdir(stage: DockerStage): string {
  return stage.instructions.filter((i) => i.keyword === 'WORKDIR').at(-1)?.args ?? '/';
}

export function user(stage: DockerStage): string | undefined {
  return stage.instructions.filter((i) => i.keyword === 'USER').at(-1)?.args;
}
