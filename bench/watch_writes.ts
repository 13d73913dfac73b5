import os from "node:os";
import type pg from "pg";
import { connectClient } from "../src/db/pool.ts";
import { insertAPIKey } from "../src/generated/api_keys.ts";
import { generateToken } from "../src/lib/tokens.ts";
import { defaultModelConfigId } from "../support/seed_chats.ts";
import { autocannon, type HttpRun, int, mark, ms, table } from "./measure.ts";
import {
  type BenchDatabase,
  cpuWindow,
  pct,
  quietCheck,
  quietest,
  type ServerProcess,
  sleep,
  spawnServer,
  warmupSeconds,
} from "./watch_servers.ts";

/* Part 2 of `npm run bench -- watch` (bench/watch.ts): write throughput by NOTIFY mode. */

/** Part 2 shape. */
const sendChats = 40_000;
const sendConnections = 16;
const sendSeconds = 5;
const extraServers = 9;
/** Runs per mode × listeners, interleaved (off, trigger, batched, off, ...); the median is shown. */
const sendRepeats = 3;
const idleListeners = 100;

const targets = { p99At10kMs: 100, p99At100Ms: 5, batchedVsOff: 0.8 };

// ---------------------------------------------------------------------------------------------
// Part 2: write throughput by NOTIFY mode

export interface Sender {
  token: string;
  ownerId: string;
  paths: string[];
}

/** One more user with an API key and `sendChats` idle chats to send first messages to. */
export async function seedSender(admin: pg.Client): Promise<Sender> {
  const modelId = await defaultModelConfigId(admin);
  const user = await admin.query<{ id: string }>(
    "INSERT INTO users (username, name) VALUES ('watch-bench-sender', 'Sender') RETURNING id",
  );
  const ownerId = user.rows[0]!.id;
  const org = await admin.query<{ id: string }>(
    "INSERT INTO organizations (name) VALUES ('watch-bench') RETURNING id",
  );
  await admin.query("INSERT INTO organization_members (organization_id, user_id) VALUES ($1, $2)", [
    org.rows[0]!.id,
    ownerId,
  ]);
  const chats = await admin.query<{ id: string }>(
    `INSERT INTO chats (owner_id, organization_id, last_model_config_id, title, status)
     SELECT $1, $2, $3, 'send ' || g, 'completed' FROM generate_series(1, ${sendChats}) g
     RETURNING id`,
    [ownerId, org.rows[0]!.id, modelId],
  );
  const tok = generateToken();
  await insertAPIKey(admin, {
    id: tok.id,
    user_id: ownerId,
    hashed_secret: tok.hashedSecret,
    lifetime_seconds: 86_400,
  });
  return {
    token: tok.token,
    ownerId,
    paths: chats.rows.map((c) => `/api/experimental/chats/${c.id}/messages`),
  };
}

/** Every sender chat idle with an empty queue again (no events: the session's mode is off). */
export async function resetChats(admin: pg.Client, ownerId: string) {
  await admin.query(
    `DELETE FROM chat_queued_messages q USING chats c WHERE q.chat_id = c.id AND c.owner_id = $1`,
    [ownerId],
  );
  await admin.query(
    "UPDATE chats SET status = 'completed' WHERE owner_id = $1 AND status <> 'completed'",
    [ownerId],
  );
  await admin.query("VACUUM (ANALYZE) chats, chat_messages, chat_queued_messages, chat_events");
}

type Mode = "off" | "trigger" | "batched";

interface SendRun {
  http: HttpRun;
  eventsPerRequest: number;
  /** Database transactions per request, tailer reads of every listening server included. */
  xactsPerRequest: number;
  cpu: ReturnType<ReturnType<typeof cpuWindow>["end"]>;
}

async function sendRun(
  db: BenchDatabase,
  admin: pg.Client,
  sender: Sender,
  mode: Mode,
  extraPids: number[],
) {
  const server = await spawnServer(db.url, mode);
  try {
    const url = `${server.url}/api/experimental/chats`;
    const load = {
      method: "POST" as const,
      body: JSON.stringify({ content: [{ type: "text", text: "hello from the watch bench" }] }),
      paths: sender.paths,
    };
    await autocannon(url, sender.token, sendConnections, warmupSeconds, load);
    await resetChats(admin, sender.ownerId);
    // Transactions of the whole database (requests, tailer reads of every server, notifier):
    // backends report them within about a second of going idle, hence the pauses.
    const counters = async () => {
      await sleep(1_500);
      const r = await admin.query<{ events: string; xacts: string }>(
        `SELECT (SELECT count(*) FROM chat_events) AS events,
           (SELECT xact_commit + xact_rollback FROM pg_stat_database
            WHERE datname = current_database()) AS xacts`,
      );
      return { events: Number(r.rows[0]!.events), xacts: Number(r.rows[0]!.xacts) };
    };
    const before = await counters();
    const window = cpuWindow(server.pid, db.postmasterPid, extraPids);
    const http = await autocannon(url, sender.token, sendConnections, sendSeconds, load);
    const cpu = window.end();
    const after = await counters();
    await resetChats(admin, sender.ownerId);
    if (server.logged.length) {
      console.log(
        `WARNING: the ${mode} server logged ${server.logged.length} lines; last:\n  ` +
          server.logged.slice(-3).join("\n  "),
      );
    }
    const requests = http.rps * sendSeconds;
    return {
      http,
      eventsPerRequest: (after.events - before.events) / requests,
      xactsPerRequest: (after.xacts - before.xacts) / requests,
      cpu,
    } satisfies SendRun;
  } finally {
    await server.stop();
  }
}

export async function writeThroughput(db: BenchDatabase) {
  console.log("\n### Part 2: write throughput by NOTIFY mode");
  const admin = await connectClient(db.url, "bench-watch-admin");
  await admin.query("SET pgchatd.events = 'off'");
  const sender = await seedSender(admin);
  await admin.query("VACUUM (ANALYZE) chats, users, organization_members");
  const counts = await admin.query<{ chats: string; messages: string; events: string }>(
    `SELECT (SELECT count(*) FROM chats) AS chats, (SELECT count(*) FROM chat_messages) AS messages,
       (SELECT count(*) FROM chat_events) AS events`,
  );
  const c = counts.rows[0]!;
  console.log(
    `dataset: ${int(sendChats)} idle chats of one sender (each request takes the next; reset ` +
      `after each run); database holds ${int(Number(c.chats))} chats, ` +
      `${int(Number(c.messages))} messages, ${int(Number(c.events))} change events`,
  );
  console.log(
    `load: POST /api/experimental/chats/{chat}/messages, autocannon ${sendConnections} ` +
      `connections, ${warmupSeconds} s warm-up + ${sendSeconds} s per run; server pool 10 (default)`,
  );
  await quietCheck("part 2");

  const modes: Mode[] = ["off", "trigger", "batched"];
  const setups = [
    { label: "1 (the loaded server)", extra: 0, idle: 0 },
    { label: `${1 + extraServers} (+ ${extraServers} servers)`, extra: extraServers, idle: 0 },
    { label: `1 + ${idleListeners} idle LISTEN`, extra: 0, idle: idleListeners },
  ];
  const runs = new Map<string, (SendRun & { attempts: number })[]>();
  for (const s of setups) {
    const extras: ServerProcess[] = [];
    const idle: pg.Client[] = [];
    try {
      // The extra servers only write nothing and LISTEN; their mode does not matter.
      for (let i = 0; i < s.extra; i++) extras.push(await spawnServer(db.url, "trigger"));
      for (let i = 0; i < s.idle; i++) {
        const cl = await connectClient(db.url, "bench-watch-idle-listener");
        await cl.query("LISTEN bench_watch_idle");
        idle.push(cl);
      }
      const listening = await admin.query<{ n: string }>(
        "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND " +
          "(application_name = 'pgchatd-listen' OR application_name = 'bench-watch-idle-listener')",
      );
      process.stderr.write(
        `part 2: ${s.label}; LISTEN connections besides the loaded server's: ${listening.rows[0]!.n}\n`,
      );
      for (let rep = 1; rep <= sendRepeats; rep++) {
        for (const m of modes) {
          process.stderr.write(`part 2: ${s.label}, ${m}, run ${rep} of ${sendRepeats} ...\n`);
          const pids = extras.map((e) => e.pid);
          const key = `${s.label}|${m}`;
          runs.set(key, [
            ...(runs.get(key) ?? []),
            await quietest(`part 2, ${s.label}, ${m}`, () => sendRun(db, admin, sender, m, pids)),
          ]);
        }
      }
    } finally {
      await Promise.all(idle.map((cl) => cl.end()));
      await Promise.all(extras.map((e) => e.stop()));
    }
  }
  await admin.end();
  // The run with the median req/s stands for its mode × listeners; the spread is printed too.
  const results = new Map<string, SendRun & { attempts: number; spread: string }>();
  for (const [key, list] of runs) {
    const sorted = [...list].sort((a, b) => a.http.rps - b.http.rps);
    const spread = sorted.map((r) => int(r.http.rps)).join(" / ");
    results.set(key, { ...sorted[Math.floor(sorted.length / 2)]!, spread });
  }

  const rows: string[][] = [
    [
      "listening processes",
      "mode",
      "req/s (median)",
      "runs",
      "vs off",
      "target",
      "p50 / p99 ms",
      "events/req",
      "xacts/req",
      "non-2xx",
      "server CPU",
      "Postgres CPU",
      "other servers",
      "bench",
      "machine",
      "outside",
    ],
  ];
  for (const s of setups) {
    const off = results.get(`${s.label}|off`)!.http.rps;
    for (const m of modes) {
      const r = results.get(`${s.label}|${m}`)!;
      const ratio = r.http.rps / off;
      rows.push([
        m === "off" ? s.label : "",
        m,
        int(r.http.rps),
        r.spread,
        m === "off" ? "1.00×" : `${ratio.toFixed(2)}×`,
        m === "batched" ? `≥ ${targets.batchedVsOff}× ${mark(ratio >= targets.batchedVsOff)}` : "",
        `${ms(r.http.p50)} / ${ms(r.http.p99)}`,
        r.eventsPerRequest.toFixed(2),
        r.xactsPerRequest.toFixed(1),
        r.http.non2xx || r.http.errors
          ? `${r.http.non2xx} (${JSON.stringify(r.http.statuses)}), ${r.http.errors} errors`
          : "0",
        pct(r.cpu.server),
        pct(r.cpu.postgres),
        s.extra ? pct(r.cpu.extras) : "",
        pct(r.cpu.bench),
        pct(r.cpu.machine),
        `${pct(r.cpu.outside)}${r.attempts > 1 ? ` (best of ${r.attempts})` : ""}`,
      ]);
    }
  }
  console.log(
    `\nPOST …/messages throughput (${sendRepeats} runs of ${sendSeconds} s each, the median run shown; ` +
      `CPU in % of one core, machine in % of all ${os.cpus().length}; bench = autocannon and this ` +
      "process; outside = everything else; xacts = database transactions, every server's tailer " +
      "reads included)",
  );
  console.log(table(rows, [1]));
  const flat = modes.map((m) => {
    const one = results.get(`${setups[0]!.label}|${m}`)!.http.rps;
    const ten = results.get(`${setups[1]!.label}|${m}`)!.http.rps;
    return `${m} ${(ten / one).toFixed(2)}×`;
  });
  console.log(`10 listening processes vs 1, same mode (flat = 1.00×): ${flat.join(", ")}`);
}
