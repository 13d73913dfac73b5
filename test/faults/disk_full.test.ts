import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EmbeddedPostgres } from "../../src/db/embedded.ts";
import { migrate } from "../../src/db/migrate.ts";
import { connectClient, type Pool } from "../../src/db/pool.ts";
import { createSecrets } from "../../src/lib/secrets.ts";
import { createModels } from "../../src/models/index.ts";
import { createApp } from "../../src/server/app.ts";
import { gen } from "../fixtures/index.ts";
import { appCaller, captureLogger } from "../setup/app.ts";
import { newPool } from "../setup/db.ts";
import { messagesOf, settled, statusHistory, testRunner, textOf } from "../setup/runner.ts";

/*
 * The database runs out of space where files and messages are stored (docs/errors.md: SQLSTATE
 * 53100, answered 507). Files live in PostgreSQL (chat_files, bytea, mostly in its TOAST table),
 * so "the disk for files is full" is a full tablespace: a cluster of this file's own (the shared
 * test cluster stays untouched, and may be a remote DATABASE_URL) keeps chat_files and
 * chat_messages (each with its TOAST table) in a tablespace on a small tmpfs, the rest (WAL, the
 * catalog, chat_events) on the ordinary disk. Mounting needs root; without it the file is skipped
 * and says why.
 */

const run = promisify(execFile);

/** Small enough to fill with a few uploads, large enough for the tables' first pages. */
const smallSpace = "2m";
const largeSpace = "64m";
/** Incompressible (random), under the 10 MiB limit: a few fill the small space. */
const fileBytes = 512 * 1024;

async function mountTmpfs(dir: string, size: string, remount = false) {
  await run("mount", [
    "-t",
    "tmpfs",
    "-o",
    remount ? `remount,size=${size}` : `size=${size},mode=0755`,
    "tmpfs",
    dir,
  ]);
}

/** Why this machine cannot run the file (not root, mount refused), or undefined. */
async function unavailable(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return "not running as root, so no tmpfs can be mounted";
  const probe = await fs.mkdtemp(path.join(os.tmpdir(), "pgchatd-mount-probe-"));
  try {
    await mountTmpfs(probe, "1m");
    await run("umount", [probe]);
    return undefined;
  } catch (err) {
    return `mount -t tmpfs was refused (${String((err as Error).message).trim()})`;
  } finally {
    await fs.rm(probe, { recursive: true, force: true });
  }
}

const skipReason = await unavailable();
if (skipReason) {
  console.warn(`test/faults/disk_full: SKIPPED, ${skipReason}`);
}

let dir: string;
let space: string;
let mounted = false;
let cluster: EmbeddedPostgres | undefined;
let pool: Pool;
let dbUrl: string;
let app: ReturnType<typeof createApp>;
let call: ReturnType<typeof appCaller>;
let logLines: string[];
let orgId: string;

beforeAll(async () => {
  if (skipReason) return;
  dir = await fs.mkdtemp(path.join(os.tmpdir(), "pgchatd-disk-full-"));
  await fs.chmod(dir, 0o755);
  cluster = await EmbeddedPostgres.start({
    pgDir: path.join(dir, "pg"),
    passwordFile: path.join(dir, "password"),
  });
  space = path.join(dir, "space");
  await fs.mkdir(space);
  await mountTmpfs(space, smallSpace);
  mounted = true;
  // A tablespace's directory belongs to the OS user the server runs as, as its data dir does.
  const owner = await fs.stat(cluster.dir);
  const location = path.join(space, "ts");
  await fs.mkdir(location, { mode: 0o700 });
  await fs.chown(location, owner.uid, owner.gid);

  const admin = await connectClient(cluster.url(), "pgchatd-test-disk-full");
  try {
    await admin.query("CREATE DATABASE pgchatd");
    await admin.query(`CREATE TABLESPACE small LOCATION '${location}'`);
  } finally {
    await admin.end();
  }
  const url = cluster.url("pgchatd");
  dbUrl = url;
  await migrate(url);
  const owned = await connectClient(url, "pgchatd-test-disk-full");
  try {
    // Each table's TOAST table (where large values go) moves with it; its indexes stay.
    await owned.query("ALTER TABLE chat_files SET TABLESPACE small");
    await owned.query("ALTER TABLE chat_messages SET TABLESPACE small");
  } finally {
    await owned.end();
  }
  pool = newPool(url);
  const captured = captureLogger();
  const logger = captured.logger;
  logLines = captured.lines;
  const secrets = createSecrets(randomBytes(32));
  app = createApp({ db: pool, logger, secrets, models: createModels({ secrets }) });
  call = appCaller(app);
  orgId = (await gen.organization(pool)).id;
});

afterAll(async () => {
  if (skipReason) return;
  // Each step even if one before it failed: no mount and no server may outlive the file.
  await pool?.end().catch(() => {});
  await cluster?.stop().catch(() => {});
  if (mounted) await run("umount", [space]).catch(() => {});
  if (dir) await fs.rm(dir, { recursive: true, force: true });
});

interface Member {
  id: string;
  token: string;
}

const upload = (who: Member, bytes: Uint8Array) =>
  call("POST", "/api/experimental/chats/files", {
    token: who.token,
    body: bytes,
    headers: {
      "content-type": "text/plain",
      "content-disposition": 'attachment; filename="big.txt"',
    },
  });

/** Printable and incompressible: text/plain must be UTF-8 without control characters. */
const textFile = (bytes: number) =>
  new TextEncoder().encode(randomBytes(bytes).toString("base64").slice(0, bytes));

const createChat = (who: Member, content: unknown[]) =>
  call("POST", "/api/experimental/chats", { token: who.token, body: { content } });

async function rowCounts(ownerId: string) {
  const { rows } = await pool.query<{
    files: number;
    chats: number;
    messages: number;
    links: number;
    events: number;
  }>(
    `SELECT (SELECT count(*)::int FROM chat_files WHERE owner_id = $1) AS files,
       (SELECT count(*)::int FROM chats WHERE owner_id = $1) AS chats,
       (SELECT count(*)::int FROM chat_messages m JOIN chats c ON c.id = m.chat_id
        WHERE c.owner_id = $1) AS messages,
       (SELECT count(*)::int FROM chat_file_links l JOIN chat_files f ON f.id = l.file_id
        WHERE f.owner_id = $1) AS links,
       (SELECT count(*)::int FROM chat_events WHERE owner_id = $1) AS events`,
    [ownerId],
  );
  return rows[0]!;
}

/** Uploads files until one is refused: the space is full then. */
async function fill(me: Member) {
  const stored: { id: string; bytes: Uint8Array }[] = [];
  let refused: { status: number; json: unknown } | undefined;
  // The space holds a few files; the loop's bound only stops a test whose mount did not limit.
  for (let i = 0; i < 40 && !refused; i++) {
    const bytes = textFile(fileBytes);
    const res = await upload(me, bytes);
    if (res.status === 201) stored.push({ id: res.json.id, bytes });
    else refused = { status: res.status, json: res.json };
  }
  return { stored, refused };
}

/** Shrinks the space to what is used plus `spare` bytes (a tmpfs cannot shrink below its use). */
async function shrinkSpace(spare: number) {
  const st = await fs.statfs(space);
  const used = (st.blocks - st.bfree) * st.bsize;
  await mountTmpfs(space, `${Math.ceil((used + spare) / 4096) * 4}k`, true);
}

const diskFull = {
  message: expect.stringMatching(/storage/i),
};

describe.skipIf(skipReason)("a full tablespace (tmpfs) under chat_files and chat_messages", () => {
  it("answers 507 to uploads and chat creations that do not fit, keeps nothing of them, and takes them once space is freed", async () => {
    const me = await gen.member(pool, { organizationIds: [orgId] });
    // A chat made while there is space, idle (interrupted), so a send is stored, not queued.
    const existing = await createChat(me, [{ type: "text", text: "hello" }]);
    expect(existing.status, existing.text).toBe(201);
    const chatUrl = `/api/experimental/chats/${existing.json.id}`;
    expect((await call("POST", `${chatUrl}/interrupt`, { token: me.token })).status).toBe(200);
    const send = (text: string) =>
      call("POST", `${chatUrl}/messages`, {
        token: me.token,
        body: { content: [{ type: "text", text }] },
      });
    const { stored, refused } = await fill(me);
    expect(stored.length).toBeGreaterThan(0);
    expect(refused).toEqual({ status: 507, json: diskFull });
    // The operator learns of it from the log, with PostgreSQL's SQLSTATE.
    const logged = logLines.filter((l) => l.includes("database out of space"));
    expect(logged.length).toBe(1);
    expect(JSON.parse(logged[0]!)).toMatchObject({ level: 50, err: { code: "53100" } });
    // The refused upload left no row: the owner has exactly the files that were answered 201,
    // each whole.
    expect((await rowCounts(me.id)).files).toBe(stored.length);
    for (const f of stored) {
      const res = await app.request(`/api/experimental/chats/files/${f.id}`, {
        headers: { authorization: `Bearer ${me.token}` },
      });
      expect(res.status).toBe(200);
      expect(Buffer.from(await res.arrayBuffer()).equals(Buffer.from(f.bytes))).toBe(true);
    }

    // A chat whose first message does not fit either: no chat, no message, no link to the file
    // its message names, no change event.
    const before = await rowCounts(me.id);
    const chat = await createChat(me, [
      { type: "text", text: randomBytes(300_000).toString("base64") },
      { type: "file", file_id: stored[0]!.id },
    ]);
    expect({ status: chat.status, json: chat.json }).toEqual({ status: 507, json: diskFull });
    expect(await rowCounts(me.id)).toEqual(before);
    // Nor a message sent to the idle chat: it stays idle, without the message or an event.
    const sent = await send(randomBytes(300_000).toString("base64"));
    expect({ status: sent.status, json: sent.json }).toEqual({ status: 507, json: diskFull });
    expect(await rowCounts(me.id)).toEqual(before);
    const { rows: idle } = await pool.query("SELECT status FROM chats WHERE id = $1", [
      existing.json.id,
    ]);
    expect(idle).toEqual([{ status: "waiting" }]);

    // More space: the same requests succeed, and what they stored reads back.
    await mountTmpfs(space, largeSpace, true);
    const bytes = textFile(fileBytes);
    const again = await upload(me, bytes);
    expect(again.status, again.text).toBe(201);
    const res = await app.request(`/api/experimental/chats/files/${again.json.id}`, {
      headers: { authorization: `Bearer ${me.token}` },
    });
    expect(Buffer.from(await res.arrayBuffer()).equals(Buffer.from(bytes))).toBe(true);
    const text = randomBytes(300_000).toString("base64");
    const created = await createChat(me, [
      { type: "text", text },
      { type: "file", file_id: stored[0]!.id },
    ]);
    expect(created.status, created.text).toBe(201);
    const resent = await send(randomBytes(300_000).toString("base64"));
    expect(resent.status, resent.text).toBe(200);
    expect(resent.json.queued).toBe(false);
    const after = await rowCounts(me.id);
    expect(after).toMatchObject({
      files: stored.length + 1,
      chats: before.chats + 1,
      messages: before.messages + 2,
      links: before.links + 1,
    });
    expect(after.events).toBeGreaterThan(before.events);
  });

  it("ends a turn whose answer does not fit in error with a ChatError instead of leaving it running, stores nothing of it, and answers once space is freed", async () => {
    await mountTmpfs(space, largeSpace, true);
    const me = await gen.member(pool, { organizationIds: [orgId] });
    // The echo of a long message is long too: its TOAST needs pages the full space has not.
    const long = randomBytes(300_000).toString("base64");
    const chat = await createChat(me, [{ type: "text", text: long }]);
    expect(chat.status, chat.text).toBe(201);
    await shrinkSpace(256 * 1024);
    expect((await fill(me)).refused?.status).toBe(507);

    const { runner, logLines: runnerLog } = await testRunner({ dbUrl });
    runner.wake();
    const state = await settled(pool, chat.json.id, "error");
    expect(state.last_error).toMatchObject({ kind: "generic", retryable: true, provider: null });
    expect(runnerLog.some((l) => l.includes("53100"))).toBe(true);
    const msgs = await messagesOf(pool, chat.json.id, { deleted: true });
    expect(msgs.map((m) => m.role)).toEqual(["user"]);
    expect(await statusHistory(pool, chat.json.id)).toEqual(["running", "error"]);
    const { rows: events } = await pool.query(
      "SELECT count(*)::int AS n FROM chat_events WHERE chat_id = $1 AND kind = 'message'",
      [chat.json.id],
    );
    expect(events).toEqual([{ n: 1 }]);

    // Space again: a new message gets its answer.
    await mountTmpfs(space, largeSpace, true);
    const sent = await call("POST", `/api/experimental/chats/${chat.json.id}/messages`, {
      token: me.token,
      body: { content: [{ type: "text", text: "once more" }] },
    });
    expect(sent.status, sent.text).toBe(200);
    runner.wake();
    await settled(pool, chat.json.id, "waiting");
    expect(
      (await messagesOf(pool, chat.json.id)).map((m) => [m.role, textOf(m).slice(0, 20)]),
    ).toEqual([
      ["user", long.slice(0, 20)],
      ["user", "once more"],
      ["assistant", "echo: once more"],
    ]);
  });
});
