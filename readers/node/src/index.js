/**
 * Read the current CaptchaAI key in a Node.js application, and hear of rotations.
 *
 * The Node.js twin of the Python `captchakeys.KeyReader`, with the same semantics:
 *
 *     import { KeyReader } from '@captcha-key-agent/reader';
 *     const reader = new KeyReader();          // $CAPTCHAAI_KEY_FILE or /var/run/captchaai/api_key
 *     await reader.wait(30_000);               // until the key agent has written a key
 *     reader.on('change', () => log.info('CaptchaAI key rotated'));
 *     const params = { key: reader.get() };    // from memory: no file I/O per request
 *
 * Why a watcher and not "read the file every time": requests are frequent and a cached
 * key without a watcher goes stale on rotation. The reader keeps the key in memory and
 * reloads it when the directory changes, which covers the key agent's atomic rename and
 * the kubelet's `..data` symlink swap alike. Where fs.watch cannot be used (inotify
 * limits, a directory that does not exist yet, exotic filesystems) it polls stat(),
 * which is cheap and never sees a torn key, because the file is only ever replaced whole.
 *
 * The files are read as docs/keyfile-format.md specifies, the same rules as the Python
 * reader's (captchakeys.keyfile); a cross-language test runs both on the same files.
 *
 * The key itself is never logged, printed by util.inspect, or put in an error message.
 */

import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';

export const ENV_VAR = 'CAPTCHAAI_KEY_FILE';
export const DEFAULT_PATH = '/var/run/captchaai/api_key';
const METADATA_SUFFIX = '.meta.json';
const KUBELET_DATA_LINK = '..data';
// What is stripped around the key (a Secret's value often ends in a newline), and no more.
const BLANKS = /^[ \t\r\n]+|[ \t\r\n]+$/g;
// Strict UTF-8 that keeps a byte-order mark: bytes that are not text are no key.
const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** No key has been delivered to the key file yet (or the reader was closed first). */
export class KeyUnavailableError extends Error {
  constructor(message) {
    super(message);
    this.name = 'KeyUnavailableError';
  }
}

/** Twelve hex characters of SHA-256: identifies a key in logs without revealing it. */
export function fingerprint(key) {
  return createHash('sha256').update(key, 'utf8').digest('hex').slice(0, 12);
}

/**
 * The current key from the key file, kept in memory and reloaded on change.
 *
 * Emits `'change'` with the new key, once per rotation. A listener that throws is
 * reported with process.emitWarning (without the key) and does not stop the others,
 * because a broken listener must not stop the application from hearing of rotations.
 */
export class KeyReader extends EventEmitter {
  #path;
  #pollIntervalMs;
  #key = null;
  #version = null;
  #watcher = null;
  #poller = null;
  #waiters = new Set();
  #closed = false;

  /**
   * @param {{path?: string, pollIntervalMs?: number, forcePolling?: boolean}} [options]
   *   `forcePolling` skips fs.watch, for filesystems whose change events are unreliable.
   */
  constructor({ path: keyPath, pollIntervalMs = 1000, forcePolling = false } = {}) {
    super();
    this.#path = path.resolve(keyPath || process.env[ENV_VAR] || DEFAULT_PATH);
    this.#pollIntervalMs = pollIntervalMs;
    this.#reload();
    if (forcePolling || !this.#watch()) {
      this.#poll();
    }
  }

  /** The key file this reader follows. */
  get path() {
    return this.#path;
  }

  /** `'watch'` (fs.watch) or `'poll'` (stat polling): how rotations are noticed. */
  get mode() {
    return this.#watcher ? 'watch' : 'poll';
  }

  /** The key's version (a Vault number, an AWS version id) when its metadata agrees. */
  get version() {
    return this.#version;
  }

  /** A short SHA-256 fingerprint of the key in memory: safe to log and compare. */
  get fingerprint() {
    return this.#key === null ? null : fingerprint(this.#key);
  }

  /** The current key, from memory; throws KeyUnavailableError if none has arrived yet. */
  get() {
    if (this.#key === null) {
      throw this.#unavailable();
    }
    return this.#key;
  }

  /**
   * Resolve with the key as soon as there is one; reject with KeyUnavailableError after
   * `timeoutMs` (wait forever if omitted) or when the reader is closed first. While a
   * wait is pending the reader keeps the process alive, so `await reader.wait()` at
   * start-up does not let Node exit before the key agent has written the key.
   */
  wait(timeoutMs) {
    if (this.#key !== null) {
      return Promise.resolve(this.#key);
    }
    if (this.#closed) {
      return Promise.reject(new KeyUnavailableError('the key reader is closed'));
    }
    return new Promise((resolve, reject) => {
      const waiter = { resolve, reject, timer: null };
      if (timeoutMs !== undefined) {
        waiter.timer = setTimeout(() => this.#settle(waiter, this.#unavailable()), timeoutMs);
      }
      this.#waiters.add(waiter);
      this.#holdProcessOpen();
    });
  }

  /** Stop watching and reject pending waits. The last key stays readable through get(). */
  close() {
    this.#closed = true;
    this.#watcher?.close();
    this.#watcher = null;
    clearInterval(this.#poller);
    this.#poller = null;
    for (const waiter of this.#waiters) {
      this.#settle(waiter, new KeyUnavailableError('the key reader was closed before a key arrived'));
    }
  }

  toString() {
    return `KeyReader(path=${this.#path}, version=${this.#version}, fingerprint=${this.fingerprint})`;
  }

  [Symbol.for('nodejs.util.inspect.custom')]() {
    return this.toString();
  }

  #unavailable() {
    return new KeyUnavailableError(
      `no CaptchaAI key at ${this.#path} yet: is the key agent running and ready in this ` +
        `pod? (set ${ENV_VAR} if the key file lives elsewhere)`,
    );
  }

  #reload() {
    const key = readText(this.#path)?.replace(BLANKS, '');
    if (!key) {
      return; // not there yet, mid-swap, or not a key: the key in memory stays.
    }
    const changed = key !== this.#key;
    this.#key = key;
    this.#version = readVersion(this.#path + METADATA_SUFFIX, key);
    if (changed) {
      for (const waiter of this.#waiters) {
        this.#settle(waiter, null);
      }
      this.#emitChange(key);
    }
  }

  #settle(waiter, error) {
    clearTimeout(waiter.timer);
    this.#waiters.delete(waiter);
    this.#holdProcessOpen();
    if (error) {
      waiter.reject(error);
    } else {
      waiter.resolve(this.#key);
    }
  }

  #emitChange(key) {
    // rawListeners keeps once() semantics; calling them one by one isolates failures.
    for (const listener of this.rawListeners('change')) {
      try {
        listener.call(this, key);
      } catch (error) {
        process.emitWarning(
          `a 'change' listener of the CaptchaAI key reader threw ${error?.name ?? typeof error}`,
          'KeyReaderWarning',
        );
      }
    }
  }

  /** Watch the directory, not the file: a rename replaces the file's inode. */
  #watch() {
    const names = new Set([
      path.basename(this.#path),
      path.basename(this.#path) + METADATA_SUFFIX,
      KUBELET_DATA_LINK,
    ]);
    try {
      this.#watcher = fs.watch(path.dirname(this.#path), (_event, name) => {
        if (name === null || names.has(String(name))) {
          this.#reload();
        }
      });
    } catch {
      return false;
    }
    this.#watcher.on('error', () => {
      this.#watcher?.close();
      this.#watcher = null;
      if (!this.#closed) {
        this.#poll();
      }
    });
    this.#holdProcessOpen();
    return true;
  }

  #poll() {
    let last = null;
    this.#poller = setInterval(() => {
      const current = statSignature(this.#path) + '|' + statSignature(this.#path + METADATA_SUFFIX);
      if (current !== last) {
        last = current;
        this.#reload();
      }
    }, this.#pollIntervalMs);
    this.#holdProcessOpen();
  }

  /** Like the Python reader's daemon threads: only a pending wait() keeps Node running. */
  #holdProcessOpen() {
    const method = this.#waiters.size > 0 ? 'ref' : 'unref';
    this.#watcher?.[method]();
    this.#poller?.[method]();
  }
}

/** The file's content as UTF-8 text; null when it cannot be read or is not UTF-8. */
function readText(file) {
  try {
    return UTF8.decode(fs.readFileSync(file));
  } catch {
    return null;
  }
}

/**
 * The version the metadata gives `key`: a Vault version number or an AWS version id, and
 * only when the metadata's fingerprint is the key's (else it still describes the
 * previous key). Absent, mid-write or not ours: no version is better than a wrong one.
 */
function readVersion(metaPath, key) {
  let raw;
  try {
    raw = JSON.parse(readText(metaPath));
  } catch {
    return null;
  }
  if (raw === null || typeof raw !== 'object' || raw.fingerprint !== fingerprint(key)) {
    return null;
  }
  const { version } = raw;
  return Number.isSafeInteger(version) || (typeof version === 'string' && version !== '')
    ? version
    : null;
}

function statSignature(file) {
  try {
    const st = fs.statSync(file, { bigint: true });
    return `${st.ino}:${st.mtimeNs}:${st.size}`;
  } catch {
    return '-'; // absent, or its directory is: the next tick looks again.
  }
}
