/*
 * Cost analytics and the spend check on 10 million assistant messages (support/seed_costs.ts).
 * Prints numbers next to their targets; never passes or fails.
 *
 *   npm run bench -- cost                 10,000,000 messages, 100,000 chats, 1,000 users
 *   npm run bench -- cost 1000000         1,000,000 messages (10,000 chats, same users)
 *
 * SQL: the generated queries on a pg pool from this process, p50/p99 over sequential runs after a
 * warm-up. HTTP: the real app (createApp) served on 127.0.0.1 in this process, requests sent one
 * at a time with fetch. Windows: the routes' default (the 30 UTC days ending with today, answered
 * by the daily rollup alone), and the same 30 days ending now (partial first and last days, read
 * from chat_messages).
 * The spend check: a send to one of the heavy user's chats (sendChatMessage in a transaction that
 * is rolled back, so every send is admitted) with limiting off, then on (a monthly limit far above
 * the spend), in alternating rounds; the difference is what the check adds to a send.
 */
import os from "node:os";
import { pino } from "pino";
import { migrate } from "../src/db/migrate.ts";
import { connectClient, createPool, type Pool } from "../src/db/pool.ts";
import { insertAPIKey } from "../src/generated/api_keys.ts";
import { listChatCostByUser, listChatCostSummaryByOwner } from "../src/generated/chat_costs.ts";
import { sendChatMessage } from "../src/generated/chat_messages.ts";
import { getChatUsageLimitStatus } from "../src/generated/chat_usage_limits.ts";
import { generateToken } from "../src/lib/tokens.ts";
import { createApp } from "../src/server/app.ts";
import { withScratchDatabase } from "../support/scratch_db.ts";
import { describeCostSeed, seedCosts } from "../support/seed_costs.ts";
import { describeMachine, latencies, ms, serveLocal, serverSettings, table } from "./measure.ts";
import { percentile } from "./stats.ts";

const runs = 200;
const warmup = 20;
/** Rounds of sends with limiting off and on, alternated so that drift hits both alike. */
const sendRounds = 6;
const sendsPerRound = 300;
const targets = { checkOverSend: 0.1, summaryMs: 50, pageMs: 200 };

const dayMs = 86_400_000;
const iso = (t: number) => new Date(t).toISOString();

export async function benchCost(messagesArg?: string) {
  const messages = messagesArg ? Number(messagesArg) : 10_000_000;
  if (!(messages >= 100_000)) throw new Error("usage: npm run bench -- cost [messages ≥ 100000]");
  const chats = Math.round(messages / 100);
  await withScratchDatabase("pgchatd_bench_cost", async (url, where) => {
    await migrate(url);
    const client = await connectClient(url, "pgchatd-bench-seed");
    const seeded = await seedCosts(client, {
      chats,
      users: Math.min(1_000, Math.max(10, Math.floor(chats / 100))),
      heavyChats: Math.min(2_000, Math.floor(chats / 50)),
    });
    const admin = (
      await client.query<{ id: string }>(
        "SELECT id FROM users WHERE 'owner' = ANY (roles) ORDER BY created_at LIMIT 1",
      )
    ).rows[0]?.id;
    const tok = generateToken();
    await insertAPIKey(client, {
      id: tok.id,
      user_id: seeded.heavyUserId,
      hashed_secret: tok.hashedSecret,
      lifetime_seconds: 86_400,
    });
    await client.query("UPDATE users SET roles = '{owner}' WHERE id = $1", [seeded.heavyUserId]);
    const settings = await serverSettings(client, []);
    const sizes = (
      await client.query<{ messages: string; rollup: string; created_at_idx: string }>(
        `SELECT pg_size_pretty(pg_total_relation_size('chat_messages')) AS messages,
           pg_size_pretty(pg_total_relation_size('chat_cost_daily')) AS rollup,
           pg_size_pretty(pg_relation_size('chat_messages_assistant_created_at_idx')) AS created_at_idx`,
      )
    ).rows[0]!;
    await client.end();
    const s = (x: number) => `${(x / 1000).toFixed(1)} s`;
    console.log(
      `dataset: ${describeCostSeed(seeded)}\n` +
        `seeding: messages ${s(seeded.ms.messages)}, daily rollup (chat_costs_rebuild_daily) ` +
        `${s(seeded.ms.rollup)}, VACUUM ANALYZE ${s(seeded.ms.vacuum)}\n` +
        `sizes: chat_messages ${sizes.messages} (of which chat_messages_assistant_created_at_idx ` +
        `${sizes.created_at_idx}), chat_cost_daily ${sizes.rollup} with its indexes\n` +
        `database: PostgreSQL ${settings.version}, ${where}; shared_buffers ${settings.shared_buffers}\n` +
        `machine: ${describeMachine()}, ${os.platform()} ${os.arch()}; Postgres and the client share these cores`,
    );

    const pool = createPool({ connectionString: url, max: 4, applicationName: "bench-cost" });
    const app = createApp({ db: pool, logger: pino({ level: "silent" }) });
    const { port, close } = await serveLocal(app.fetch);
    const get = async (path: string) => {
      const res = await fetch(`http://127.0.0.1:${port}/api/experimental/chats${path}`, {
        headers: { authorization: `Bearer ${tok.token}` },
      });
      if (res.status !== 200) throw new Error(`${path}: ${res.status} ${await res.text()}`);
      await res.arrayBuffer();
    };
    try {
      const end = Math.floor(Date.now() / dayMs) * dayMs + dayMs;
      const windows = {
        "midnight to midnight": { start_date: iso(end - 30 * dayMs), end_date: iso(end) },
        "ending now": { start_date: iso(Date.now() - 30 * dayMs), end_date: iso(Date.now()) },
      };
      const rows: string[][] = [
        ["read (30 days)", "window", "SQL p50 / p99 ms", "HTTP p50 / p99 ms", "target"],
      ];
      const measure = async (
        name: string,
        window: string,
        sql: () => Promise<unknown>,
        path: string,
        target: string,
      ) => {
        process.stderr.write(`measuring ${name}, ${window} ...\n`);
        const a = await latencies(sql, runs, warmup);
        const b = await latencies(() => get(path), runs, warmup);
        rows.push([
          name,
          window,
          `${ms(percentile(a, 50))} / ${ms(percentile(a, 99))}`,
          `${ms(percentile(b, 50))} / ${ms(percentile(b, 99))}`,
          target,
        ]);
      };
      for (const [window, w] of Object.entries(windows)) {
        const q = new URLSearchParams(w).toString();
        await measure(
          "summary, heavy user",
          window,
          () => listChatCostSummaryByOwner(pool, { ...w, owner_id: seeded.heavyUserId }),
          `/cost/${seeded.heavyUserId}/summary?${q}`,
          `≤ ${targets.summaryMs} ms`,
        );
        await measure(
          "summary, typical user",
          window,
          () => listChatCostSummaryByOwner(pool, { ...w, owner_id: seeded.typicalUserId }),
          `/cost/${seeded.typicalUserId}/summary?${q}`,
          "",
        );
        await measure(
          "per-user page (50 of 1,000)",
          window,
          () => listChatCostByUser(pool, { ...w, search: "", limit: 50, offset: 0 }),
          `/cost/users?${q}&limit=50`,
          `≤ ${targets.pageMs} ms`,
        );
      }
      console.log(`\n${table(rows, [0, 1])}`);

      // The spend check on its own, and inside a send.
      const status = await latencies(
        () =>
          getChatUsageLimitStatus(pool, {
            user_id: seeded.heavyUserId,
            organization_id: seeded.organizationId,
          }),
        runs * 5,
        warmup,
      );
      const setLimit = (limit: number | null) =>
        pool.query("SELECT chat_usage_limits_set_config($1, $2, 'month')", [admin, limit]);
      let next = 0;
      const send = async () => {
        const chatId = seeded.heavyChatIds[next++ % seeded.heavyChatIds.length]!;
        const c = await pool.connect();
        try {
          await c.query("BEGIN");
          await sendChatMessage(c, {
            chat_id: chatId,
            owner_id: seeded.heavyUserId,
            content: [{ type: "text", text: "and now?" }],
            model_config_id: null,
            busy_behavior: "queue",
            api_key_id: null,
          });
        } finally {
          await c.query("ROLLBACK");
          c.release();
        }
      };
      const off: number[] = [];
      const on: number[] = [];
      for (let round = 0; round < sendRounds; round++) {
        process.stderr.write(`measuring sends, round ${round + 1} of ${sendRounds} ...\n`);
        await setLimit(null);
        off.push(...(await latencies(send, sendsPerRound, warmup)));
        await setLimit(Number.MAX_SAFE_INTEGER);
        on.push(...(await latencies(send, sendsPerRound, warmup)));
      }
      const monthRows = await monthRowsOf(pool, seeded.heavyUserId);
      const added = percentile(on, 50) - percentile(off, 50);
      console.log(
        `\n${table(
          [
            ["spend check", "p50 / p99 ms", "target"],
            [
              `chat_usage_limit_status, heavy user (${monthRows} days of chat_spend_daily this month)`,
              `${ms(percentile(status, 50))} / ${ms(percentile(status, 99))}`,
              "",
            ],
            [
              "send (BEGIN, send, ROLLBACK), limiting off",
              `${ms(percentile(off, 50))} / ${ms(percentile(off, 99))}`,
              "",
            ],
            [
              "send, limiting on (monthly)",
              `${ms(percentile(on, 50))} / ${ms(percentile(on, 99))}`,
              "",
            ],
            [
              "added by the check, p50",
              `${ms(added)} (${((added / percentile(off, 50)) * 100).toFixed(1)}% of a send)`,
              `≤ ${targets.checkOverSend * 100}%`,
            ],
          ],
          [0],
        )}`,
      );
      await benchWithoutRollup(pool, seeded, windows["midnight to midnight"]);
    } finally {
      await close();
      await pool.end();
    }
  });
}

/** Sequential runs of the reads the rollup replaced: they scan many more rows. */
const rawRuns = 20;

/**
 * The alternative the daily rollup was chosen over: the same reads from chat_messages, through a
 * partial covering index on assistant messages by chat and time (built here, then dropped), and
 * what the rollup's trigger adds to storing a turn's message.
 */
async function benchWithoutRollup(
  pool: Pool,
  seeded: Awaited<ReturnType<typeof seedCosts>>,
  window: { start_date: string; end_date: string },
) {
  process.stderr.write("building the alternative's index on chat_messages ...\n");
  const t = performance.now();
  await pool.query(
    `CREATE INDEX bench_chat_messages_cost_idx ON chat_messages (chat_id, created_at)
       INCLUDE (model_config_id, total_cost_micros, input_tokens, output_tokens,
         cache_read_tokens, cache_creation_tokens, runtime_ms)
     WHERE role = 'assistant'`,
  );
  const buildMs = performance.now() - t;
  await pool.query("VACUUM (ANALYZE) chat_messages");
  const size = (
    await pool.query<{ size: string }>(
      "SELECT pg_size_pretty(pg_relation_size('bench_chat_messages_cost_idx')) AS size",
    )
  ).rows[0]!.size;
  const sums = `sum(m.total_cost_micros) AS cost, count(m.total_cost_micros) AS priced,
    count(*) - count(m.total_cost_micros) AS unpriced, sum(m.input_tokens) AS input,
    sum(m.output_tokens) AS output, sum(m.cache_read_tokens) AS cache_read,
    sum(m.cache_creation_tokens) AS cache_write, sum(m.runtime_ms) AS runtime`;
  const summary = () =>
    pool.query(
      `SELECT m.model_config_id, COALESCE(c.root_chat_id, c.id) AS root_chat_id, ${sums}
       FROM chats c
       JOIN chat_messages m ON m.chat_id = c.id AND m.role = 'assistant'
         AND m.created_at >= $2 AND m.created_at < $3
       WHERE c.owner_id = $1
       GROUP BY GROUPING SETS ((), (1), (2))`,
      [seeded.heavyUserId, window.start_date, window.end_date],
    );
  const page = () =>
    pool.query(
      `SELECT c.owner_id, ${sums}, count(DISTINCT COALESCE(c.root_chat_id, c.id)) AS chats
       FROM chat_messages m JOIN chats c ON c.id = m.chat_id
       WHERE m.role = 'assistant' AND m.created_at >= $1 AND m.created_at < $2
       GROUP BY c.owner_id ORDER BY cost DESC NULLS LAST, c.owner_id LIMIT 50`,
      [window.start_date, window.end_date],
    );
  const spend = () =>
    pool.query(
      `SELECT COALESCE(sum(m.total_cost_micros), 0) AS spent
       FROM chats c
       JOIN chat_messages m ON m.chat_id = c.id AND m.role = 'assistant'
         AND m.created_at >= date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
       WHERE c.owner_id = $1 AND c.organization_id = $2`,
      [seeded.heavyUserId, seeded.organizationId],
    );
  const rows: string[][] = [["read, from chat_messages (no rollup)", "SQL p50 / p99 ms"]];
  for (const [name, fn] of [
    ["summary, heavy user, 30 days", summary],
    ["per-user page, 30 days", page],
    ["spend check, heavy user, this month", spend],
  ] as const) {
    process.stderr.write(`measuring ${name} without the rollup ...\n`);
    const a = await latencies(fn, rawRuns, 2);
    rows.push([name, `${ms(percentile(a, 50))} / ${ms(percentile(a, 99))}`]);
  }

  // What the rollup's trigger adds to a turn's message (a statement of one assistant message, in
  // a transaction that is rolled back), measured with the trigger and without it.
  const chatId = seeded.heavyChatIds[0]!;
  const store = async () => {
    const c = await pool.connect();
    try {
      await c.query("BEGIN");
      await c.query(
        `INSERT INTO chat_messages (chat_id, role, content, model_config_id, input_tokens,
           output_tokens, total_cost_micros, runtime_ms)
         SELECT $1, 'assistant', '[{"type": "text", "text": "done"}]', last_model_config_id,
           1000, 100, 42, 900
         FROM chats WHERE id = $1`,
        [chatId],
      );
    } finally {
      await c.query("ROLLBACK");
      c.release();
    }
  };
  const withTrigger: number[] = [];
  const withoutTrigger: number[] = [];
  for (let round = 0; round < 4; round++) {
    withTrigger.push(...(await latencies(store, 250, 20)));
    await pool.query("ALTER TABLE chat_messages DISABLE TRIGGER chat_messages_600_roll_up_cost");
    withoutTrigger.push(...(await latencies(store, 250, 20)));
    await pool.query("ALTER TABLE chat_messages ENABLE TRIGGER chat_messages_600_roll_up_cost");
  }
  rows.push(
    [
      "storing one assistant message (BEGIN, INSERT, ROLLBACK), with the rollup trigger",
      `${ms(percentile(withTrigger, 50))} / ${ms(percentile(withTrigger, 99))}`,
    ],
    [
      "the same without the trigger",
      `${ms(percentile(withoutTrigger, 50))} / ${ms(percentile(withoutTrigger, 99))}`,
    ],
  );
  await pool.query("DROP INDEX bench_chat_messages_cost_idx");
  console.log(
    `\nThe alternative: a partial covering index on assistant messages (chat_id, created_at), ` +
      `${size}, built in ${(buildMs / 1000).toFixed(1)} s\n${table(rows, [0])}`,
  );
}

async function monthRowsOf(pool: Pool, userId: string): Promise<string> {
  const { rows } = await pool.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM chat_spend_daily
     WHERE owner_id = $1 AND day >= date_trunc('month', now() AT TIME ZONE 'UTC')::date`,
    [userId],
  );
  return rows[0]!.n.toLocaleString("en");
}
