/*
 * Regenerates the "Plans" section of docs/sql.md: migrates a scratch database (embedded, or a new
 * database on DATABASE_URL's server), seeds a realistic amount of data, ANALYZEs, and prints the
 * plan of every hot query with sample arguments.
 *
 *   npm run explain                      rewrite docs/sql.md between the PLANS markers
 *   npm run explain -- --print           print to stdout only
 *   npm run explain -- --check           write nothing; fail if docs/sql.md is stale (CI)
 *   npm run explain -- --chats 50000     seed another number of chats (default 100,000)
 *
 * Every mode fails (after writing or printing) when a hot query's plan reads a large table whole
 * or sorts where the query did not declare why (support/plans.ts planProblems; each query's
 * `allow`); --check also compares the section it made with the file's: the queries, and the
 * tables each plan reads and through which indexes (support/plans.ts plansDiff). docs/sql.md, "Plans of the hot queries", says more.
 *
 * After the chat list, the messages data set of `npm run bench -- prompts` (support/seed_messages.ts:
 * 270,000 messages in 51 chats, the target chat with 20,000 of them) for the history and
 * prompt-history reads; seeding it takes ~12 s. Then the change-event reads on the log all that
 * wrote, the runner's statements on runner state set on the seeded chats, and the cost rollups on
 * 1,000,000 assistant messages (support/seed_costs.ts; ~25 s).
 *
 * Identity queries get their generic plan (stable text). The chat list gets EXPLAIN (ANALYZE,
 * BUFFERS) with sample arguments: node-pg sends them as unnamed statements, which are planned for
 * their values (so NULL filters fold away), and the timings change on every run.
 */
import fs from "node:fs/promises";
import path from "node:path";
import type pg from "pg";
import { migrate } from "../src/db/migrate.ts";
import { connectClient } from "../src/db/pool.ts";
import {
  getAPIKeyForAuthByIDQuery,
  updateAPIKeyLastUsedByIDQuery,
} from "../src/generated/api_keys.ts";
import { listAuditLogs, listAuditLogsByChatID } from "../src/generated/audit_logs.ts";
import { listChatContextResourcesForPromptByChatID } from "../src/generated/chat_context.ts";
import {
  getChatCostByChatID,
  listChatCostByUser,
  listChatCostSummaryByOwner,
} from "../src/generated/chat_costs.ts";
import {
  getChatPullRequestCountsByOwner,
  listChatPullRequestsByOwner,
} from "../src/generated/chat_diff_statuses.ts";
import {
  getChatEventHorizonStatus,
  listChatEventsAfterCursor,
  listChatEventsByAgentInRange,
  listChatEventsByChatInRange,
  listChatEventsByOwnerInRange,
} from "../src/generated/chat_events.ts";
import { getChatPlanFileByChatID } from "../src/generated/chat_files.ts";
import {
  listChatAutoArchiveCandidates,
  listChatRetentionCandidates,
} from "../src/generated/chat_housekeeping.ts";
import {
  getChatResponseAnchorByChatID,
  listChatMessagesAfterIDByChatID,
  listChatMessagesByChatID,
  listChatMessagesByIDs,
  listChatMessagesForPromptByChatID,
  listChatPromptsByChatID,
} from "../src/generated/chat_messages.ts";
import {
  claimPendingChats,
  getChatForRunByID,
  getChatForRunByIDQuery,
  listChatRecoveryCandidates,
  listChatRunStatesByWorkerID,
} from "../src/generated/chat_runs.ts";
import { listChatStreamPartsByChatID } from "../src/generated/chat_stream_parts.ts";
import {
  listChatToolCallsByIDs,
  listPendingChatToolCallsByAgentID,
} from "../src/generated/chat_tool_calls.ts";
import { getChatUsageLimitStatus } from "../src/generated/chat_usage_limits.ts";
import {
  listChatsAndChildrenByIDs,
  listChatsByOwner,
  listChildChatsByRootIDs,
  listLatestChatIDsByWorkspaceIDs,
} from "../src/generated/chats.ts";
import {
  listNotificationsByUserID,
  markAllNotificationsReadByUserID,
} from "../src/generated/notifications.ts";
import { getUserByIDQuery } from "../src/generated/users.ts";
import {
  getWorkspaceAgentForAuthByTokenIDQuery,
  getWorkspaceByIDQuery,
} from "../src/generated/workspaces.ts";
import { streamKinds, watchKinds } from "../src/watch/index.ts";
import {
  type NestedPlan,
  nestedPlanTrees,
  type PlanAllowances,
  type PlanNode,
  planProblems,
  plansDiff,
  seqScannedTables,
  tableRows,
} from "../support/plans.ts";
import { withScratchDatabase } from "../support/scratch_db.ts";
import {
  capturedQuery,
  cursorAt,
  describeSeed,
  listChatsArgs,
  type SeededChats,
  seedChats,
} from "../support/seed_chats.ts";
import { describeCostSeed, type SeededCosts, seedCosts } from "../support/seed_costs.ts";
import { describeMessages, type SeededMessages, seedMessages } from "../support/seed_messages.ts";

/** Sizes of the seeded tables; large enough that a missing index shows as a sequential scan. */
const seed = {
  organizations: 50,
  users: 20_000,
  keysPerUser: 2,
  workspaces: 5_000,
  buildsPerWorkspace: 3,
};

/** The identity reads list a user's organizations, oldest membership first. */
const membershipsSort: PlanAllowances = {
  sort: "a user's memberships (one or two) by created_at: the index gives it, the Incremental Sort breaks ties by organization_id",
};

interface Hot {
  name: string;
  why: string;
  text: string;
  /** SQL that returns the sample arguments, one row. */
  args: string;
  allow?: PlanAllowances;
}

const hot: Hot[] = [
  {
    name: "GetAPIKeyForAuthByID",
    why: "every authenticated request: key, user and organization ids in one round trip",
    text: getAPIKeyForAuthByIDQuery,
    args: "SELECT id FROM api_keys ORDER BY id LIMIT 1",
    allow: membershipsSort,
  },
  {
    name: "GetUserByID",
    why: "user lookups by id (key creation for another user, the User object)",
    text: getUserByIDQuery,
    args: "SELECT id FROM users ORDER BY id LIMIT 1",
    allow: membershipsSort,
  },
  {
    name: "UpdateAPIKeyLastUsedByID",
    why: "at most once a minute per active key",
    text: updateAPIKeyLastUsedByIDQuery,
    args: "SELECT id FROM api_keys ORDER BY id LIMIT 1",
  },
  {
    name: "GetWorkspaceAgentForAuthByTokenID",
    why: "every agent request",
    text: getWorkspaceAgentForAuthByTokenIDQuery,
    args: "SELECT token_id FROM workspace_agents ORDER BY id LIMIT 1",
  },
  {
    name: "GetWorkspaceByID",
    why: "builds, chat binding",
    text: getWorkspaceByIDQuery,
    args: "SELECT id FROM workspaces ORDER BY id LIMIT 1",
  },
];

const seedSql = `
INSERT INTO organizations (name) SELECT 'org-' || g FROM generate_series(1, ${seed.organizations}) g;
INSERT INTO users (username, name) SELECT 'user-' || g, 'User ' || g FROM generate_series(1, ${seed.users}) g;
INSERT INTO organization_members (organization_id, user_id)
  SELECT o.id, u.id FROM users u
  JOIN LATERAL (SELECT id FROM organizations ORDER BY md5(u.id::text || name) LIMIT 2) o ON true;
INSERT INTO api_keys (id, user_id, hashed_secret, expires_at)
  SELECT substr(md5(u.id::text || k), 1, 10), u.id, sha256(u.id::text::bytea), now() + interval '30 days'
  FROM users u, generate_series(1, ${seed.keysPerUser}) k;
INSERT INTO workspaces (organization_id, owner_id, name, latest_build_number)
  SELECT m.organization_id, m.user_id, 'ws-' || row_number() OVER (), ${seed.buildsPerWorkspace}
  FROM (SELECT DISTINCT ON (user_id) organization_id, user_id FROM organization_members) m
  LIMIT ${seed.workspaces};
INSERT INTO workspace_builds (workspace_id, build_number)
  SELECT w.id, b FROM workspaces w, generate_series(1, ${seed.buildsPerWorkspace}) b;
INSERT INTO workspace_agents (build_id, name, ordinal, token_id, hashed_token)
  SELECT b.id, 'main', 0, substr(md5(b.id::text), 1, 10), sha256(b.id::text::bytea) FROM workspace_builds b;
ANALYZE;
`;

/** Chats seeded for the chat list plans (`--chats N` overrides). */
const chatsFlag = process.argv.indexOf("--chats");
const seedChatCount = chatsFlag >= 0 ? Number(process.argv[chatsFlag + 1]) : 100_000;

/** The chat list's searches: their matches come from the search's index, not in list order. */
const searchSort: PlanAllowances = {
  sort: "a search's matches (one here) put in list order: a handful of rows, which no index orders",
};

interface ChatPlan {
  name: string;
  why: string;
  /** The arguments, as the reader should see them. */
  shows: string;
  query: { text: string; values: unknown[] };
  /**
   * Run as the change-event reads are (src/watch): prepared, with plan_cache_mode =
   * force_generic_plan, so the plan shown is the one used for any arguments.
   */
  generic?: boolean;
  /** What the check may find in this plan, and why (support/plans.ts planProblems). */
  allow?: PlanAllowances;
}

/** A query argument as a literal for EXECUTE (scalars, and arrays as '{"a","b"}'). */
function sqlLiteral(client: pg.Client, v: unknown): string {
  if (v === null || v === undefined) return "NULL";
  const text = Array.isArray(v)
    ? `{${v.map((x) => `"${String(x).replace(/["\\]/g, "\\$&")}"`).join(",")}}`
    : String(v);
  return client.escapeLiteral(text);
}

/** The chat list's queries on the seeded data, with the arguments the routes pass. */
async function chatPlans(client: pg.Client, seeded: SeededChats): Promise<ChatPlan[]> {
  const heavy = seeded.heavyOwnerId;
  const cursor = await cursorAt(client, heavy, 0.8);
  const page = await listChatsByOwner(client, listChatsArgs(heavy));
  // A pull request opened by a subagent: the filter must find the child's root.
  const diff = await client.query<{ url: string }>(
    `SELECT d.url FROM chat_diff_statuses d JOIN chats c ON c.id = d.chat_id
     WHERE c.owner_id = $1 AND c.parent_chat_id IS NOT NULL AND NOT c.archived
     ORDER BY d.url LIMIT 1`,
    [heavy],
  );
  const diffUrl = diff.rows[0]?.url ?? "https://github.com/acme/repo1/pull/1";
  const workspaces = await client.query<{ id: string }>(
    "SELECT id FROM workspaces WHERE owner_id = $1 ORDER BY name",
    [heavy],
  );
  const heavyList = `heavy owner (${seeded.heavyOwnerChats.toLocaleString("en")} chats)`;
  return [
    {
      name: "ListChatsByOwner: first page",
      why: "GET /api/experimental/chats, the chat list",
      shows: `${heavyList}, limit 50, no filter`,
      query: await capturedQuery(listChatsByOwner, listChatsArgs(heavy)),
    },
    {
      name: "ListChatsByOwner: first page, typical owner",
      why: "the same list for an owner with a page and a half of chats",
      shows: `typical owner (${seeded.typicalOwnerChats.toLocaleString("en")} chats), limit 50, no filter`,
      query: await capturedQuery(listChatsByOwner, listChatsArgs(seeded.typicalOwnerId)),
    },
    {
      name: "ListChatsByOwner: deep cursor page",
      why: "scrolling the chat list (after_id keyset cursor)",
      shows: `${heavyList}, after_id = root ${cursor.position.toLocaleString("en")} of ${cursor.of.toLocaleString("en")}`,
      query: await capturedQuery(listChatsByOwner, listChatsArgs(heavy, { after_id: cursor.id })),
    },
    {
      name: "ListChatsByOwner: label filter",
      why: "label=env:prod on the chat list",
      shows: `${heavyList}, labels = {"env": "prod"}`,
      query: await capturedQuery(
        listChatsByOwner,
        listChatsArgs(heavy, { labels: { env: "prod" } }),
      ),
    },
    {
      name: "ListChatsByOwner: diff_url filter",
      why: "q=diff_url:<url>, finding the chat of a pull request",
      shows: `${heavyList}, diff_url of a child chat's pull request`,
      allow: searchSort,
      query: await capturedQuery(listChatsByOwner, listChatsArgs(heavy, { diff_url: diffUrl })),
    },
    {
      name: "ListChildChatsByRootIDs",
      why: "every chat list page: the children of the page's roots",
      shows: `the ${page.length} roots of the heavy owner's first page`,
      query: await capturedQuery(listChildChatsByRootIDs, {
        root_ids: page.map((r) => r.id),
        archived: false,
      }),
    },
    {
      name: "ListLatestChatIDsByWorkspaceIDs",
      why: "GET /api/experimental/chats/by-workspace",
      shows: `the heavy owner's ${workspaces.rows.length} workspaces`,
      query: await capturedQuery(listLatestChatIDsByWorkspaceIDs, {
        workspace_ids: workspaces.rows.map((w) => w.id),
        owner_id: heavy,
      }),
    },
  ];
}

/** The message history and prompt history of the target chat, with the routes' arguments. */
async function messagePlans(client: pg.Client, seeded: SeededMessages): Promise<ChatPlan[]> {
  const chat = seeded.targetChatId;
  // A before_id cursor halfway down the visible history (the route's has_more page).
  const middle = await client.query<{ id: number; position: number; of: number }>(
    `SELECT id, position, of FROM (
       SELECT id, (row_number() OVER (ORDER BY id DESC))::int AS position,
         (count(*) OVER ())::int AS of
       FROM chat_messages WHERE chat_id = $1 AND NOT deleted AND visibility <> 'model'
     ) v
     WHERE position = of / 2`,
    [chat],
  );
  const cursor = middle.rows[0]!;
  const target = `target chat (${seeded.counts.targetMessages.toLocaleString("en")} messages)`;
  const page = { chat_id: chat, before_id: null, after_id: null, page_limit: 51 };
  return [
    {
      name: "ListChatPromptsByChatID",
      why: "GET /api/experimental/chats/{chat}/prompts, the prompt history",
      shows: `${target}, ${seeded.counts.targetPrompts.toLocaleString("en")} prompts, limit 500 (the default)`,
      query: await capturedQuery(listChatPromptsByChatID, { chat_id: chat, page_limit: 500 }),
    },
    {
      name: "ListChatMessagesByChatID: first page",
      why: "GET /api/experimental/chats/{chat}/messages, opening a chat",
      shows: `${target}, limit 50 (the route asks for 51 to know has_more)`,
      query: await capturedQuery(listChatMessagesByChatID, page),
    },
    {
      name: "GetChatResponseAnchorByChatID",
      why: "every turn of an OpenAI model that stores its responses (response chaining)",
      shows: target,
      query: await capturedQuery(getChatResponseAnchorByChatID, { chat_id: chat }),
    },
    {
      name: "ListChatMessagesByChatID: before_id page",
      why: "scrolling a chat's history up (before_id keyset cursor)",
      shows: `${target}, limit 50, before_id = visible message ${cursor.position.toLocaleString("en")} of ${cursor.of.toLocaleString("en")} from the newest`,
      query: await capturedQuery(listChatMessagesByChatID, { ...page, before_id: cursor.id }),
    },
    {
      name: "ListChatMessagesAfterIDByChatID: polling page",
      why: "GET /{chat}/messages?after_id= (a poller's page, oldest first), and the chat stream's snapshot",
      shows: `${target}, limit 50, after_id = visible message ${cursor.position.toLocaleString("en")} of ${cursor.of.toLocaleString("en")} from the newest`,
      query: await capturedQuery(listChatMessagesAfterIDByChatID, {
        chat_id: chat,
        after_id: cursor.id,
        page_limit: 51,
      }),
    },
    {
      name: "ListChatStreamPartsByChatID",
      why: "every chat stream opened without a cursor (the running turn's output so far)",
      shows: `the target chat running with ${streamParts.target} parts stored, among ${streamParts.total.toLocaleString("en")} parts of ${streamParts.chats.toLocaleString("en")} streaming chats`,
      query: await capturedQuery(listChatStreamPartsByChatID, { chat_id: chat }),
    },
  ];
}

/** Parts of streaming turns: the target chat's long step and many other chats' (unlogged table). */
const streamParts = { target: 400, chats: 2_000, perChat: 50, total: 0 };

async function seedStreamParts(client: pg.Client, targetChatId: string): Promise<void> {
  await client.query(
    `UPDATE chats SET status = 'running', worker_id = gen_random_uuid(), started_at = now()
     WHERE id = $1`,
    [targetChatId],
  );
  await client.query(
    `INSERT INTO chat_stream_parts (chat_id, seq, turn_id, body)
     SELECT c.id, nextval('chat_stream_parts_seq'), chat_stream_turn_id(c.started_at),
       'event: message_part' || chr(10) || 'data: {"part":{"type":"text","text":"abc"}}' || chr(10) || chr(10)
     FROM (SELECT id, started_at FROM chats WHERE id <> $1 ORDER BY id LIMIT $2) c,
       generate_series(1, $3)`,
    [targetChatId, streamParts.chats, streamParts.perChat],
  );
  await client.query(
    `INSERT INTO chat_stream_parts (chat_id, seq, turn_id, body)
     SELECT c.id, nextval('chat_stream_parts_seq'), chat_stream_turn_id(c.started_at),
       'event: message_part' || chr(10) || 'data: {"part":{"type":"text","text":"abc"}}' || chr(10) || chr(10)
     FROM chats c, generate_series(1, $2) WHERE c.id = $1`,
    [targetChatId, streamParts.target],
  );
  const { rows } = await client.query<{ n: number }>(
    "SELECT count(*)::int AS n FROM chat_stream_parts",
  );
  streamParts.total = rows[0]!.n;
  await client.query("ANALYZE chat_stream_parts");
}

/**
 * The change-event reads on the log the seeding wrote (every seeded chat and message went
 * through the triggers): the tailer at the head, a watch and a chat stream resuming from the
 * middle of the log, and the renderer's batch lookups.
 */
async function eventPlans(
  client: pg.Client,
  chats: SeededChats,
  messages: SeededMessages,
): Promise<{ total: number; plans: ChatPlan[] }> {
  const total = Number((await client.query("SELECT count(*) AS n FROM chat_events")).rows[0].n);
  const at = async (sql: string, values: unknown[]) =>
    (await client.query<{ xid: string; id: number }>(sql, values)).rows[0]!;
  const ordered = "SELECT xid::text AS xid, id FROM chat_events";
  const nearHead = await at(
    `${ordered} ORDER BY chat_events.xid DESC, id DESC OFFSET 1000 LIMIT 1`,
    [],
  );
  const head = await at(`${ordered} ORDER BY chat_events.xid DESC, id DESC LIMIT 1`, []);
  // Resuming from the middle of the owner's (the chat's) own events.
  const middleOf = async (column: string, value: string) => {
    const where = `FROM chat_events WHERE ${column} = $1`;
    const n = Number((await client.query(`SELECT count(*) AS n ${where}`, [value])).rows[0].n);
    const mid = await at(
      `SELECT xid::text AS xid, id ${where} ORDER BY chat_events.xid, id OFFSET $2 LIMIT 1`,
      [value, Math.floor(n / 2)],
    );
    return {
      after_xid: mid.xid,
      after_id: mid.id,
      until_xid: head.xid,
      until_id: head.id,
      page_limit: 500,
      n,
    };
  };
  const { n: ownerEvents, ...ownerRange } = await middleOf("owner_id", chats.heavyOwnerId);
  const { n: chatEvents, ...chatRange } = await middleOf("chat_id", messages.targetChatId);
  const pageOfChats = await client.query<{ id: string }>(
    "SELECT id FROM chats WHERE owner_id = $1 LIMIT 50",
    [chats.heavyOwnerId],
  );
  const pageOfMessages = await client.query<{ id: number }>(
    "SELECT id FROM chat_messages WHERE chat_id = $1 ORDER BY id DESC LIMIT 50",
    [messages.targetChatId],
  );
  return {
    total,
    plans: [
      {
        name: "ListChatEventsAfterCursor",
        generic: true,
        why: "the tailer, on every NOTIFY and safety poll",
        shows: "a cursor 1,000 events behind the head, page of 1,000",
        query: await capturedQuery(listChatEventsAfterCursor, {
          after_xid: nearHead.xid,
          after_id: nearHead.id,
          past_other_databases: false,
          page_limit: 1000,
        }),
      },
      {
        name: "ListChatEventsAfterCursor: past other databases",
        generic: true,
        why: "the tailer while only other databases' open transactions hold the cluster's xmin",
        shows: "the same read below chat_events_horizon()",
        query: await capturedQuery(listChatEventsAfterCursor, {
          after_xid: nearHead.xid,
          after_id: nearHead.id,
          past_other_databases: true,
          page_limit: 1000,
        }),
      },
      {
        name: "GetChatEventHorizonStatus",
        generic: true,
        why: "the tailer's look at its horizon, once a second per process",
        shows: "a cursor 1,000 events behind the head",
        query: await capturedQuery(getChatEventHorizonStatus, {
          after_xid: nearHead.xid,
          after_id: nearHead.id,
        }),
      },
      {
        name: "ListChatEventsByOwnerInRange",
        why: "a watch stream reconnecting with Last-Event-ID",
        shows: `heavy owner (${ownerEvents.toLocaleString("en")} events), from the middle of its events to the head, watch kinds, page of 500`,
        query: await capturedQuery(listChatEventsByOwnerInRange, {
          owner_id: chats.heavyOwnerId,
          kinds: [...watchKinds],
          ...ownerRange,
        }),
      },
      {
        name: "ListChatEventsByChatInRange",
        why: "a chat stream reconnecting with Last-Event-ID",
        shows: `the messages' target chat (${chatEvents.toLocaleString("en")} events), from the middle of its events to the head, stream kinds, page of 500`,
        query: await capturedQuery(listChatEventsByChatInRange, {
          chat_id: messages.targetChatId,
          kinds: [...streamKinds],
          ...chatRange,
        }),
      },
      {
        name: "ListChatsAndChildrenByIDs",
        generic: true,
        why: "rendering a batch of watch events (each chat, with a root's children, read once per batch)",
        shows: "50 of the heavy owner's chats, roots and children",
        allow: {
          sort: "a batch's chats and their children (a few dozen), found by two id lookups, grouped by root for rendering",
        },
        query: await capturedQuery(listChatsAndChildrenByIDs, {
          ids: pageOfChats.rows.map((r) => r.id),
        }),
      },
      {
        name: "ListChatMessagesByIDs",
        generic: true,
        why: "rendering a batch of chat-stream `message` events",
        shows: "50 messages",
        query: await capturedQuery(listChatMessagesByIDs, {
          ids: pageOfMessages.rows.map((r) => r.id),
        }),
      },
    ],
  };
}

/** What the runner's plans run on: a moment of a busy installation, set on the seeded chats. */
const runnerState = { pending: 200, running: 2_000, requiresAction: 100, queued: 50 };
const workerId = "00000000-0000-4000-8000-00000000a11c";

/**
 * The runner's hot statements: the claim, the batched heartbeat, a turn's reads, the recovery
 * pass's candidates, and the queries inside chat_run_recover_chat, whose plans auto_explain
 * reports from inside the function. Writing statements run in a transaction that is rolled back.
 */
async function runnerPlans(
  client: pg.Client,
  messages: SeededMessages,
): Promise<{
  plans: ChatPlan[];
  recover: NestedPlan[];
  modelKey: NestedPlan[];
  claim: NestedPlan[];
  choose: NestedPlan[];
}> {
  // Runner state on random seeded chats (their history is whatever the seeding gave them).
  await client.query(
    `WITH picked AS (
       SELECT id, row_number() OVER () AS n FROM (
         SELECT id FROM chats WHERE NOT archived ORDER BY md5(id::text)
         LIMIT ${runnerState.pending + runnerState.running + runnerState.requiresAction}
       ) p
     )
     UPDATE chats c SET
       status = CASE WHEN n <= ${runnerState.pending} THEN 'pending'
         WHEN n <= ${runnerState.pending + runnerState.running} THEN 'running'
         ELSE 'requires_action' END::chat_status,
       worker_id = CASE WHEN n > ${runnerState.pending} AND n <= ${runnerState.pending + runnerState.running}
         THEN '${workerId}'::uuid END,
       started_at = now(), heartbeat_at = NULL,
       status_changed_at = now() - (n || ' seconds')::interval
     FROM picked WHERE c.id = picked.id`,
  );
  // Its runner's row, and nine more runners: a pending chat chooses one of them.
  await client.query(
    `INSERT INTO chat_runners (id, hostname, pid, capacity, free_slots, heartbeat_interval)
     SELECT CASE WHEN g = 0 THEN '${workerId}'::uuid ELSE gen_random_uuid() END, 'explain', g,
       ${runnerState.running}, g % 3, interval '15 seconds'
     FROM generate_series(0, 9) g`,
  );
  await client.query(
    `INSERT INTO chat_queued_messages (chat_id, content, position)
     SELECT id, '[{"type":"text","text":"queued"}]', 1 FROM chats
     WHERE status = 'running' ORDER BY id LIMIT ${runnerState.queued}`,
  );
  await client.query("ANALYZE chats; ANALYZE chat_queued_messages");
  const running = await client.query<{ id: string }>("SELECT id FROM chats WHERE worker_id = $1", [
    workerId,
  ]);
  const plans: ChatPlan[] = [
    {
      name: "ClaimPendingChats",
      why: "the wake-up of the one runner a pending chat chose, a turn's end, the poll",
      shows: `${runnerState.pending} pending chats, a batch of 50 (the function's statements: chat_run_claim below)`,
      query: await capturedQuery(claimPendingChats, {
        worker_id: workerId,
        free_slots: 50,
        batch_size: 50,
      }),
    },
    {
      name: "ListChatRunStatesByWorkerID",
      why: "once per heartbeat interval per runner, for all its running turns (a read: the runner's own row renews its leases)",
      shows: `a runner with ${running.rows.length.toLocaleString("en")} running chats`,
      query: await capturedQuery(listChatRunStatesByWorkerID, {
        worker_id: workerId,
        chat_ids: running.rows.map((r) => r.id),
      }),
    },
    {
      name: "GetChatForRunByID",
      why: "the start of every turn: the chat, its model config and provider",
      shows: "one chat",
      query: await capturedQuery(getChatForRunByID, { id: messages.targetChatId, gateway: false }),
    },
    {
      name: "ListChatMessagesForPromptByChatID",
      why: "the start of every turn: the history the model sees",
      shows: `the messages' target chat (${messages.counts.targetMessages.toLocaleString("en")} messages)`,
      query: await capturedQuery(listChatMessagesForPromptByChatID, {
        chat_id: messages.targetChatId,
      }),
    },
    {
      name: "ListChatRecoveryCandidates",
      why: "every runner, once per heartbeat interval: the recovery pass's candidates",
      shows: `${running.rows.length.toLocaleString("en")} leased chats (none stale), ${runnerState.requiresAction} in requires_action (none expired), ${runnerState.queued} queued messages on running chats`,
      allow: {
        sort: "each kind's candidates (none or one here, few in any installation) sorted by id before its batch limit",
      },
      query: await capturedQuery(listChatRecoveryCandidates, {
        stale_after_seconds: 60,
        tool_results_timeout_seconds: 300,
        skip_ids: [],
        batch_size: 500,
      }),
    },
  ];

  // One candidate's recovery, as the function runs it (a stale lease).
  const recover = (
    await nestedPlanTrees(
      client,
      "SELECT chat_run_recover_chat($1, interval '1 minute', interval '5 minutes')",
      [running.rows[0]!.id],
    )
  ).filter(({ text: n }) => n.includes("FOR NO KEY UPDATE SKIP LOCKED"));
  // The statements of a turn's key and initiator, from inside the function GetChatForRunByID calls.
  const modelKey = (
    await nestedPlanTrees(client, getChatForRunByIDQuery, [false, messages.targetChatId])
  ).filter(({ text: n }) => /chat_provider_user_keys k|chat_messages um|FROM api_keys/.test(n));
  // The claim's statements, from inside chat_run_claim (its writes rolled back).
  const claim = (
    await nestedPlanTrees(client, "SELECT * FROM chat_run_claim($1, 50, 50)", [workerId])
  ).filter(({ text: n }) => /chats_pending_idx|SKIP LOCKED|chat_runners/.test(n));
  // The choice of the runner a pending chat wakes, from inside the trigger.
  const choose = (await nestedPlanTrees(client, "SELECT * FROM chat_runner_choose()", [])).filter(
    ({ text: n }) => n.includes("chat_runners"),
  );
  return { plans, recover, modelKey, claim, choose };
}

/** Stale references of the refresher's claim plan (the rest are fresh). */
const staleReferences = 2_000;

/**
 * The pull-request filters of the chat list, the insights and the refresher's claim, on the
 * seeded chats' diff statuses (with the routes' arguments).
 */
async function pullRequestPlans(client: pg.Client, seeded: SeededChats) {
  const heavy = seeded.heavyOwnerId;
  const { rows } = await client.query<{ pr_number: number; title: string; n: number }>(
    `SELECT pr_number, pull_request_title AS title,
       (SELECT count(*)::int FROM chat_diff_statuses WHERE owner_id = $1) AS n
     FROM chat_diff_statuses WHERE owner_id = $1 AND root_chat_id <> chat_id
     ORDER BY chat_id LIMIT 1`,
    [heavy],
  );
  const sample = rows[0]!;
  const heavyList = `heavy owner (${seeded.heavyOwnerChats.toLocaleString("en")} chats, ${sample.n.toLocaleString("en")} with a diff status)`;
  await client.query(
    `UPDATE chat_diff_statuses SET stale_at = now() + interval '2 minutes';
     UPDATE chat_diff_statuses SET stale_at = now() - interval '1 second'
     WHERE chat_id IN (SELECT chat_id FROM chat_diff_statuses ORDER BY md5(chat_id::text) LIMIT ${staleReferences})`,
  );
  // As autovacuum leaves it: the insights' counts read the index alone.
  await client.query("VACUUM (ANALYZE) chat_diff_statuses");
  const plans: ChatPlan[] = [
    {
      name: "ListChatsByOwner: pr filter",
      why: "q=pr:<n>",
      shows: `${heavyList}, the number of a subagent's pull request`,
      allow: searchSort,
      query: await capturedQuery(listChatsByOwner, listChatsArgs(heavy, { pr: sample.pr_number })),
    },
    {
      name: "ListChatsByOwner: repo filter",
      why: "q=repo:<owner/repo>, a substring of the remote or the URL",
      shows: `${heavyList}, repo:acme/repo17`,
      allow: searchSort,
      query: await capturedQuery(listChatsByOwner, listChatsArgs(heavy, { repo: "acme/repo17" })),
    },
    {
      name: "ListChatsByOwner: pr_title filter",
      why: "q=pr_title:<text>, a substring of the title",
      shows: `${heavyList}, pr_title:"${sample.title}"`,
      allow: searchSort,
      query: await capturedQuery(
        listChatsByOwner,
        listChatsArgs(heavy, { pr_title: sample.title }),
      ),
    },
    {
      name: "ListChatsByOwner: pr_status filter",
      why: "q=pr_status:draft",
      shows: `${heavyList}, pr_status:draft`,
      allow: searchSort,
      query: await capturedQuery(listChatsByOwner, listChatsArgs(heavy, { pr_status: "draft" })),
    },
    {
      name: "GetChatPullRequestCountsByOwner",
      why: "GET /api/experimental/chats/insights/pull-requests, the counts",
      shows: heavyList,
      query: await capturedQuery(getChatPullRequestCountsByOwner, { owner_id: heavy }),
    },
    {
      name: "GetChatPullRequestCountsByOwner: the deployment",
      why: "the same counts for every owner (the telemetry snapshot)",
      shows: "owner_id NULL",
      query: await capturedQuery(getChatPullRequestCountsByOwner, { owner_id: null }),
    },
    {
      name: "ListChatPullRequestsByOwner",
      why: "GET /api/experimental/chats/insights/pull-requests, the page",
      shows: `${heavyList}, limit 50`,
      query: await capturedQuery(listChatPullRequestsByOwner, {
        owner_id: heavy,
        page_limit: 50,
        page_offset: 0,
      }),
    },
  ];
  const claim = (
    await nestedPlanTrees(client, "SELECT * FROM chat_diff_statuses_claim(20)", [])
  ).filter(({ text: n }) => n.includes("SKIP LOCKED"));
  return { plans, claim };
}

/** Housekeeping's data: notifications, idle and archived chats, old files. */
const housekeepingSeed = { notifications: 200_000, heavyInbox: 5_000, files: 20_000 };

/**
 * The inbox reads and the housekeeping job's scans, on the chats above after a tenth of them went
 * idle 60 days ago, a tenth were archived 60 days ago, and old files (half linked) were uploaded.
 */
async function housekeepingPlans(client: pg.Client, seeded: SeededChats) {
  const heavy = seeded.heavyOwnerId;
  // Triggers off: the events of these writes are not the subject.
  await client.query("SET session_replication_role = replica");
  await client.query(
    `WITH u AS (SELECT id, row_number() OVER (ORDER BY id) % 1000 AS n FROM users LIMIT 1000)
     INSERT INTO notifications (user_id, kind, title, body, created_at, read_at)
     SELECT CASE WHEN g <= $2 THEN $1::uuid ELSE u.id END,
       'chats_auto_archived', 'Chats auto-archived', 'body',
       now() - (g % 90) * interval '1 day', CASE WHEN g % 10 = 0 THEN NULL ELSE now() END
     FROM generate_series(1, $3::int) g JOIN u ON u.n = g % 1000`,
    [heavy, housekeepingSeed.heavyInbox, housekeepingSeed.notifications],
  );
  await client.query(
    `UPDATE chats SET updated_at = now() - interval '60 days',
       archived = (abs(hashtext(id::text)) % 2 = 0)
     WHERE parent_chat_id IS NULL AND pin_order = 0 AND NOT archived
       AND abs(hashtext(id::text)) % 5 = 0
       AND NOT EXISTS (SELECT 1 FROM chats k WHERE k.parent_chat_id = chats.id)`,
  );
  await client.query(
    `WITH c AS (SELECT owner_id, organization_id, row_number() OVER (ORDER BY id) AS n
                FROM chats LIMIT $1)
     INSERT INTO chat_files (owner_id, organization_id, name, mimetype, data, created_at)
     SELECT c.owner_id, c.organization_id, 'f' || c.n, 'text/plain', '\\x00',
       now() - interval '60 days' + c.n * interval '1 second'
     FROM c`,
    [housekeepingSeed.files],
  );
  await client.query(
    `INSERT INTO chat_file_links (chat_id, file_id)
     SELECT (SELECT id FROM chats ORDER BY id LIMIT 1), id FROM chat_files
     WHERE abs(hashtext(id::text)) % 2 = 0 AND created_at < now() - interval '30 days'`,
  );
  await client.query("SET session_replication_role = origin");
  await client.query(
    "UPDATE chat_housekeeping_config SET auto_archive_days = 30, retention_days = 30",
  );
  await client.query("VACUUM (ANALYZE) notifications, chats, chat_files, chat_file_links");
  const { rows } = await client.query<{ after: number }>(
    "SELECT id::int AS after FROM notifications WHERE user_id = $1 ORDER BY id DESC OFFSET 2000 LIMIT 1",
    [heavy],
  );
  const inbox = `the heaviest inbox (${housekeepingSeed.heavyInbox.toLocaleString("en")} notifications, a tenth unread)`;
  const plans: ChatPlan[] = [
    {
      name: "ListNotificationsByUserID",
      why: "GET /api/v2/notifications, the first page",
      shows: `${inbox}, limit 51`,
      query: await capturedQuery(listNotificationsByUserID, {
        user_id: heavy,
        after_id: null,
        unread_only: false,
        page_limit: 51,
      }),
    },
    {
      name: "ListNotificationsByUserID: unread, a deep page",
      why: "GET /api/v2/notifications?unread=true&after_id=…",
      shows: `${inbox}, after the 2,000th newest, limit 51`,
      query: await capturedQuery(listNotificationsByUserID, {
        user_id: heavy,
        after_id: rows[0]!.after,
        unread_only: true,
        page_limit: 51,
      }),
    },
    {
      name: "MarkAllNotificationsReadByUserID",
      why: "PUT /api/v2/notifications/read-all",
      shows: inbox,
      query: await capturedQuery(markAllNotificationsReadByUserID, { user_id: heavy }),
    },
    {
      name: "ListChatAutoArchiveCandidates",
      why: "every housekeeping run while auto-archive is on and today is not done",
      shows: "auto_archive_days 30, a tenth of the roots idle for 60 days, batch 1,000",
      query: await capturedQuery(listChatAutoArchiveCandidates, { batch_size: 1000 }),
    },
    {
      name: "ListChatRetentionCandidates",
      why: "every housekeeping run while retention is on",
      shows: "retention_days 30, a tenth of the roots archived 60 days ago, batch 500",
      query: await capturedQuery(listChatRetentionCandidates, { batch_size: 500 }),
    },
  ];
  // Its two statements; not the cascade's per-row deletes of links, which auto_explain also logs.
  const files = (
    await nestedPlanTrees(client, "SELECT chat_retention_purge_files(500)", [])
  ).filter(({ text: n }) => n.includes("SKIP LOCKED") || n.includes("DELETE FROM chat_files f"));
  return { plans, files };
}

/** The audit log of the audit plans: one entry per message sent, spread over 1,000 keys. */
const auditSeed = { entries: 500_000, keys: 1_000, heavyKeyEntries: 5_000 };

/**
 * The audit log reads: a chat's entries for its owner, and the site owner's by key (a leaked
 * key's 5,000 entries among 500,000) and unfiltered.
 */
/** Workspace tool calls of the seed: closed ones spread over chats and agents, a few to start. */
const toolCallSeed = {
  calls: 200_000,
  chats: 2_000,
  agents: 100,
  heavyAgentCalls: 50_000,
  pending: 20,
  /** Chat files, one linked to each of as many chats. */
  files: 20_000,
};

/**
 * The agent's stream (its snapshot, its resume, the rendering of its events) and a turn's look at
 * its calls, on toolCallSeed's calls (their events written by the insert trigger).
 */
async function toolCallPlans(
  client: pg.Client,
): Promise<{ plans: ChatPlan[]; settle: NestedPlan[]; events: number }> {
  const agents = await client.query<{ id: string }>(
    `SELECT id FROM workspace_agents ORDER BY id LIMIT ${toolCallSeed.agents}`,
  );
  const heavy = agents.rows[0]!.id;
  // The heavy agent gets heavyAgentCalls of the calls, the other agents share the rest.
  await client.query(
    `WITH c AS (SELECT id, row_number() OVER (ORDER BY id) AS n FROM chats WHERE NOT archived
                ORDER BY id LIMIT $4),
     a AS (SELECT id, row_number() OVER (ORDER BY id) - 1 AS n FROM unnest($2::uuid[]) AS u(id))
     INSERT INTO chat_tool_calls (chat_id, agent_id, tool_call_id, tool_name, args, state, session_id,
       result, settled, created_at, started_at, deadline_at, closed_at)
     SELECT c.id, CASE WHEN g <= $3 THEN $1::uuid ELSE a.id END, 'call_' || g, 'execute',
       '{"command":"make test"}', 'completed', gen_random_uuid(), '{"exit_code":0}', true,
       now() - interval '1 hour', now() - interval '1 hour', now(), now()
     FROM generate_series(1, $5::int) g
     JOIN c ON c.n = 1 + g % $4
     JOIN a ON a.n = g % $6`,
    [
      heavy,
      agents.rows.map((r) => r.id),
      toolCallSeed.heavyAgentCalls,
      toolCallSeed.chats,
      toolCallSeed.calls,
      agents.rows.length,
    ],
  );
  const chat = await client.query<{ id: string }>(
    "SELECT chat_id AS id FROM chat_tool_calls WHERE agent_id = $1 ORDER BY id LIMIT 1",
    [heavy],
  );
  const chatId = chat.rows[0]!.id;
  await client.query(
    `INSERT INTO chat_tool_calls (chat_id, agent_id, tool_call_id, tool_name, args, deadline_at)
     SELECT $1, $2, 'open_' || g, 'read_file', '{"path":"README.md"}', now() + interval '1 minute'
     FROM generate_series(1, $3::int) g`,
    [chatId, heavy, toolCallSeed.pending],
  );
  // Files linked to chats, and three versions of the target chat's plan.md among them.
  await client.query(
    `WITH c AS MATERIALIZED (
       SELECT gen_random_uuid() AS fid, id, owner_id, organization_id FROM chats ORDER BY id LIMIT $1),
     f AS (INSERT INTO chat_files (id, owner_id, organization_id, name, mimetype, data)
           SELECT fid, owner_id, organization_id, 'notes.txt', 'text/plain', '\\x78' FROM c)
     INSERT INTO chat_file_links (chat_id, file_id) SELECT id, fid FROM c`,
    [toolCallSeed.files],
  );
  await client.query(
    `WITH c AS MATERIALIZED (
       SELECT gen_random_uuid() AS fid, c.id, c.owner_id, c.organization_id, v
       FROM chats c, generate_series(1, 3) v WHERE c.id = $1),
     f AS (INSERT INTO chat_files (id, owner_id, organization_id, name, mimetype, data)
           SELECT fid, owner_id, organization_id, 'plan.md', 'text/markdown', convert_to('# Plan ' || v, 'UTF8') FROM c)
     INSERT INTO chat_file_links (chat_id, file_id, created_at)
     SELECT id, fid, now() - (3 - v) * interval '1 minute' FROM c`,
    [chatId],
  );
  await client.query("VACUUM (ANALYZE) chat_files");
  await client.query("VACUUM (ANALYZE) chat_file_links");
  await client.query("VACUUM (ANALYZE) chat_tool_calls");
  await client.query("ANALYZE chat_events");
  const events = await client.query<{ xid: string; id: number; n: number }>(
    `SELECT xid::text AS xid, id, count(*) OVER ()::int AS n FROM chat_events
     WHERE payload ->> 'agent_id' = $1 AND kind IN ('tool_call', 'tool_call_canceled')
     ORDER BY chat_events.xid, id`,
    [heavy],
  );
  const middle = events.rows[Math.floor(events.rows.length / 2)]!;
  const head = events.rows[events.rows.length - 1]!;
  const ids = await client.query<{ id: number }>(
    "SELECT id FROM chat_tool_calls WHERE agent_id = $1 ORDER BY id DESC LIMIT 50",
    [heavy],
  );
  const plans: ChatPlan[] = [
    {
      name: "ListPendingChatToolCallsByAgentID",
      why: "an agent's stream opening without a cursor: the calls waiting for it",
      shows: `an agent with ${toolCallSeed.heavyAgentCalls.toLocaleString("en")} answered calls and ${toolCallSeed.pending} pending, page of 500`,
      query: await capturedQuery(listPendingChatToolCallsByAgentID, {
        agent_id: heavy,
        after_id: 0,
        page_limit: 500,
      }),
    },
    {
      name: "ListChatEventsByAgentInRange",
      why: "an agent's stream reconnecting with Last-Event-ID",
      shows: `the same agent (${events.rows[0]!.n.toLocaleString("en")} events), from the middle of its events to the head, page of 500`,
      query: await capturedQuery(listChatEventsByAgentInRange, {
        agent_id: heavy,
        after_xid: middle.xid,
        after_id: middle.id,
        until_xid: head.xid,
        until_id: head.id,
        page_limit: 500,
      }),
    },
    {
      name: "ListChatToolCallsByIDs",
      why: "rendering a batch of an agent's tool_call events",
      shows: "50 calls",
      query: await capturedQuery(listChatToolCallsByIDs, { ids: ids.rows.map((r) => r.id) }),
    },
    {
      name: "GetChatPlanFileByChatID",
      why: "a plan-mode write_file, edit_files or read_file of plan.md",
      shows: `a chat with 3 versions of its plan.md, among ${toolCallSeed.files.toLocaleString("en")} linked files`,
      allow: { sort: "the newest of a chat's few files named plan.md (a top-1 over 3 here)" },
      query: await capturedQuery(getChatPlanFileByChatID, { chat_id: chatId }),
    },
  ];
  // A turn waiting for that chat's open calls: its lease, then the settle's statements.
  const lease = await client.query<{ started_at: string }>(
    `UPDATE chats SET status = 'running', worker_id = $2, started_at = now(), heartbeat_at = now()
     WHERE id = $1 RETURNING started_at::text`,
    [chatId, workerId],
  );
  const settle = (
    await nestedPlanTrees(client, "SELECT * FROM chat_run_settle_tool_calls($1, $2, $3)", [
      chatId,
      workerId,
      lease.rows[0]!.started_at,
    ])
  ).filter(({ text: n }) => /chat_tool_calls/.test(n));
  return { plans, settle, events: events.rows[0]!.n };
}

async function auditPlans(client: pg.Client): Promise<ChatPlan[]> {
  const heavyKey = "leakedkey0";
  await client.query(
    `WITH c AS (SELECT id, owner_id, row_number() OVER (ORDER BY id) AS n FROM chats),
     total AS (SELECT count(*) AS n FROM c)
     INSERT INTO audit_logs (actor_user_id, api_key_id, action, chat_id, detail, time)
     SELECT c.owner_id,
       CASE WHEN g % ($2::int / $3::int) = 0 THEN $1 ELSE 'key' || lpad((g % $4::int)::text, 7, '0') END,
       'message_send', c.id, jsonb_build_object('message_id', g),
       now() - ($2::int - g) * interval '1 second'
     FROM generate_series(1, $2::int) g, total JOIN c ON true
     WHERE c.n = 1 + g % total.n`,
    [heavyKey, auditSeed.entries, auditSeed.heavyKeyEntries, auditSeed.keys],
  );
  await client.query("VACUUM (ANALYZE) audit_logs");
  const { rows } = await client.query<{ chat_id: string; owner_id: string }>(
    `SELECT a.chat_id, c.owner_id FROM audit_logs a JOIN chats c ON c.id = a.chat_id
     GROUP BY a.chat_id, c.owner_id ORDER BY count(*) DESC LIMIT 1`,
  );
  const busiest = rows[0]!;
  return [
    {
      name: "ListAuditLogsByChatID",
      why: "GET /{chat}/audit, the first page",
      shows: "the chat with the most entries, limit 51",
      query: await capturedQuery(listAuditLogsByChatID, {
        chat_id: busiest.chat_id,
        owner_id: busiest.owner_id,
        after_id: null,
        page_limit: 51,
      }),
    },
    {
      name: "ListAuditLogs: one key",
      why: "GET /audit?api_key_id= (a key that leaked), the first page",
      shows: `a key with ${auditSeed.heavyKeyEntries.toLocaleString("en")} entries, limit 51`,
      query: await capturedQuery(listAuditLogs, {
        api_key_id: heavyKey,
        chat_id: null,
        after_id: null,
        page_limit: 51,
      }),
    },
    {
      name: "ListAuditLogs",
      why: "GET /audit, the first page",
      shows: "limit 51",
      query: await capturedQuery(listAuditLogs, {
        api_key_id: null,
        chat_id: null,
        after_id: null,
        page_limit: 51,
      }),
    },
  ];
}

/** Chats bound to one agent in the context plans. */
const contextChats = 1_000;

/**
 * Workspace context on the seeded chats: an agent with a snapshot, 1,000 unarchived chats bound to
 * it and pinned to that snapshot; the marking a changed push runs (inside its trigger) and a
 * turn's read of a chat's pinned context.
 */
async function contextPlans(
  client: pg.Client,
): Promise<{ marking: NestedPlan[]; contextFiles: NestedPlan[]; plans: ChatPlan[] }> {
  const agent = await client.query<{ id: string }>(
    "SELECT id FROM workspace_agents ORDER BY id LIMIT 1",
  );
  const agentId = agent.rows[0]!.id;
  const resources = (v: string) =>
    JSON.stringify([
      { source: "AGENTS.md", kind: "instruction_file", body: `rules ${v}` },
      { source: "skills/a/SKILL.md", kind: "skill", body: "a skill" },
      { source: ".mcp.json", kind: "mcp_config", body: "{}" },
    ]);
  await client.query("SELECT workspace_agent_context_push($1, $2::jsonb, NULL)", [
    agentId,
    resources("1"),
  ]);
  const chats = await client.query<{ id: string }>(
    `UPDATE chats c SET agent_id = $1 FROM (
       SELECT id FROM chats WHERE NOT archived ORDER BY md5(id::text || 'context') LIMIT ${contextChats}
     ) p WHERE c.id = p.id RETURNING c.id`,
    [agentId],
  );
  for (const { id } of chats.rows) {
    await client.query("SELECT chat_context_pin($1, $2, NULL, 'context_pin')", [id, agentId]);
  }
  await client.query("ANALYZE chats; ANALYZE chat_context_resources");
  const marking = (
    await nestedPlanTrees(
      client,
      "SELECT * FROM workspace_agent_context_push($1, $2::jsonb, NULL)",
      [agentId, resources("2")],
    )
  ).filter(
    ({ text: n }) =>
      (n.includes("array_agg(l.id)") && n.includes("FOR NO KEY UPDATE")) ||
      n.includes("WITH compared AS"),
  );
  // Context files in a chat with a long history: the clear, and the copy to a new subagent.
  const longChat = chats.rows[0]!.id;
  await client.query(
    `INSERT INTO chat_messages (chat_id, role, content, visibility)
     SELECT $1, 'user', jsonb_build_array(jsonb_build_object('type', 'context-file',
       'context_file_path', 'AGENTS.md', 'context_file_content', 'rules')), 'model'
     FROM generate_series(1, 2)`,
    [longChat],
  );
  await client.query(
    `INSERT INTO chat_messages (chat_id, role, content)
     SELECT $1, 'assistant', jsonb_build_array(jsonb_build_object('type', 'text', 'text', 'm' || i))
     FROM generate_series(1, 10000) i`,
    [longChat],
  );
  await client.query("ANALYZE chat_messages");
  const owner = await client.query<{ owner_id: string }>(
    "SELECT owner_id FROM chats WHERE id = $1",
    [longChat],
  );
  const contextFiles = [
    ...(await nestedPlanTrees(client, "SELECT * FROM chat_context_files_clear($1, $2)", [
      agentId,
      longChat,
    ])),
    ...(await nestedPlanTrees(
      client,
      'SELECT chat_create($1, NULL, NULL, NULL, $2, NULL, NULL, NULL, NULL, NULL, NULL, \'[{"type": "text", "text": "subagent"}]\', NULL)',
      [owner.rows[0]!.owner_id, longChat],
    )),
  ].filter(
    ({ text: n }) =>
      n.includes("context-file") &&
      !n.includes(
        "INSERT INTO chat_messages (chat_id, role, content, visibility)\n  SELECT v_chat.id",
      ),
  );
  return {
    marking,
    contextFiles,
    plans: [
      {
        name: "ListChatContextResourcesForPromptByChatID",
        why: "the start of every turn of a chat bound to a workspace",
        shows: "a chat with 3 pinned resources",
        allow: { sort: "a chat's handful of pinned resources, instruction files before skills" },
        query: await capturedQuery(listChatContextResourcesForPromptByChatID, {
          chat_id: chats.rows[0]!.id,
        }),
      },
    ],
  };
}

/** Long uuid[] literals (a page of ids) shortened, so the plan stays readable. */
/** The cost data set for the plans: a tenth of `npm run bench -- cost`'s, seeded in ~25 s. */
const costSeed = { users: 100, chats: 10_000, heavyChats: 200 };

/**
 * The cost rollups and the spend check, with the routes' arguments: the default window (30 UTC
 * days, midnight to midnight: the daily rollup alone) and the same length ending at a time of day
 * (the partial days read from chat_messages).
 */
/** The cost pages order sums (by cost, then kind): an order of aggregates, which no index holds. */
const costSort: PlanAllowances = {
  sort: "sums ordered by cost: the order of aggregates, which no index holds",
};

async function costPlans(client: pg.Client, seeded: SeededCosts): Promise<ChatPlan[]> {
  const dayMs = 86_400_000;
  const end = Math.floor(Date.now() / dayMs) * dayMs + dayMs;
  const aligned = {
    start_date: new Date(end - 30 * dayMs).toISOString(),
    end_date: new Date(end).toISOString(),
  };
  const partial = {
    start_date: new Date(end - 30 * dayMs - dayMs / 2).toISOString(),
    end_date: new Date(end - dayMs / 2).toISOString(),
  };
  const heavy = `heavy user (${seeded.heavyChatIds.length.toLocaleString("en")} chats)`;
  const { rows } = await client.query<{ id: string; n: number }>(
    `SELECT p.id, count(*)::int AS n FROM chats p JOIN chats c ON c.root_chat_id = p.id
     WHERE p.owner_id = $1 GROUP BY p.id ORDER BY n DESC, p.id LIMIT 1`,
    [seeded.heavyUserId],
  );
  const root = rows[0]!;
  return [
    {
      name: "ListChatCostSummaryByOwner: default window",
      why: "GET /api/experimental/chats/cost/{user}/summary",
      shows: `${heavy}, the 30 UTC days ending with today`,
      allow: costSort,
      query: await capturedQuery(listChatCostSummaryByOwner, {
        ...aligned,
        owner_id: seeded.heavyUserId,
      }),
    },
    {
      name: "ListChatCostSummaryByOwner: window ending at noon",
      why: "the same with bounds that are not UTC midnights",
      shows: `${heavy}, 30 days ending at noon UTC yesterday`,
      allow: costSort,
      query: await capturedQuery(listChatCostSummaryByOwner, {
        ...partial,
        owner_id: seeded.heavyUserId,
      }),
    },
    {
      name: "ListChatCostByUser: default window",
      why: "GET /api/experimental/chats/cost/users, the per-user page (site owners)",
      shows: `every user, the 30 UTC days ending with today, limit 50`,
      allow: costSort,
      query: await capturedQuery(listChatCostByUser, {
        ...aligned,
        search: "",
        limit: 50,
        offset: 0,
      }),
    },
    {
      name: "ListChatCostByUser: window ending at noon",
      why: "the same page with bounds that are not UTC midnights",
      shows: `every user, 30 days ending at noon UTC yesterday, limit 50`,
      allow: costSort,
      query: await capturedQuery(listChatCostByUser, {
        ...partial,
        search: "",
        limit: 50,
        offset: 0,
      }),
    },
    {
      name: "GetChatCostByChatID",
      why: "GET /api/experimental/chats/{chat}/cost",
      shows: `a root chat with ${root.n} subagent chats`,
      query: await capturedQuery(getChatCostByChatID, {
        chat_id: root.id,
        owner_id: seeded.heavyUserId,
      }),
    },
    {
      name: "GetChatUsageLimitStatus",
      why: "GET /usage-limits/status; the same function is the spend check of every create and send",
      shows: `${heavy}, monthly period`,
      query: await capturedQuery(getChatUsageLimitStatus, {
        user_id: seeded.heavyUserId,
        organization_id: seeded.organizationId,
      }),
    },
  ];
}

/** The plan tree of EXPLAIN (FORMAT JSON)'s one row. */
function jsonPlan(rows: Record<string, unknown>[]): PlanNode {
  return (rows[0]!["QUERY PLAN"] as { Plan: PlanNode }[])[0]!.Plan;
}

/** What fails the check, one line each: "<query>: <problem>" (support/plans.ts planProblems). */
const problems: string[] = [];

async function checkPlan(
  client: pg.Client,
  name: string,
  plan: PlanNode,
  allow: PlanAllowances | undefined,
): Promise<void> {
  const rows = await tableRows(client, seqScannedTables(plan));
  for (const p of planProblems(plan, rows, allow)) problems.push(`${name}: ${p.message}`);
}

/** What the check may find in the statements of each function whose plans are shown, and why. */
const nestedAllowances: Record<string, PlanAllowances> = {
  chat_runner_choose: {
    sort: "the live runners (a row per process, 10 here): the last one first, the others at random",
  },
  chat_run_settle_tool_calls: {
    sort: "one chat's answered calls (20 open here) and its last message's tool-call parts, in order",
  },
  workspace_agent_context_push: {
    sort: "the agent's chats (1,000 here) locked in id order, so concurrent pushes cannot deadlock",
  },
};

function shortenIdLists(plan: string): string {
  return plan.replace(
    /'\{([0-9a-f-]{36}|\d+)(,([0-9a-f-]{36}|\d+))+\}'/g,
    (m) => `'{<${m.split(",").length} ids>}'`,
  );
}

async function plans(): Promise<string> {
  return withScratchDatabase("pgchatd_explain", async (url) => {
    await migrate(url);
    const client = await connectClient(url, "pgchatd-explain");
    try {
      await client.query(seedSql);
      const version = (await client.query("SHOW server_version")).rows[0].server_version as string;
      const out: string[] = [
        `Generated by \`npm run explain\` on PostgreSQL ${version.split(" ")[0]} with ${seed.users.toLocaleString("en")} users, ` +
          `${(seed.users * seed.keysPerUser).toLocaleString("en")} API keys, ${seed.workspaces.toLocaleString("en")} workspaces ` +
          `and ${(seed.workspaces * seed.buildsPerWorkspace).toLocaleString("en")} builds/agents.`,
        "",
      ];
      // The statements run inside functions: text for the reader, their JSON plans checked.
      const nested = async (name: string, list: NestedPlan[]) => {
        for (const [i, { text, plan }] of list.entries()) {
          out.push("```", shortenIdLists(text.trim()), "```", "");
          await checkPlan(client, `${name}, statement ${i + 1}`, plan, nestedAllowances[name]);
        }
      };
      // The generic plan (PostgreSQL 16+) is the one a prepared statement settles on for any
      // argument, and it prints $n instead of sample values, so this document does not churn.
      const versionNum = Number(
        (await client.query("SHOW server_version_num")).rows[0].server_version_num,
      );
      for (const q of hot) {
        const args = Object.values((await client.query(q.args)).rows[0] as Record<string, unknown>);
        const explain = async (options: string) =>
          (versionNum >= 160000
            ? await client.query(`EXPLAIN (GENERIC_PLAN, ${options}) ${q.text}`)
            : await client.query({ text: `EXPLAIN (${options}) ${q.text}`, values: args })
          ).rows;
        const plan = (await explain("COSTS OFF")).map((r) => r["QUERY PLAN"]).join("\n");
        await checkPlan(client, q.name, jsonPlan(await explain("FORMAT JSON")), q.allow);
        out.push(`### ${q.name}`, "", `Hot because: ${q.why}.`, "", "```", plan, "```", "");
      }

      const seeded = await seedChats(client, { chats: seedChatCount });
      console.error(
        `seeded ${seeded.counts.chats.toLocaleString("en")} chats in ${(seeded.ms / 1000).toFixed(1)} s`,
      );
      out.push(
        "### The chat list",
        "",
        `On ${describeSeed(seeded)}. ` +
          "EXPLAIN (ANALYZE, BUFFERS) with sample arguments, planned for their values as node-pg's " +
          "unnamed statements are (NULL filters fold away); the timings change on every run.",
        "",
      );
      // Seq Scans and Sorts are noted for every section; rows removed by a filter where the
      // design promises none (`strict`).
      const explained = async (list: ChatPlan[], strict = false) => {
        for (const p of list) {
          // In a transaction that is rolled back: ANALYZE runs the statement, and some write.
          // The JSON plan for the check is planned again without running: the same plan, since
          // nothing between the two changes the statistics.
          await client.query("BEGIN");
          let rows: Record<string, unknown>[];
          let tree: PlanNode;
          try {
            if (p.generic) {
              await client.query("SET LOCAL plan_cache_mode = force_generic_plan");
              await client.query(`PREPARE explained AS ${p.query.text}`);
              const args = p.query.values.map((v) => sqlLiteral(client, v)).join(", ");
              const execute = `EXECUTE explained${args ? `(${args})` : ""}`;
              rows = (await client.query(`EXPLAIN (ANALYZE, BUFFERS) ${execute}`)).rows;
              tree = jsonPlan((await client.query(`EXPLAIN (FORMAT JSON) ${execute}`)).rows);
            } else {
              const { text, values } = p.query;
              rows = (await client.query(`EXPLAIN (ANALYZE, BUFFERS) ${text}`, values)).rows;
              tree = jsonPlan((await client.query(`EXPLAIN (FORMAT JSON) ${text}`, values)).rows);
            }
          } finally {
            await client.query("ROLLBACK");
            await client.query("DEALLOCATE ALL");
          }
          const plan = shortenIdLists(rows.map((r) => r["QUERY PLAN"]).join("\n"));
          await checkPlan(client, p.name, tree, p.allow);
          // Rows a filter drops where the design promises none: worth a look, not a failure.
          const removed = strict && plan.match(/\bRows Removed by Filter: [1-9]\d*/g);
          if (removed) console.error(`note: ${p.name} has ${[...new Set(removed)].join(", ")}`);
          out.push(
            `#### ${p.name}`,
            "",
            `Hot because: ${p.why}. Arguments: ${p.shows}.`,
            "",
            "```",
            plan,
            "```",
            "",
          );
        }
      };
      await explained(await chatPlans(client, seeded));

      const pullRequests = await pullRequestPlans(client, seeded);
      out.push(
        "### Pull-request status",
        "",
        "On the chats above and their diff statuses. EXPLAIN (ANALYZE, BUFFERS) with sample " +
          "arguments, as for the chat list.",
        "",
      );
      await explained(pullRequests.plans);
      out.push(
        "#### chat_diff_statuses_claim",
        "",
        `Hot because: every refresher claims a batch every poll. With ${staleReferences.toLocaleString("en")} ` +
          "stale references among the diff statuses above, a batch of 20, as auto_explain reports it " +
          "from inside the function:",
        "",
      );
      await nested("chat_diff_statuses_claim", pullRequests.claim);

      const messages = await seedMessages(client);
      console.error(
        `seeded ${messages.counts.messages.toLocaleString("en")} messages in ${(messages.ms / 1000).toFixed(1)} s`,
      );
      out.push(
        "### Messages and prompts",
        "",
        `On ${describeMessages(messages)}. ` +
          "EXPLAIN (ANALYZE, BUFFERS) with sample arguments, as for the chat list. " +
          "A row removed by a filter here is reported on stderr, not failed.",
        "",
      );
      await seedStreamParts(client, messages.targetChatId);
      await explained(await messagePlans(client, messages), true);

      await client.query("ANALYZE chat_events");
      const events = await eventPlans(client, seeded, messages);
      out.push(
        "### Change events",
        "",
        `On the ${events.total.toLocaleString("en")} events the seeding above wrote through the ` +
          "triggers. EXPLAIN (ANALYZE, BUFFERS) with sample arguments, as for the chat list.",
        "",
      );
      await explained(events.plans);

      const runner = await runnerPlans(client, messages);
      out.push(
        "### The runner",
        "",
        `On the data above, with ${runnerState.pending} chats pending, ${runnerState.running.toLocaleString("en")} ` +
          `running on one runner, ${runnerState.requiresAction} in requires_action and ` +
          `${runnerState.queued} queued messages. EXPLAIN (ANALYZE, BUFFERS) with sample arguments, ` +
          "writes rolled back.",
        "",
      );
      await explained(runner.plans);
      out.push(
        "#### chat_run_recover_chat",
        "",
        "Hot because: the recovery pass runs it for each candidate, in a transaction of its own. " +
          "Its lock of the one chat, as auto_explain reports it from inside the function:",
        "",
      );
      await nested("chat_run_recover_chat", runner.recover);
      out.push(
        "#### chat_run_claim",
        "",
        "Hot because: ClaimPendingChats runs it at every wake-up of a runner. Its statements, as " +
          "auto_explain reports them from inside the function (the look for any pending chat, the " +
          "runner's row, the claim of up to 50, the runner's row again; rolled back):",
        "",
      );
      await nested("chat_run_claim", runner.claim);
      out.push(
        "#### chat_runner_choose",
        "",
        "Hot because: the trigger of every chat that becomes pending runs it to pick the one " +
          "runner to wake. chat_runners holds a row per live runner (10 here): a scan is the plan.",
        "",
      );
      await nested("chat_runner_choose", runner.choose);
      out.push(
        "#### chat_run_model_key",
        "",
        "Hot because: GetChatForRunByID calls it at the start of every turn (the user's own key, " +
          "the newest message a user sent in the target chat, its API key), as auto_explain " +
          "reports its statements (the seed stores no user keys: the primary key (provider_id, " +
          "user_id) serves that lookup once there are some):",
        "",
      );
      await nested("chat_run_model_key", runner.modelKey);

      const toolCalls = await toolCallPlans(client);
      out.push(
        "### Workspace tools",
        "",
        `On ${toolCallSeed.calls.toLocaleString("en")} answered tool calls over ` +
          `${toolCallSeed.chats.toLocaleString("en")} chats and ${toolCallSeed.agents} agents (one ` +
          `with ${toolCallSeed.heavyAgentCalls.toLocaleString("en")}, and ${toolCallSeed.pending} ` +
          "pending), their events written by the insert trigger. EXPLAIN (ANALYZE, BUFFERS) with " +
          "sample arguments.",
        "",
      );
      await explained(toolCalls.plans);
      out.push(
        "#### chat_run_settle_tool_calls",
        "",
        "Hot because: a turn waiting for its agent runs it on every answer and every 2 s. The " +
          `chat above with its ${toolCallSeed.pending} open calls, as auto_explain reports the ` +
          "statements on chat_tool_calls from inside the function (rolled back):",
        "",
      );
      await nested("chat_run_settle_tool_calls", toolCalls.settle);

      const context = await contextPlans(client);
      out.push(
        "### Workspace context",
        "",
        `On the data above, with one agent whose snapshot ${contextChats.toLocaleString("en")} ` +
          "unarchived chats pinned.",
        "",
        "#### The marking of a changed push",
        "",
        "Hot because: every push whose content changed. The push " +
          "(workspace_agent_context_push → chat_context_mark_agent) locks the " +
          `agent's ${contextChats.toLocaleString("en")} chats in id order, then compares and marks ` +
          "exactly those in one statement, as auto_explain reports them from inside the push " +
          "(with the chats row triggers the marking fires):",
        "",
      );
      await nested("workspace_agent_context_push", context.marking);
      out.push(
        "#### Context files in a long history",
        "",
        "Hot because: an agent clears a chat's context files, and every subagent chat copies its " +
          "parent's. On a chat with 10,000 messages and 2 context-file messages, the clear and the " +
          "copy read those 2 through chat_messages_context_files_idx, as auto_explain reports " +
          "them from inside chat_context_files_clear and chat_create:",
        "",
      );
      await nested("chat_context_files_clear, chat_create", context.contextFiles);
      await explained(context.plans);

      const costs = await seedCosts(client, { ...costSeed, progress: false });
      console.error(
        `seeded ${costs.counts.messages.toLocaleString("en")} cost messages in ${((costs.ms.messages + costs.ms.rollup) / 1000).toFixed(1)} s`,
      );
      await client.query("SELECT chat_usage_limits_set_config(NULL, 5000000, 'month')");
      out.push(
        "### Cost and spend limits",
        "",
        `On ${describeCostSeed(costs)}, a monthly limit set. EXPLAIN (ANALYZE, BUFFERS) with ` +
          "sample arguments, as for the chat list. `npm run bench -- cost` measures the same " +
          "reads on ten times the data.",
        "",
      );
      await explained(await costPlans(client, costs));

      const housekeeping = await housekeepingPlans(client, seeded);
      out.push(
        "### Housekeeping and notifications",
        "",
        `On the data above with ${housekeepingSeed.notifications.toLocaleString("en")} notifications, ` +
          "a tenth of the unpinned roots made idle for 60 days and half of those archived, and " +
          `${housekeepingSeed.files.toLocaleString("en")} files uploaded 60 days ago, half of them ` +
          "linked. EXPLAIN (ANALYZE, BUFFERS) with sample arguments, writes rolled back. " +
          "`npm run bench -- housekeeping` measures the job on 1,000,000 chats.",
        "",
      );
      await explained(housekeeping.plans);
      out.push(
        "#### chat_retention_purge_files",
        "",
        "Hot because: every housekeeping run while retention is on. A batch of 500, as " +
          "auto_explain reports it from inside the function (rolled back):",
        "",
      );
      await nested("chat_retention_purge_files", housekeeping.files);

      const audit = await auditPlans(client);
      out.push(
        "### Audit log",
        "",
        `On ${auditSeed.entries.toLocaleString("en")} entries over the chats above, made with ` +
          `${auditSeed.keys.toLocaleString("en")} keys. EXPLAIN (ANALYZE, BUFFERS) with sample arguments.`,
        "",
      );
      await explained(audit);
      return out.join("\n");
    } finally {
      await client.end();
    }
  });
}

const started = performance.now();
const text = await plans();
const file = path.resolve("docs/sql.md");
const doc = await fs.readFile(file, "utf8");
const begin = "<!-- PLANS:BEGIN -->";
const end = "<!-- PLANS:END -->";
const start = doc.indexOf(begin);
const stop = doc.indexOf(end);
if (start < 0 || stop < 0) throw new Error(`docs/sql.md lacks the ${begin} / ${end} markers`);
let failed = false;
if (process.argv.includes("--check")) {
  const diff = plansDiff(doc.slice(start + begin.length, stop), text);
  if (diff) {
    failed = true;
    console.error(
      `docs/sql.md's plans are stale (the diff compares the queries and what each plan reads ` +
        `through which index; lines starting with + are what the queries do now):\n${diff}\nRun \`npm run explain\` and commit docs/sql.md.`,
    );
  } else {
    console.error("docs/sql.md's plans are up to date");
  }
} else if (process.argv.includes("--print")) {
  console.log(text);
} else {
  await fs.writeFile(file, `${doc.slice(0, start + begin.length)}\n${text}\n${doc.slice(stop)}`);
  console.log(`updated ${file}`);
}
if (problems.length > 0) {
  failed = true;
  console.error(
    `${problems.length} hot ${problems.length === 1 ? "plan fails" : "plans fail"} the check ` +
      `(docs/sql.md, "Plans of the hot queries"):\n${problems.map((p) => `  ${p}`).join("\n")}`,
  );
}
console.error(`explain: ${((performance.now() - started) / 1000).toFixed(0)} s`);
if (failed) process.exitCode = 1;
