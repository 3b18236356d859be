/**
 * The reader and the life of the Node.js process, checked in child processes.
 *
 * Covers: an idle reader does not keep the process alive (like the Python reader's
 * daemon threads); a pending wait() without a timeout does, until the key arrives.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { sha12, tempDir, writeKey } from '../support/keyfiles.js';

const MODULE = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'src', 'index.js');
const KEY = 'c3'.repeat(16);

function runNode(script, env) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (chunk) => (out += chunk));
    child.stderr.on('data', (chunk) => (out += chunk));
    const killer = setTimeout(() => child.kill(), 10_000);
    child.on('error', reject);
    child.on('exit', (code) => {
      clearTimeout(killer);
      resolve({ code, out: out.trim() });
    });
  });
}

test('an idle reader lets the process exit', async () => {
  const started = Date.now();
  const result = await runNode(
    `import { KeyReader } from ${JSON.stringify(MODULE)};
     new KeyReader({ path: process.env.KEY_FILE }).on('change', () => {});
     console.log('started');`,
    { KEY_FILE: writeKey(tempDir(), KEY) },
  );
  assert.deepEqual(result, { code: 0, out: 'started' });
  assert.ok(Date.now() - started < 5000);
});

test('a pending wait() keeps the process alive until the key arrives', async () => {
  const dir = tempDir();
  const running = runNode(
    `import { KeyReader } from ${JSON.stringify(MODULE)};
     const reader = new KeyReader({ path: process.env.KEY_FILE });
     await reader.wait();
     console.log(reader.fingerprint);`,
    { KEY_FILE: path.join(dir, 'api_key') },
  );
  setTimeout(() => writeKey(dir, KEY), 500);
  assert.deepEqual(await running, { code: 0, out: sha12(KEY) });
});
