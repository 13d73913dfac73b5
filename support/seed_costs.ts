/*
 * Assistant messages with usage and cost, to measure the cost rollups and the spend check against.
 * Shared by `npm run bench -- cost` and `npm run explain`.
 *
 * Shape (defaults): 1,000 users in one organization, 100,000 chats and 10,000,000 assistant
 * messages (100 per chat) over the last 365 days. One heavy user owns 2,000 chats (200,000
 * messages); the others own 98 each. A tenth of the chats are subagents of a root of the same
 * owner. A chat's messages fall within three days of its first, at a random hour; 45% use a small
 * priced model, 45% a large priced one, 10% the unpriced default model (no cost: counted apart).
 * Tokens: 500-20,000 in (a fifth of it read from cache), 50-2,000 out; runtime 0.3-30 s. Only
 * assistant messages are seeded (user and tool messages carry no cost; they would only add heap).
 *
 * The messages are inserted with set-based SQL with triggers off (session_replication_role =
 * replica: the per-row triggers would make 10 million rows take many minutes), and the daily
 * rollup is then built by chat_costs_rebuild_daily(), the statement migration 00024 ran for
 * existing messages, timed on its own. random() runs after setseed: one size seeds the same data.
 */
import type pg from "pg";
import { defaultModelConfigId, seedProgressBar } from "./seed_chats.ts";

export interface SeedCostsOptions {
  /** Users. Default 1,000. */
  users?: number;
  /** Chats. Default 100,000. */
  chats?: number;
  /** Assistant messages per chat. Default 100 (10,000,000 in all). */
  messagesPerChat?: number;
  /** Chats of the heavy user. Default 2,000. */
  heavyChats?: number;
  /** Days back the messages go. Default 365. */
  days?: number;
  progress?: boolean;
}

export interface SeededCosts {
  organizationId: string;
  heavyUserId: string;
  typicalUserId: string;
  /** Chats of the heavy user, waiting (a send to one is admitted). */
  heavyChatIds: string[];
  counts: { users: number; chats: number; messages: number; rollupRows: number };
  /** Days back the messages go. */
  days: number;
  /** Seeding wall time: messages, then the rollup, then VACUUM ANALYZE. */
  ms: { messages: number; rollup: number; vacuum: number };
}

/** Chats whose messages one INSERT writes (the progress bar moves once per statement). */
const chatsPerStatement = 500;

export async function seedCosts(
  client: pg.ClientBase,
  opts: SeedCostsOptions = {},
): Promise<SeededCosts> {
  const users = opts.users ?? 1_000;
  const chats = opts.chats ?? 100_000;
  const perChat = opts.messagesPerChat ?? 100;
  const heavyChats = Math.min(opts.heavyChats ?? 2_000, Math.floor(chats / 2));
  const days = opts.days ?? 365;
  const perTypical = Math.floor((chats - heavyChats) / (users - 1));
  const show = opts.progress ?? true;
  const bar = seedProgressBar("cost messages");

  await client.query("SELECT setseed(0.14)");
  const defaultModel = await defaultModelConfigId(client);
  const { rows: setup } = await client.query<{ org: string; small: string; large: string }>(
    `WITH o AS (INSERT INTO organizations (name) VALUES ('cost-bench') RETURNING id),
       p AS (INSERT INTO chat_providers (provider, display_name, base_url)
             VALUES ('openai-compatible', 'Bench', 'http://bench-cost.test/v1') RETURNING id),
       s AS (INSERT INTO chat_model_configs (provider_id, model, display_name, context_limit,
               input_price_micros, output_price_micros, cache_read_price_micros,
               cache_write_price_micros)
             SELECT p.id, 'small', 'Small', 128000, 150000, 600000, 75000, 150000 FROM p
             RETURNING id),
       l AS (INSERT INTO chat_model_configs (provider_id, model, display_name, context_limit,
               input_price_micros, output_price_micros, cache_read_price_micros,
               cache_write_price_micros)
             SELECT p.id, 'large', 'Large', 200000, 3000000, 15000000, 300000, 3750000 FROM p
             RETURNING id)
     SELECT o.id AS org, s.id AS small, l.id AS large FROM o, s, l`,
  );
  const { org, small, large } = setup[0]!;
  await client.query(
    `CREATE TEMP TABLE seed_cost_users AS
       SELECT g AS idx, gen_random_uuid() AS id, CASE WHEN g = 1 THEN $2::int ELSE $3::int END AS chats
       FROM generate_series(1, $1::int) g`,
    [users, heavyChats, perTypical],
  );
  await client.query(
    "INSERT INTO users (id, username, name) SELECT id, 'cost-user-' || idx, 'Cost User ' || idx FROM seed_cost_users",
  );
  await client.query(
    "INSERT INTO organization_members (organization_id, user_id) SELECT $1, id FROM seed_cost_users",
    [org],
  );
  // Chats: the first 90% of each user's are roots, the rest subagents of one of them. A chat's
  // first message is at `started`, spread over the period (and never in the future).
  await client.query(
    `CREATE TEMP TABLE seed_cost_chats AS
       SELECT row_number() OVER () AS n, u.id AS owner_id, g,
         md5('pgchatd-seed-cost:' || u.idx || ':' || g)::uuid AS id,
         CASE WHEN g > ceil(u.chats * 0.9) THEN md5('pgchatd-seed-cost:' || u.idx || ':'
           || (1 + floor(random() * ceil(u.chats * 0.9)))::int)::uuid END AS parent_id,
         now() - interval '3 days' - random() * ($1::int - 3) * interval '1 day' AS started
       FROM seed_cost_users u CROSS JOIN LATERAL generate_series(1, u.chats) g`,
    [days],
  );
  await client.query(
    `INSERT INTO chats (id, owner_id, organization_id, parent_chat_id, root_chat_id,
       last_model_config_id, title, status, created_at, updated_at)
     SELECT c.id, c.owner_id, $1, c.parent_id, c.parent_id, $2,
       'Chat ' || c.g, 'waiting', c.started, c.started
     FROM seed_cost_chats c
     ORDER BY c.parent_id NULLS FIRST`,
    [org, defaultModel],
  );
  const { rows: chatCount } = await client.query<{ n: number }>(
    "SELECT count(*)::int AS n FROM seed_cost_chats",
  );
  const chatTotal = chatCount[0]!.n;
  const total = chatTotal * perChat;

  if (show) bar.start(total, 0, { step: "messages" });
  const started = performance.now();
  await client.query("SET session_replication_role = replica");
  try {
    for (let lo = 1; lo <= chatTotal; lo += chatsPerStatement) {
      const hi = Math.min(chatTotal, lo + chatsPerStatement - 1);
      await client.query(
        `INSERT INTO chat_messages (chat_id, role, content, created_at, model_config_id,
           input_tokens, output_tokens, total_tokens, cache_read_tokens, cache_creation_tokens,
           total_cost_micros, runtime_ms)
         SELECT s.chat_id, 'assistant', '[{"type": "text", "text": "done"}]', s.at, s.model,
           s.input, s.output, s.input + s.output, s.input / 5, 0,
           CASE WHEN s.model = $3 THEN NULL ELSE round((
             (s.input - s.input / 5)::numeric * m.input_price_micros
             + s.output::numeric * m.output_price_micros
             + (s.input / 5)::numeric * m.cache_read_price_micros) / 1000000)::bigint END,
           s.runtime
         FROM (
           SELECT c.id AS chat_id,
             least(now(), c.started + (i - 1) * interval '3 days' / $4::int
               + random() * interval '1 hour') AS at,
             -- 45% small, 45% large, 10% the unpriced default: one draw per message.
             (array_fill($5::uuid, ARRAY[9]) || array_fill($6::uuid, ARRAY[9])
               || array_fill($3::uuid, ARRAY[2]))[1 + floor(random() * 20)::int] AS model,
             (500 + floor(random() * 19500))::bigint AS input,
             (50 + floor(random() * 1950))::bigint AS output,
             (300 + floor(random() * 29700))::bigint AS runtime
           FROM seed_cost_chats c
           CROSS JOIN LATERAL generate_series(1, $4::int) i
           WHERE c.n BETWEEN $1 AND $2
           OFFSET 0
         ) s
         JOIN chat_model_configs m ON m.id = s.model`,
        [lo, hi, defaultModel, perChat, small, large],
      );
      if (show) bar.update(Math.min(total, hi * perChat), { step: "messages" });
    }
  } finally {
    await client.query("RESET session_replication_role");
  }
  const messagesMs = performance.now() - started;

  if (show) bar.update(total, { step: "daily rollup" });
  const rollupStarted = performance.now();
  const { rows: rebuilt } = await client.query<{ n: number }>(
    "SELECT chat_costs_rebuild_daily() AS n",
  );
  const rollupMs = performance.now() - rollupStarted;

  if (show) bar.update(total, { step: "VACUUM ANALYZE" });
  const vacuumStarted = performance.now();
  await client.query("VACUUM (ANALYZE) chats, chat_messages, chat_cost_daily, users");
  const vacuumMs = performance.now() - vacuumStarted;
  if (show) bar.stop();

  const { rows: picked } = await client.query<{ heavy: string; typical: string }>(
    "SELECT (SELECT id FROM seed_cost_users WHERE idx = 1) AS heavy, " +
      "(SELECT id FROM seed_cost_users WHERE idx = 2) AS typical",
  );
  const { rows: heavyChatRows } = await client.query<{ id: string }>(
    "SELECT id FROM seed_cost_chats WHERE owner_id = $1 ORDER BY n",
    [picked[0]!.heavy],
  );
  return {
    organizationId: org,
    heavyUserId: picked[0]!.heavy,
    typicalUserId: picked[0]!.typical,
    heavyChatIds: heavyChatRows.map((r) => r.id),
    counts: { users, chats: chatTotal, messages: total, rollupRows: rebuilt[0]!.n },
    days,
    ms: { messages: messagesMs, rollup: rollupMs, vacuum: vacuumMs },
  };
}

export function describeCostSeed(s: SeededCosts): string {
  const n = (x: number) => x.toLocaleString("en");
  return (
    `${n(s.counts.messages)} assistant messages in ${n(s.counts.chats)} chats of ` +
    `${n(s.counts.users)} users over ${s.days} days (heavy user: ${n(s.heavyChatIds.length)} chats); ` +
    `${n(s.counts.rollupRows)} daily rollup rows`
  );
}
