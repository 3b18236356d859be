/**
 * Rotations, with fs.watch and with polling forced, as the key agent and kubelet do them.
 *
 * Covers, in both modes: one 'change' event per rotation (the metadata written after the
 * key does not fire a second one) carrying the new key, with version following; once()
 * listeners firing only once; the kubelet's `..data` symlink swap; many rapid renames
 * never exposing a torn, empty or unknown key to get() or to listeners, and ending on
 * the last key; no events after close().
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { afterEach, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { KeyReader } from '../src/index.js';
import {
  keyNumber,
  kubeletSwap,
  kubeletVolume,
  sleep,
  tempDir,
  until,
  writeKey,
} from '../support/keyfiles.js';

const readers = [];
afterEach(() => {
  readers.splice(0).forEach((reader) => reader.close());
});

const RAPID_ROTATIONS = 400;
const SUPPORT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'support', 'keyfiles.js');

/** Rotate `count` times as fast as possible from a child process: a real concurrent writer. */
function renameInAnotherProcess(dir, count) {
  const script = `import { keyNumber, writeKey } from ${JSON.stringify(SUPPORT)};
    for (let n = 1; n <= ${count}; n++) writeKey(${JSON.stringify(dir)}, keyNumber(n), { version: n });`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: 'inherit' });
  return new Promise((resolve) => child.on('exit', resolve));
}

for (const forcePolling of [false, true]) {
  describe(forcePolling ? 'polling forced' : 'fs.watch', () => {
    const open = (file) => {
      const reader = new KeyReader({ path: file, forcePolling, pollIntervalMs: 10 });
      readers.push(reader);
      assert.equal(reader.mode, forcePolling ? 'poll' : 'watch');
      return reader;
    };

    test('each rotation fires change once, with the new key and its version', async () => {
      const dir = tempDir();
      const reader = open(writeKey(dir, keyNumber(1), { version: 1 }));
      const heard = [];
      let onceCalls = 0;
      reader.on('change', (key) => heard.push([key, reader.version]));
      reader.once('change', () => onceCalls++);
      for (const n of [2, 3, 4]) {
        writeKey(dir, keyNumber(n), { version: n });
        await until(() => reader.version === n, 3000, `version ${n}`);
      }
      await sleep(150); // late duplicate events would land here.
      assert.deepEqual(
        heard.map(([key]) => key),
        [2, 3, 4].map(keyNumber),
      );
      assert.equal(onceCalls, 1);
      assert.equal(reader.get(), keyNumber(4));
    });

    test('the kubelet ..data symlink swap is one rotation', async () => {
      const dir = tempDir();
      const reader = open(kubeletVolume(dir, keyNumber(1)));
      assert.equal(reader.get(), keyNumber(1));
      const heard = [];
      reader.on('change', (key) => heard.push(key));
      kubeletSwap(dir, keyNumber(2));
      await until(() => heard.length === 1, 3000, 'the swap');
      await sleep(150);
      assert.deepEqual(heard, [keyNumber(2)]);
      assert.equal(reader.get(), keyNumber(2));
    });

    test('many rapid renames never expose a torn key', async () => {
      const dir = tempDir();
      const reader = open(writeKey(dir, keyNumber(0)));
      const seen = [];
      reader.on('change', (key) => seen.push(key));
      const writer = renameInAnotherProcess(dir, RAPID_ROTATIONS);
      let writing = true;
      writer.then(() => (writing = false));
      while (writing || reader.get() !== keyNumber(RAPID_ROTATIONS)) {
        seen.push(reader.get());
        await new Promise((resolve) => setImmediate(resolve));
      }
      assert.equal(await writer, 0);
      const written = new Set(Array.from({ length: RAPID_ROTATIONS + 1 }, (_, n) => keyNumber(n)));
      assert.deepEqual(
        seen.filter((key) => !written.has(key)),
        [],
      );
      assert.ok(new Set(seen).size > 2, 'the reader should have seen rotations under way');
    });

    test('no change events after close()', async () => {
      const dir = tempDir();
      const reader = open(writeKey(dir, keyNumber(1)));
      const heard = [];
      reader.on('change', (key) => heard.push(key));
      reader.close();
      writeKey(dir, keyNumber(2));
      await sleep(150);
      assert.deepEqual(heard, []);
      assert.equal(reader.get(), keyNumber(1));
    });
  });
}
