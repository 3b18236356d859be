// Test support: write key files the way the key agent and the kubelet do.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const made = new Set();
process.once('exit', () => {
  for (const dir of made) fs.rmSync(dir, { recursive: true, force: true });
});

export function tempDir() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'captchaai-reader-'));
  made.add(dir);
  return dir;
}

export function sha12(key) {
  return createHash('sha256').update(key).digest('hex').slice(0, 12);
}

let sequence = 0;

function replaceAtomically(file, content) {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.${++sequence}.tmp`);
  fs.writeFileSync(tmp, content, { mode: 0o440 });
  fs.renameSync(tmp, file);
}

/** The key agent's format (docs/keyfile-format.md): key file, then `<name>.meta.json`. */
export function writeKey(dir, key, { version = 1, name = 'api_key', metaFingerprint } = {}) {
  const file = path.join(dir, name);
  replaceAtomically(file, key);
  const meta = {
    fetched_at: new Date().toISOString(),
    fingerprint: metaFingerprint ?? sha12(key),
    source: 'test',
    version,
  };
  replaceAtomically(`${file}.meta.json`, JSON.stringify(meta));
  return file;
}

/** A Secret/projected volume: `api_key -> ..data/api_key`, `..data -> ..<timestamp>`. */
export function kubeletVolume(dir, key) {
  fs.symlinkSync('..data/api_key', path.join(dir, 'api_key'));
  kubeletSwap(dir, key);
  return path.join(dir, 'api_key');
}

/** The kubelet's update: a new timestamped directory, then one rename of `..data`. */
export function kubeletSwap(dir, key) {
  const stamp = `..${Date.now()}_${++sequence}`;
  fs.mkdirSync(path.join(dir, stamp));
  fs.writeFileSync(path.join(dir, stamp, 'api_key'), key);
  fs.symlinkSync(stamp, path.join(dir, '..data_tmp'));
  const previous = fs.existsSync(path.join(dir, '..data')) && fs.readlinkSync(path.join(dir, '..data'));
  fs.renameSync(path.join(dir, '..data_tmp'), path.join(dir, '..data'));
  if (previous) {
    fs.rmSync(path.join(dir, previous), { recursive: true });
  }
}

/** Distinct keys of varying length whose both ends are marked: a torn read cannot pass. */
export const keyNumber = (n) => `key-${n}-` + 'x'.repeat(1 + ((n * 7) % 40)) + `-end-${n}`;

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Resolve once `condition()` holds; fail the test after `timeoutMs`. */
export async function until(condition, timeoutMs = 3000, what = 'condition') {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}`);
    }
    await sleep(5);
  }
}
