import { randomBytes, randomUUID } from "node:crypto";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config.ts";
import {
  createSecrets,
  openSecrets,
  parseSecretKey,
  readOrCreateSecretKeyFile,
  SecretDecryptionError,
  secretKeyFileName,
} from "../../src/lib/secrets.ts";

/*
 * src/lib/secrets.ts: AES-256-GCM sealing of provider API keys, bound to the provider id, under
 * PGCHATD_SECRET_KEY or a generated key file (docs/operations.md "The runner").
 */

const tempDirs: string[] = [];
async function tempDir() {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "pgchatd-secrets-"));
  tempDirs.push(dir);
  return dir;
}
afterAll(async () => {
  for (const dir of tempDirs) await fs.rm(dir, { recursive: true, force: true });
});

const plaintext = "sk-live-0123456789abcdef";

describe("sealing", () => {
  it("opens what it sealed, for the same provider id, and seals the same text differently each time", async () => {
    const secrets = createSecrets(randomBytes(32));
    const id = randomUUID();
    const a = await secrets.encrypt(plaintext, id);
    const b = await secrets.encrypt(plaintext, id);
    expect(a.equals(b)).toBe(false);
    expect(a.includes(Buffer.from(plaintext))).toBe(false);
    expect(await secrets.decrypt(a, id)).toBe(plaintext);
    expect(await secrets.decrypt(b, id)).toBe(plaintext);
    // Non-ASCII and empty text survive too.
    expect(await secrets.decrypt(await secrets.encrypt("ключ 🔑", id), id)).toBe("ключ 🔑");
    expect(await secrets.decrypt(await secrets.encrypt("", id), id)).toBe("");
  });

  it("refuses to open a value under another key", async () => {
    const id = randomUUID();
    const sealed = await createSecrets(randomBytes(32)).encrypt(plaintext, id);
    await expect(createSecrets(randomBytes(32)).decrypt(sealed, id)).rejects.toThrow(
      SecretDecryptionError,
    );
  });

  it("refuses to open a value sealed for another provider id (associated data)", async () => {
    const secrets = createSecrets(randomBytes(32));
    const sealed = await secrets.encrypt(plaintext, randomUUID());
    await expect(secrets.decrypt(sealed, randomUUID())).rejects.toThrow(SecretDecryptionError);
  });

  it("refuses a tampered value: any flipped byte of version, IV, ciphertext or tag, or a truncation", async () => {
    const secrets = createSecrets(randomBytes(32));
    const id = randomUUID();
    const sealed = await secrets.encrypt(plaintext, id);
    for (let i = 0; i < sealed.length; i++) {
      const tampered = Buffer.from(sealed);
      tampered[i] = tampered[i]! ^ 0x01;
      await expect(secrets.decrypt(tampered, id), `byte ${i}`).rejects.toThrow(
        SecretDecryptionError,
      );
    }
    for (const length of [0, 5, sealed.length - 1]) {
      await expect(secrets.decrypt(sealed.subarray(0, length), id)).rejects.toThrow(
        SecretDecryptionError,
      );
    }
  });

  it("never puts the key or the plaintext in a decryption error", async () => {
    const key = randomBytes(32);
    const id = randomUUID();
    const sealed = await createSecrets(key).encrypt(plaintext, id);
    const err = await createSecrets(randomBytes(32))
      .decrypt(sealed, id)
      .catch((e: Error) => e);
    const text = `${(err as Error).message} ${(err as Error).stack}`;
    for (const secret of [plaintext, key.toString("hex"), key.toString("base64")]) {
      expect(text).not.toContain(secret);
    }
  });
});

describe("the key", () => {
  it("parses 32 bytes as hex or base64 (standard or URL-safe), nothing else", () => {
    const key = randomBytes(32);
    for (const text of [
      key.toString("hex"),
      key.toString("hex").toUpperCase(),
      key.toString("base64"),
      key.toString("base64url"),
      ` ${key.toString("base64")}\n`,
    ]) {
      expect(parseSecretKey(text)?.equals(key), text).toBe(true);
    }
    for (const text of [
      "",
      "secret",
      randomBytes(16).toString("hex"),
      randomBytes(31).toString("base64"),
      randomBytes(33).toString("base64"),
      `${key.toString("hex")}00`,
    ]) {
      expect(parseSecretKey(text), text).toBeNull();
    }
  });

  it("reads PGCHATD_SECRET_KEY into the config, and rejects a bad one with a clear error that does not echo it", () => {
    const key = randomBytes(32);
    expect(loadConfig({ PGCHATD_SECRET_KEY: key.toString("base64") }).secretKey?.equals(key)).toBe(
      true,
    );
    expect(loadConfig({}).secretKey).toBeUndefined();
    const bad = "not-a-real-key-but-a-secret-value";
    let message = "";
    try {
      loadConfig({ PGCHATD_SECRET_KEY: bad });
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toMatch(/PGCHATD_SECRET_KEY: must be 32 bytes/);
    expect(message).not.toContain(bad);
  });

  it("creates the key file with mode 0600 on first need and reuses it afterwards", async () => {
    const dir = path.join(await tempDir(), "data");
    const file = path.join(dir, secretKeyFileName);
    const secrets = await openSecrets({ configuredKey: undefined, dataDir: dir });
    // Opening does not create it; the first seal does.
    await expect(fs.stat(file)).rejects.toMatchObject({ code: "ENOENT" });
    const id = randomUUID();
    const sealed = await secrets.encrypt(plaintext, id);
    const stat = await fs.stat(file);
    expect(stat.mode & 0o777).toBe(0o600);
    const key = parseSecretKey(await fs.readFile(file, "utf8"));
    expect(key).not.toBeNull();

    // A restart reads the same key, so what was sealed before still opens.
    const again = await openSecrets({ configuredKey: undefined, dataDir: dir });
    expect(await again.decrypt(sealed, id)).toBe(plaintext);
    expect(await createSecrets(key!).decrypt(sealed, id)).toBe(plaintext);
    expect((await fs.readdir(dir)).sort()).toEqual([secretKeyFileName]);
  });

  it("gives every racer the same key when several processes create the key file at once", async () => {
    const file = path.join(await tempDir(), secretKeyFileName);
    const keys = await Promise.all(
      Array.from({ length: 8 }, () => readOrCreateSecretKeyFile(file)),
    );
    for (const k of keys) expect(k.equals(keys[0]!)).toBe(true);
    expect(await fs.readdir(path.dirname(file))).toEqual([secretKeyFileName]);
  });

  it("uses PGCHATD_SECRET_KEY instead of the key file when it is set", async () => {
    const dir = await tempDir();
    const key = randomBytes(32);
    const secrets = await openSecrets({ configuredKey: key, dataDir: dir });
    const id = randomUUID();
    const sealed = await secrets.encrypt(plaintext, id);
    expect(await createSecrets(key).decrypt(sealed, id)).toBe(plaintext);
    expect(await fs.readdir(dir)).toEqual([]);
  });

  it("stops at start on a damaged key file, naming the file but not its content", async () => {
    const dir = await tempDir();
    const content = "garbage-that-might-be-secret";
    await fs.writeFile(path.join(dir, secretKeyFileName), content, { mode: 0o600 });
    const err = await openSecrets({ configuredKey: undefined, dataDir: dir }).catch(
      (e: Error) => e,
    );
    expect((err as Error).message).toMatch(/secret-key: the secret key must be 32 bytes/);
    expect((err as Error).message).not.toContain(content);
  });
});
