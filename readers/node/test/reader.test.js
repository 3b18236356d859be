/**
 * KeyReader basics, the same contract as the Python reader.
 *
 * Covers: get() from memory, and KeyUnavailableError before any key; the path from the
 * option, else CAPTCHAAI_KEY_FILE, else the default; wait() resolving when the key
 * arrives, rejecting after its timeout and on close(); version and fingerprint, with
 * the version only when the metadata's fingerprint matches the key, and only a Vault
 * number or an AWS id (not a boolean, an empty id, a fraction, 2^53); surrounding
 * whitespace trimmed and an empty file ignored; the key absent from String() and
 * util.inspect(); a throwing 'change' listener not stopping the others; fs.watch as the
 * default mode and polling when the directory does not exist yet.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, test } from 'node:test';
import util from 'node:util';

import { DEFAULT_PATH, ENV_VAR, KeyReader, KeyUnavailableError, fingerprint } from '../src/index.js';
import { sha12, tempDir, until, writeKey } from '../support/keyfiles.js';

const KEY = 'a1'.repeat(16);
const readers = [];
const open = (options) => {
  const reader = new KeyReader(options);
  readers.push(reader);
  return reader;
};
afterEach(() => {
  readers.splice(0).forEach((reader) => reader.close());
});

test('get() answers from memory once a key is there', () => {
  const dir = tempDir();
  const reader = open({ path: writeKey(dir, KEY) });
  fs.rmSync(path.join(dir, 'api_key'));
  assert.equal(reader.get(), KEY);
});

test('get() throws KeyUnavailableError before any key', () => {
  const reader = open({ path: path.join(tempDir(), 'api_key') });
  assert.throws(() => reader.get(), KeyUnavailableError);
});

test('the path comes from the option, then CAPTCHAAI_KEY_FILE, then the default', (t) => {
  const saved = process.env[ENV_VAR];
  t.after(() => (saved === undefined ? delete process.env[ENV_VAR] : (process.env[ENV_VAR] = saved)));
  const dir = tempDir();
  process.env[ENV_VAR] = path.join(dir, 'from_env');
  assert.equal(open({ path: path.join(dir, 'explicit') }).path, path.join(dir, 'explicit'));
  assert.equal(open().path, path.join(dir, 'from_env'));
  delete process.env[ENV_VAR];
  assert.equal(open().path, DEFAULT_PATH);
});

test('wait() resolves when the key arrives', async () => {
  const dir = tempDir();
  const reader = open({ path: path.join(dir, 'api_key') });
  setTimeout(() => writeKey(dir, KEY), 50);
  assert.equal(await reader.wait(3000), KEY);
});

test('wait() rejects with KeyUnavailableError after its timeout', async () => {
  const reader = open({ path: path.join(tempDir(), 'api_key') });
  const started = Date.now();
  await assert.rejects(reader.wait(100), KeyUnavailableError);
  assert.ok(Date.now() - started >= 95);
});

test('close() rejects pending waits', async () => {
  const reader = open({ path: path.join(tempDir(), 'api_key') });
  const waiting = reader.wait();
  reader.close();
  await assert.rejects(waiting, KeyUnavailableError);
});

test('version and fingerprint come from matching metadata', () => {
  const reader = open({ path: writeKey(tempDir(), KEY, { version: 7 }) });
  assert.equal(reader.version, 7);
  assert.equal(reader.fingerprint, sha12(KEY));
  assert.equal(fingerprint(KEY), sha12(KEY));
});

test('an AWS version id is a version; a boolean, an empty id or an inexact number is none', () => {
  const versionOf = (version) => open({ path: writeKey(tempDir(), KEY, { version }) }).version;
  const id = '6f3c0a52-1e7a-4b3e-9d1f-0c2b7e5a9d40';
  assert.equal(versionOf(id), id);
  assert.equal(versionOf(true), null);
  assert.equal(versionOf(''), null);
  assert.equal(versionOf(1.5), null);
  assert.equal(versionOf(2 ** 53), null);
});

test('metadata of another key gives no version', () => {
  const file = writeKey(tempDir(), KEY, { version: 7, metaFingerprint: sha12('another key') });
  const reader = open({ path: file });
  assert.equal(reader.get(), KEY);
  assert.equal(reader.version, null);
  assert.equal(reader.fingerprint, sha12(KEY));
});

test('whitespace around the key is trimmed and an empty file is ignored', async () => {
  const dir = tempDir();
  const reader = open({ path: writeKey(dir, `  ${KEY}\n`) });
  assert.equal(reader.get(), KEY);
  fs.writeFileSync(path.join(dir, 'api_key'), '');
  await until(() => fs.statSync(path.join(dir, 'api_key')).size === 0);
  writeKey(dir, 'b2'.repeat(16), { name: 'other' }); // any event in the directory.
  await new Promise((resolve) => setTimeout(resolve, 100));
  assert.equal(reader.get(), KEY);
});

test('the key never shows in String() or util.inspect()', () => {
  const reader = open({ path: writeKey(tempDir(), KEY, { version: 3 }) });
  for (const shown of [String(reader), util.inspect(reader), util.inspect(reader, { showHidden: true })]) {
    assert.ok(!shown.includes(KEY), shown);
    assert.ok(shown.includes(sha12(KEY)), shown);
  }
});

test('a throwing listener does not stop the others', async (t) => {
  const dir = tempDir();
  const reader = open({ path: writeKey(dir, KEY) });
  const warnings = [];
  const onWarning = (warning) => warnings.push(warning);
  process.on('warning', onWarning);
  t.after(() => process.off('warning', onWarning));
  const heard = [];
  reader.on('change', () => {
    throw new Error(`listener bug with ${KEY}`);
  });
  reader.on('change', (key) => heard.push(key));
  writeKey(dir, 'b2'.repeat(16), { version: 2 });
  await until(() => heard.length === 1, 3000, 'the second listener');
  await until(() => warnings.length === 1, 3000, 'the warning');
  assert.equal(warnings[0].name, 'KeyReaderWarning');
  assert.ok(!warnings[0].message.includes(KEY));
});

test('fs.watch by default, polling when the directory does not exist yet', async () => {
  const dir = tempDir();
  assert.equal(open({ path: path.join(dir, 'api_key') }).mode, 'watch');
  const later = path.join(dir, 'not-yet');
  const reader = open({ path: path.join(later, 'api_key'), pollIntervalMs: 20 });
  assert.equal(reader.mode, 'poll');
  fs.mkdirSync(later);
  writeKey(later, KEY);
  assert.equal(await reader.wait(3000), KEY);
});
