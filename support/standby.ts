import { randomBytes } from "node:crypto";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { EmbeddedPostgres } from "../src/db/embedded.ts";
import { connectClient } from "../src/db/pool.ts";

/*
 * An embedded primary with a streaming-replication standby, for the read-replica test and
 * benchmark (docs/operations.md "Scaling"). The embedded binaries are initdb, pg_ctl and postgres
 * only, so the base backup is taken with the server's low-level API (pg_backup_start, a copy of
 * the data directory, pg_backup_stop: "Making a Base Backup Using the Low Level API" in the
 * PostgreSQL manual) rather than pg_basebackup; the standby streams from a physical replication
 * slot, which keeps the WAL it still needs.
 */

export interface ReplicatedCluster {
  primary: EmbeddedPostgres;
  standby: EmbeddedPostgres;
  /** Stops both and removes their directories. */
  stop(): Promise<void>;
}

/**
 * Directories a standby rebuilds: copied empty (a data directory must have them). pg_wal's
 * segments come from the primary through the replication slot.
 */
const emptyDirs = [
  "pg_wal/archive_status",
  "pg_replslot",
  "pg_stat_tmp",
  "pg_dynshmem",
  "pg_notify",
  "pg_serial",
  "pg_snapshots",
  "pg_subtrans",
];
/** Left out of the copy: the running server's own files, and the directories above. */
const notCopied = new Set([
  "postmaster.pid",
  "postmaster.opts",
  ...emptyDirs.map((d) => d.split("/")[0]!),
]);

/** Every file and directory under `dir` (and `dir`) owned by uid:gid, as the primary's are. */
async function chownTree(dir: string, uid: number, gid: number): Promise<void> {
  await fs.lchown(dir, uid, gid);
  for (const entry of await fs.readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) await chownTree(p, uid, gid);
    else await fs.lchown(p, uid, gid);
  }
}

/** A new embedded primary in a temporary directory, and a hot standby streaming from it. */
export async function startReplicatedCluster(): Promise<ReplicatedCluster> {
  const root = await fs.mkdtemp(path.join(os.tmpdir(), "pgchatd-replicas-"));
  // The postgres OS user (when running as root) must be able to enter it.
  await fs.chmod(root, 0o755);
  const passwordFile = path.join(root, "pw");
  const primary = await EmbeddedPostgres.start({ pgDir: path.join(root, "primary"), passwordFile });
  let standby: EmbeddedPostgres | undefined;
  try {
    const slot = `pgchatd_standby_${randomBytes(4).toString("hex")}`;
    const standbyDir = path.join(root, "standby");
    const client = await connectClient(primary.url(), "pgchatd-standby-setup");
    try {
      await client.query("SELECT pg_create_physical_replication_slot($1, true)", [slot]);
      await client.query("SELECT pg_backup_start('pgchatd standby', true)");
      await fs.cp(primary.dir, standbyDir, {
        recursive: true,
        filter: (src) => !notCopied.has(path.relative(primary.dir, src)),
      });
      const { rows } = await client.query<{ labelfile: string; spcmapfile: string | null }>(
        "SELECT labelfile, spcmapfile FROM pg_backup_stop(false)",
      );
      await fs.writeFile(path.join(standbyDir, "backup_label"), rows[0]!.labelfile);
      if (rows[0]!.spcmapfile) {
        await fs.writeFile(path.join(standbyDir, "tablespace_map"), rows[0]!.spcmapfile);
      }
    } finally {
      await client.end();
    }
    for (const d of emptyDirs) await fs.mkdir(path.join(standbyDir, d), { recursive: true });
    await fs.writeFile(path.join(standbyDir, "standby.signal"), "");
    const password = (await fs.readFile(passwordFile, "utf8")).trim();
    const conninfo = `host=127.0.0.1 port=${primary.port} user=postgres password=${password} application_name=pgchatd_standby`;
    await fs.appendFile(
      path.join(standbyDir, "postgresql.auto.conf"),
      `primary_conninfo = '${conninfo}'\nprimary_slot_name = '${slot}'\nhot_standby = on\n`,
    );
    const owner = await fs.stat(primary.dir);
    await chownTree(standbyDir, owner.uid, owner.gid);
    await fs.chmod(standbyDir, 0o700);
    standby = await EmbeddedPostgres.start({ pgDir: standbyDir, passwordFile });
  } catch (err) {
    await standby?.stop();
    await primary.stop();
    await fs.rm(root, { recursive: true, force: true });
    throw err;
  }
  const started = standby;
  return {
    primary,
    standby: started,
    async stop() {
      await started.stop();
      await primary.stop();
      await fs.rm(root, { recursive: true, force: true });
    },
  };
}

/**
 * Until the standby has replayed everything the primary has written now (a database created on
 * the primary, a migration).
 */
export async function standbyCaughtUp(cluster: ReplicatedCluster, timeoutMs = 30_000) {
  const p = await connectClient(cluster.primary.url(), "pgchatd-standby-setup");
  const s = await connectClient(cluster.standby.url(), "pgchatd-standby-setup");
  try {
    const { rows } = await p.query<{ lsn: string }>("SELECT pg_current_wal_lsn()::text AS lsn");
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = await s.query<{ ok: boolean }>(
        "SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn AS ok",
        [rows[0]!.lsn],
      );
      if (r.rows[0]!.ok) return;
      if (Date.now() > deadline) throw new Error("the standby did not catch up");
      await new Promise((res) => setTimeout(res, 20));
    }
  } finally {
    await p.end();
    await s.end();
  }
}
