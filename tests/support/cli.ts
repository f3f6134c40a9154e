import { spawn } from 'node:child_process';

const BIN = new URL('../../bin/ledger.js', import.meta.url).pathname;

/** Runs the `ledger` executable as an operator would, with only the environment given. */
export function runLedger(args: string[], env: Record<string, string>, nodeArgs: string[] = [], options: { ownProcessGroup?: boolean } = {}) {
  const child = spawn(process.execPath, [...nodeArgs, BIN, ...args], {
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    // Its own group, as a terminal's foreground job: a signal to the group reaches it and its children.
    detached: options.ownProcessGroup === true,
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  return { child, output: () => ({ stdout, stderr }) };
}
