#!/usr/bin/env node
import { processIo } from './cli/io.js';
import { runCli } from './cli/program.js';

// Only dispatching: the command tree is in cli/program.ts, one file per command group. The exit status is set,
// not forced, so stdout drains and a server keeps running.
process.exitCode = await runCli(process.argv.slice(2), processIo());
