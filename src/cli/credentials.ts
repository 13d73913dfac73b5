import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";

/*
 * Where the chat commands (src/cli/chats.ts) find their server and token: --url/--token, then
 * PGCHATD_URL/PGCHATD_TOKEN, then what `pgchatd login` stored, then the local server this
 * checkout runs (`npm start`: its address and the admin token it saved in the data directory).
 */

export interface Credentials {
  url: string;
  token: string;
}

/** `$XDG_CONFIG_HOME/pgchatd/credentials.json`, else `~/.config/pgchatd/credentials.json`. */
export function credentialsPath(env: NodeJS.ProcessEnv = process.env): string {
  const base = env.XDG_CONFIG_HOME || path.join(os.homedir(), ".config");
  return path.join(base, "pgchatd", "credentials.json");
}

/** Stores the URL and token readable by this OS user only (directory 0700, file 0600). */
export async function saveCredentials(url: string, token: string, file = credentialsPath()) {
  await fs.mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.tmp`;
  await fs.writeFile(tmp, `${JSON.stringify({ url, token }, null, 2)}\n`, { mode: 0o600 });
  // A file that existed with looser permissions gets this one's on rename.
  await fs.rename(tmp, file);
}

export async function removeCredentials(file = credentialsPath()): Promise<boolean> {
  try {
    await fs.unlink(file);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw err;
  }
}

async function readStored(file: string): Promise<{ url: string; token: string } | undefined> {
  let text: string;
  try {
    text = await fs.readFile(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
  const parsed = JSON.parse(text) as { url?: unknown; token?: unknown };
  if (typeof parsed.url !== "string" || typeof parsed.token !== "string") {
    throw new Error(`${file} is not what pgchatd login writes: run pgchatd login again`);
  }
  return { url: parsed.url, token: parsed.token };
}

/** The local server of this checkout: HOST:PORT and `<PGCHATD_DATA_DIR>/admin-token`. */
async function localServer(env: NodeJS.ProcessEnv) {
  const dataDir = path.resolve(env.PGCHATD_DATA_DIR || ".data");
  const token = await fs
    .readFile(path.join(dataDir, "admin-token"), "utf8")
    .then((t) => t.trim())
    .catch(() => undefined);
  if (!token) return undefined;
  const host = env.HOST && env.HOST !== "0.0.0.0" ? env.HOST : "127.0.0.1";
  return { url: `http://${host}:${env.PORT || 3000}`, token };
}

export async function resolveCredentials(
  flags: { url?: string; token?: string },
  env: NodeJS.ProcessEnv = process.env,
): Promise<Credentials> {
  const stored = await readStored(credentialsPath(env));
  const local = await localServer(env);
  const url = flags.url ?? env.PGCHATD_URL ?? stored?.url ?? local?.url;
  const token = flags.token ?? env.PGCHATD_TOKEN ?? stored?.token ?? local?.token;
  if (!url || !token) {
    throw new Error(
      "no server to talk to: run pgchatd login <url>, set PGCHATD_URL and PGCHATD_TOKEN, or start one here with npm start",
    );
  }
  return { url, token };
}
