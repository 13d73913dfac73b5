import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import fs from "node:fs/promises";
import path from "node:path";

/*
 * Secrets at rest (provider API keys): AES-256-GCM with the server's secret key.
 *
 * A sealed value is `version (1 byte) | IV (12 bytes) | ciphertext | GCM tag (16 bytes)`. The
 * associated data is the version byte and the owning row's id (the provider id), so a ciphertext
 * copied into another row, or with its header changed, fails to decrypt instead of handing one
 * provider's key to another.
 *
 * The key is PGCHATD_SECRET_KEY (32 bytes as hex or base64) or, without it, the key file
 * `<data dir>/secret-key` (created with mode 0600 the first time a secret is sealed or opened).
 * Lose the key and every stored secret is lost with it. Nothing here logs, and errors never carry
 * a key, a plaintext or a ciphertext.
 */

const version = 1;
const keyBytes = 32;
/** The GCM standard nonce size; random per value, so one key may seal ~2^32 values safely. */
const ivBytes = 12;
const tagBytes = 16;
const headerBytes = 1 + ivBytes;

export const secretKeyFileName = "secret-key";

/** What PGCHATD_SECRET_KEY and the key file must hold (also the config error message). */
export const secretKeyFormat =
  "must be 32 bytes written as 64 hex digits or as base64 (e.g. `openssl rand -base64 32`)";

/** Decryption failed: wrong key, wrong associated data, or a damaged value. */
export class SecretDecryptionError extends Error {
  constructor(reason: string) {
    super(`cannot decrypt secret: ${reason}`);
    this.name = "SecretDecryptionError";
  }
}

export interface Secrets {
  /** Seals `plaintext` for the row `associatedData` (a provider id). */
  encrypt(plaintext: string, associatedData: string): Promise<Buffer>;
  /** Opens a value sealed for the same row with the same key; SecretDecryptionError otherwise. */
  decrypt(sealed: Buffer, associatedData: string): Promise<string>;
}

/** A 32-byte key from 64 hex digits or base64 (standard or URL-safe, padding optional); else null. */
export function parseSecretKey(text: string): Buffer | null {
  const s = text.trim();
  if (/^[0-9a-fA-F]{64}$/.test(s)) return Buffer.from(s, "hex");
  if (!/^[A-Za-z0-9+/_-]{43}=?$/.test(s)) return null;
  const key = Buffer.from(s.replace(/-/g, "+").replace(/_/g, "/"), "base64");
  return key.length === keyBytes ? key : null;
}

function associated(associatedData: string): Buffer {
  return Buffer.concat([Buffer.from([version]), Buffer.from(associatedData, "utf8")]);
}

/**
 * Secrets under `key`, or under the key a loader returns on first use (then kept; a failed load is
 * retried on the next use).
 */
export function createSecrets(key: Buffer | (() => Promise<Buffer>)): Secrets {
  let loading: Promise<Buffer> | undefined;
  const getKey = async (): Promise<Buffer> => {
    if (Buffer.isBuffer(key)) return key;
    loading ??= key().catch((err) => {
      loading = undefined;
      throw err;
    });
    return loading;
  };
  if (Buffer.isBuffer(key) && key.length !== keyBytes) {
    throw new Error(`the secret key must be ${keyBytes} bytes`);
  }

  return {
    async encrypt(plaintext, associatedData) {
      const iv = randomBytes(ivBytes);
      const cipher = createCipheriv("aes-256-gcm", await getKey(), iv, { authTagLength: tagBytes });
      cipher.setAAD(associated(associatedData));
      const body = Buffer.concat([cipher.update(plaintext, "utf8"), cipher.final()]);
      return Buffer.concat([Buffer.from([version]), iv, body, cipher.getAuthTag()]);
    },

    async decrypt(sealed, associatedData) {
      if (sealed.length < headerBytes + tagBytes) throw new SecretDecryptionError("too short");
      if (sealed[0] !== version) throw new SecretDecryptionError("unknown format version");
      const iv = sealed.subarray(1, headerBytes);
      const body = sealed.subarray(headerBytes, sealed.length - tagBytes);
      const tag = sealed.subarray(sealed.length - tagBytes);
      const decipher = createDecipheriv("aes-256-gcm", await getKey(), iv, {
        authTagLength: tagBytes,
      });
      decipher.setAAD(associated(associatedData));
      decipher.setAuthTag(tag);
      try {
        return Buffer.concat([decipher.update(body), decipher.final()]).toString("utf8");
      } catch {
        // Node's message ("Unsupported state or unable to authenticate data") says no more.
        throw new SecretDecryptionError("wrong key, wrong row, or damaged value");
      }
    },
  };
}

/** The key in `file`, or null when there is no such file. Throws when it holds no valid key. */
export async function readSecretKeyFile(file: string): Promise<Buffer | null> {
  let text: string;
  try {
    text = await fs.readFile(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw err;
  }
  const key = parseSecretKey(text);
  if (!key) throw new Error(`${file}: the secret key ${secretKeyFormat}`);
  return key;
}

/**
 * The key in `file`, created (random, base64, mode 0600) when it does not exist. Safe when several
 * processes race to create it: the file appears whole through link(2), which fails if another
 * process got there first, and then everyone reads the winner's key.
 */
export async function readOrCreateSecretKeyFile(file: string): Promise<Buffer> {
  const existing = await readSecretKeyFile(file);
  if (existing) return existing;
  await fs.mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  const temp = `${file}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`;
  await fs.writeFile(temp, `${randomBytes(keyBytes).toString("base64")}\n`, {
    mode: 0o600,
    flag: "wx",
  });
  try {
    await fs.link(temp, file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
  } finally {
    await fs.rm(temp, { force: true });
  }
  const key = await readSecretKeyFile(file);
  if (!key) throw new Error(`${file}: the secret key file vanished while it was created`);
  return key;
}

/**
 * The server's secrets: under `configuredKey` (PGCHATD_SECRET_KEY) when set; else under the key
 * file in `dataDir`. An existing key file is read now, so a damaged one stops the start; a missing
 * one is created when the first secret is sealed or opened.
 */
export async function openSecrets(opts: {
  configuredKey: Buffer | undefined;
  dataDir: string;
}): Promise<Secrets> {
  if (opts.configuredKey) return createSecrets(opts.configuredKey);
  const file = path.join(opts.dataDir, secretKeyFileName);
  const existing = await readSecretKeyFile(file);
  return createSecrets(existing ?? (() => readOrCreateSecretKeyFile(file)));
}
