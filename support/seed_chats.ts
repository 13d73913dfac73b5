/*
 * A realistic chat list to measure against, seeded with set-based SQL (INSERT ... SELECT over
 * generate_series) in a handful of statements, so 100k chats take seconds. Shared by
 * `npm run bench -- list` and `npm run explain`.
 *
 * Shape (defaults): 100,000 chats over 1,000 owners in one organization, plus one heavy owner
 * with 10,000. Per owner: ~80% roots and ~20% children of one of the owner's roots (the
 * chats_100_check_family trigger derives root_chat_id from the parent), 5 pinned roots
 * (pin_order 1..5), ~10% of the chats archived as whole families (never a pinned root), labels on
 * ~30% ({"team": "t<k>", "env": "prod"|"dev"}), a diff status on ~5% (unique pull request URLs),
 * assistant messages on ~20% (half of them read, so has_unread is mixed), ~30% of the roots bound
 * to one of the owner's 3 workspaces, updated_at spread over the last 90 days.
 *
 * Rows go through the real triggers. Ids are derived (md5 of owner index and position), so a
 * child's parent is computed, not looked up; the other values come from random() after setseed,
 * so one size always seeds the same data.
 */
import cliProgress from "cli-progress";
import type pg from "pg";
import type { ListChatsByOwnerArgs } from "../src/generated/chats.ts";

export interface SeedChatsOptions {
  /** Chats in all, the heavy owner's included. Default 100,000. */
  chats?: number;
  /** Owners besides the heavy one. Default 1,000. */
  owners?: number;
  /** The heavy owner's chats: default 10,000, at most half of `chats`. */
  heavyChats?: number;
  /** Draw a progress bar on stderr (when it is a terminal). Default true. */
  progress?: boolean;
}

export interface SeededChats {
  organizationId: string;
  /** An owner with the usual number of chats. */
  typicalOwnerId: string;
  heavyOwnerId: string;
  owners: number;
  typicalOwnerChats: number;
  heavyOwnerChats: number;
  counts: {
    chats: number;
    roots: number;
    children: number;
    pinned: number;
    archived: number;
    labeled: number;
    withWorkspace: number;
    diffStatuses: number;
    assistantMessages: number;
    unread: number;
  };
  /** Wall time of the seeding, ANALYZE included. */
  ms: number;
}

/** Statements insert about this many chats each (the progress bar moves once per statement). */
const chatsPerStatement = 25_000;
const pinsPerOwner = 5;
const rootShare = 0.8;
const archivedShare = 0.1;
const workspacesPerOwner = 3;

const titles = [
  "Fix flaky test in",
  "Add pagination to",
  "Investigate slow query in",
  "Refactor the auth middleware of",
  "Upgrade dependencies of",
  "Write docs for",
  "Review pull request on",
  "Debug the CI failure of",
];
const titleExpr = `(ARRAY[${titles.map((t) => `'${t}'`).join(", ")}])[1 + floor(random() * ${titles.length})::int]`;

const labelsExpr = `CASE WHEN random() < 0.3 THEN jsonb_build_object(
    'team', 't' || (1 + floor(random() * 20))::int,
    'env', CASE WHEN random() < 0.5 THEN 'prod' ELSE 'dev' END)
  ELSE '{}'::jsonb END`;

const statusExpr = `(CASE WHEN random() < 0.85 THEN 'completed' WHEN random() < 0.5 THEN 'waiting'
  ELSE 'error' END)::chat_status`;

/**
 * The seeds' progress bar on stderr (`what` is "chats", "messages"): seeding a large data set
 * takes a while, and the bar says which statement it is at.
 */
export function seedProgressBar(what: string): cliProgress.SingleBar {
  return new cliProgress.SingleBar(
    {
      format: `seeding ${what} [{bar}] {percentage}% | {value}/{total} rows | {step}`,
      hideCursor: true,
      clearOnComplete: true,
      noTTYOutput: false,
    },
    cliProgress.Presets.shades_classic,
  );
}

/**
 * The id of the default model config, which seeded chats and messages point at; migrations
 * create it, so its absence means an unmigrated database.
 */
export async function defaultModelConfigId(client: pg.ClientBase): Promise<string> {
  const model = await client.query<{ id: string }>(
    "SELECT id FROM chat_model_configs WHERE is_default",
  );
  const modelId = model.rows[0]?.id;
  if (!modelId) throw new Error("no default model config: is the database migrated?");
  return modelId;
}

/**
 * Seeds the chat list into a migrated database through `client` (one connection: the seed uses
 * temporary tables and setseed). Runs VACUUM ANALYZE on the tables it wrote.
 */
export async function seedChats(
  client: pg.ClientBase,
  opts: SeedChatsOptions = {},
): Promise<SeededChats> {
  const started = performance.now();
  const total = Math.max(2, Math.floor(opts.chats ?? 100_000));
  const owners = Math.max(1, Math.floor(opts.owners ?? 1_000));
  const heavy = Math.min(opts.heavyChats ?? 10_000, Math.floor(total / 2));
  const perOwner = Math.floor((total - heavy) / owners);
  const remainder = total - heavy - perOwner * owners;

  const bar = seedProgressBar("chats");
  // Rows written in all: chats, then diff statuses, messages, read cursors, archived families.
  const estimate = Math.round(total * (1 + 0.05 + 0.3 + 0.1 + 0.1));
  let done = 0;
  const show = opts.progress ?? true;
  if (show) bar.start(estimate, 0, { step: "owners" });
  const step = async (name: string, sql: string, values: unknown[] = []) => {
    if (show) bar.update(done, { step: name });
    const r = await client.query(sql, values);
    done += r.rowCount ?? 0;
    if (show) bar.update(Math.min(done, estimate), { step: name });
    return r;
  };

  try {
    await client.query("SELECT setseed(0.42)");
    const modelId = await defaultModelConfigId(client);
    const org = await client.query<{ id: string }>(
      "INSERT INTO organizations (name) VALUES ('chat-list-bench') RETURNING id",
    );
    const orgId = org.rows[0]!.id;

    // Owners: how many roots, children and pins each gets. Index 0 is the heavy owner.
    await client.query(`
      CREATE TEMP TABLE seed_owners ON COMMIT PRESERVE ROWS AS
      SELECT idx, md5('pgchatd-seed-owner:' || idx)::uuid AS id, n AS chats,
        r AS roots, n - r AS children, least(${pinsPerOwner}, r) AS pins
      FROM generate_series(0, ${owners}) idx
      CROSS JOIN LATERAL (SELECT CASE WHEN idx = 0 THEN ${heavy}
        ELSE ${perOwner} + (idx <= ${remainder})::int END AS n) n
      CROSS JOIN LATERAL (SELECT CASE WHEN n = 0 THEN 0
        ELSE greatest(1, round(n * ${rootShare})::int) END AS r) r`);
    await client.query("ALTER TABLE seed_owners ADD PRIMARY KEY (idx)");
    await step(
      "users",
      `INSERT INTO users (id, username, name)
       SELECT id, CASE idx WHEN 0 THEN 'heavy-owner' ELSE 'owner-' || idx END,
         CASE idx WHEN 0 THEN 'Heavy Owner' ELSE 'Owner ' || idx END
       FROM seed_owners`,
    );
    await step(
      "members",
      `INSERT INTO organization_members (organization_id, user_id) SELECT $1, id FROM seed_owners`,
      [orgId],
    );
    await step(
      "workspaces",
      `INSERT INTO workspaces (id, organization_id, owner_id, name)
       SELECT md5('pgchatd-seed-ws:' || o.idx || ':' || w)::uuid, $1, o.id, 'ws-' || w
       FROM seed_owners o, generate_series(1, ${workspacesPerOwner}) w`,
      [orgId],
    );
    done = 0;

    // Chats, in chunks of owners: the roots of a chunk, then their children (a child's parent
    // must exist when the family trigger looks it up). The heavy owner is a chunk of its own.
    const chunks: [number, number][] = [[0, 0]];
    const ownersPerChunk = Math.max(1, Math.floor(chatsPerStatement / Math.max(1, perOwner)));
    for (let lo = 1; lo <= owners; lo += ownersPerChunk) {
      chunks.push([lo, Math.min(owners, lo + ownersPerChunk - 1)]);
    }
    for (const [lo, hi] of chunks) {
      const who = lo === 0 ? "heavy owner" : `owners ${lo}-${hi}`;
      // OFFSET 0 keeps each row's random() draws in one place (the subquery is not flattened).
      await step(
        `roots of ${who}`,
        `INSERT INTO chats (id, owner_id, organization_id, workspace_id, last_model_config_id,
           title, status, client_type, created_at, updated_at, pin_order, labels,
           last_turn_summary)
         SELECT md5('pgchatd-seed-root:' || s.idx || ':' || s.g)::uuid, s.owner_id, $1,
           s.workspace_id, $2, s.title || ' repo' || s.k, s.status, s.client_type,
           s.updated_at - random() * interval '10 days', s.updated_at,
           CASE WHEN s.g <= s.pins THEN s.g ELSE 0 END, s.labels,
           CASE WHEN s.status = 'completed' THEN 'Changed ' || s.k || ' files; tests pass.' END
         FROM (
           SELECT o.idx, o.id AS owner_id, o.pins, g,
             CASE WHEN random() < 0.3 THEN md5('pgchatd-seed-ws:' || o.idx || ':'
               || (1 + floor(random() * ${workspacesPerOwner}))::int)::uuid END AS workspace_id,
             ${titleExpr} AS title, (1 + floor(random() * 50))::int AS k,
             ${statusExpr} AS status,
             (CASE WHEN random() < 0.7 THEN 'ui' ELSE 'api' END)::chat_client_type AS client_type,
             now() - random() * interval '90 days' AS updated_at,
             ${labelsExpr} AS labels
           FROM seed_owners o CROSS JOIN LATERAL generate_series(1, o.roots) g
           WHERE o.idx BETWEEN $3 AND $4
           OFFSET 0
         ) s`,
        [orgId, modelId, lo, hi],
      );
      await step(
        `children of ${who}`,
        `INSERT INTO chats (id, owner_id, organization_id, workspace_id, build_id, agent_id,
           parent_chat_id, last_model_config_id, title, status, client_type, mode, created_at,
           updated_at, labels)
         SELECT md5('pgchatd-seed-child:' || s.idx || ':' || s.j)::uuid, s.owner_id,
           p.organization_id, p.workspace_id, p.build_id, p.agent_id, p.id, $1,
           'Subagent: ' || s.title, s.status, p.client_type, 'subagent',
           p.created_at + s.f1 * (now() - p.created_at) * s.f2,
           p.created_at + s.f1 * (now() - p.created_at), s.labels
         FROM (
           SELECT o.idx, o.id AS owner_id, j, 1 + floor(random() * o.roots)::int AS parent_g,
             ${titleExpr} AS title, ${statusExpr} AS status, random() AS f1, random() AS f2,
             ${labelsExpr} AS labels
           FROM seed_owners o CROSS JOIN LATERAL generate_series(1, o.children) j
           WHERE o.idx BETWEEN $2 AND $3
           OFFSET 0
         ) s
         JOIN chats p ON p.id = md5('pgchatd-seed-root:' || s.idx || ':' || s.parent_g)::uuid`,
        [modelId, lo, hi],
      );
    }

    await step(
      "diff statuses",
      `INSERT INTO chat_diff_statuses (chat_id, url, pull_request_state, pull_request_title,
         pull_request_draft, pr_number, git_branch, git_remote_origin, additions, deletions,
         changed_files, refreshed_at)
       SELECT s.id, 'https://github.com/acme/repo' || s.k || '/pull/' || s.n,
         s.state, 'PR ' || s.n || ' of repo' || s.k, s.state = 'open' AND random() < 0.2, s.n,
         'feature/' || s.n, 'https://github.com/acme/repo' || s.k || '.git',
         floor(random() * 500)::int, floor(random() * 200)::int, 1 + floor(random() * 30)::int,
         now() - random() * interval '1 day'
       FROM (
         SELECT c.id, c.n, 1 + c.n % 50 AS k,
           CASE WHEN random() < 0.6 THEN 'merged' WHEN random() < 0.6 THEN 'open'
             ELSE 'closed' END AS state
         FROM (
           SELECT id, row_number() OVER (ORDER BY id)::int AS n
           FROM (SELECT id FROM chats WHERE organization_id = $1 AND random() < 0.05 OFFSET 0) x
         ) c
         OFFSET 0
       ) s`,
      [orgId],
    );
    // Assistant messages only: a user message would move updated_at (chat_messages trigger).
    await step(
      "assistant messages",
      `INSERT INTO chat_messages (chat_id, role, content, visibility, model_config_id,
         input_tokens, output_tokens, total_tokens)
       SELECT c.id, 'assistant',
         jsonb_build_array(jsonb_build_object('type', 'text', 'text', 'Done with step ' || k)),
         'both', $2, 1200, 300, 1500
       FROM (
         SELECT id, 1 + (random() < 0.5)::int AS n FROM chats
         WHERE organization_id = $1 AND random() < 0.2
         OFFSET 0
       ) c
       CROSS JOIN LATERAL generate_series(1, c.n) k`,
      [orgId, modelId],
    );
    await step(
      "read cursors",
      `UPDATE chats c SET last_read_message_id = m.newest
       FROM (
         SELECT chat_id, max(id) AS newest FROM chat_messages GROUP BY chat_id
       ) m
       WHERE c.id = m.chat_id AND c.organization_id = $1 AND random() < 0.5`,
      [orgId],
    );
    // Whole families, as chat_archive leaves them; unpinned roots only. The share of roots is
    // raised so that ~10% of all chats end up archived (children are spread over pinned roots
    // too). An explicit updated_at keeps the archived list spread over time.
    const pinned = await client.query<{ roots: string; pins: string }>(
      "SELECT sum(roots) AS roots, sum(pins) AS pins FROM seed_owners",
    );
    const roots = Number(pinned.rows[0]!.roots);
    const pins = Number(pinned.rows[0]!.pins);
    const rootArchiveShare = roots > pins ? (archivedShare * roots) / (roots - pins) : 0;
    await client.query(
      `CREATE TEMP TABLE seed_archived ON COMMIT PRESERVE ROWS AS
       SELECT id FROM chats
       WHERE organization_id = $1 AND parent_chat_id IS NULL AND pin_order = 0
         AND random() < $2`,
      [orgId, rootArchiveShare],
    );
    await step(
      "archived families",
      `UPDATE chats c SET archived = true, updated_at = c.updated_at - interval '1 millisecond'
       WHERE c.organization_id = $1
         AND (c.id IN (SELECT id FROM seed_archived)
           OR c.root_chat_id IN (SELECT id FROM seed_archived))`,
      [orgId],
    );
    if (show) bar.update(done, { step: "VACUUM ANALYZE" });
    await client.query(
      "VACUUM (ANALYZE) chats, chat_messages, chat_diff_statuses, users, organization_members, workspaces",
    );
    if (show) {
      bar.setTotal(done);
      bar.update(done, { step: "done" });
    }

    const c = (
      await client.query(
        `SELECT count(*)::int AS chats,
           count(*) FILTER (WHERE parent_chat_id IS NULL)::int AS roots,
           count(*) FILTER (WHERE parent_chat_id IS NOT NULL)::int AS children,
           count(*) FILTER (WHERE pin_order > 0)::int AS pinned,
           count(*) FILTER (WHERE archived)::int AS archived,
           count(*) FILTER (WHERE labels <> '{}')::int AS labeled,
           count(*) FILTER (WHERE workspace_id IS NOT NULL)::int AS with_workspace,
           (SELECT count(*)::int FROM chat_diff_statuses d JOIN chats x ON x.id = d.chat_id
             WHERE x.organization_id = $1) AS diff_statuses,
           (SELECT count(*)::int FROM chat_messages m JOIN chats x ON x.id = m.chat_id
             WHERE x.organization_id = $1) AS messages,
           count(*) FILTER (WHERE EXISTS (
             SELECT 1 FROM chat_messages m WHERE m.chat_id = ch.id AND m.role = 'assistant'
               AND NOT m.deleted AND m.id > COALESCE(ch.last_read_message_id, 0)))::int AS unread
         FROM chats ch WHERE organization_id = $1`,
        [orgId],
      )
    ).rows[0] as Record<string, number>;
    const ids = await client.query<{ idx: number; id: string; chats: number }>(
      "SELECT idx, id, chats FROM seed_owners WHERE idx IN (0, 1) ORDER BY idx",
    );
    await client.query("DROP TABLE seed_owners, seed_archived");
    return {
      organizationId: orgId,
      heavyOwnerId: ids.rows[0]!.id,
      typicalOwnerId: ids.rows[1]!.id,
      owners: owners + 1,
      heavyOwnerChats: ids.rows[0]!.chats,
      typicalOwnerChats: ids.rows[1]!.chats,
      counts: {
        chats: c.chats!,
        roots: c.roots!,
        children: c.children!,
        pinned: c.pinned!,
        archived: c.archived!,
        labeled: c.labeled!,
        withWorkspace: c.with_workspace!,
        diffStatuses: c.diff_statuses!,
        assistantMessages: c.messages!,
        unread: c.unread!,
      },
      ms: performance.now() - started,
    };
  } finally {
    if (show) bar.stop();
  }
}

/** One line describing the seeded data set, for reports and docs/sql.md. */
export function describeSeed(s: SeededChats): string {
  const n = (x: number) => x.toLocaleString("en");
  const c = s.counts;
  return (
    `${n(c.chats)} chats over ${n(s.owners)} owners in one organization ` +
    `(typical owner ${n(s.typicalOwnerChats)}, heavy owner ${n(s.heavyOwnerChats)}): ` +
    `${n(c.roots)} roots, ${n(c.children)} children, ${n(c.pinned)} pinned, ` +
    `${n(c.archived)} archived, ${n(c.labeled)} labeled, ${n(c.diffStatuses)} diff statuses, ` +
    `${n(c.assistantMessages)} assistant messages (${n(c.unread)} chats unread)`
  );
}

/**
 * The arguments GET /api/experimental/chats passes to listChatsByOwner for `?limit=<pageLimit>`
 * (routes/chats.ts): unarchived roots, every filter NULL unless given.
 */
export function listChatsArgs(
  ownerId: string,
  over: Partial<ListChatsByOwnerArgs> = {},
): ListChatsByOwnerArgs {
  return {
    owner_id: ownerId,
    archived: false,
    after_id: null,
    title: null,
    has_unread: null,
    labels: null,
    pr: null,
    repo: null,
    pr_title: null,
    pr_status: null,
    diff_url: null,
    page_limit: 50,
    page_offset: 0,
    ...over,
  };
}

/**
 * The text and parameter values a generated query function sends for `args`, captured without a
 * database, so EXPLAIN runs exactly what the route runs (JSON parameters encoded the same way).
 */
export async function capturedQuery<A>(
  fn: (
    client: { query: (c: pg.QueryArrayConfig) => Promise<pg.QueryArrayResult> },
    args: A,
  ) => Promise<unknown>,
  args: A,
): Promise<{ text: string; values: unknown[] }> {
  let sent: pg.QueryArrayConfig | undefined;
  await fn(
    {
      query: async (config) => {
        sent = config;
        return { rows: [] } as unknown as pg.QueryArrayResult;
      },
    },
    args,
  );
  if (!sent) throw new Error("the query function sent no query");
  return { text: sent.text, values: sent.values ?? [] };
}

/**
 * The id of the root chat `fraction` of the way down the owner's unarchived list (in the list's
 * order), for a deep after_id cursor.
 */
export async function cursorAt(
  client: pg.ClientBase | pg.Pool,
  ownerId: string,
  fraction: number,
): Promise<{ id: string; position: number; of: number }> {
  const { rows } = await client.query<{ id: string; position: number; of: number }>(
    `SELECT id, position, of FROM (
       SELECT id, (row_number() OVER w)::int AS position, (count(*) OVER ())::int AS of
       FROM chats
       WHERE owner_id = $1 AND parent_chat_id IS NULL AND NOT archived
       WINDOW w AS (ORDER BY (pin_order > 0) DESC, (-pin_order) DESC, updated_at DESC, id DESC)
     ) l
     WHERE position = greatest(1, floor(of * $2::float8))::int`,
    [ownerId, fraction],
  );
  const row = rows[0];
  if (!row) throw new Error(`owner ${ownerId} has no unarchived root chats`);
  return row;
}

/** One organization with one member, for benchmarks that need a chat owner and nothing else. */
export async function seedOwner(
  db: pg.Pool | pg.Client,
  name = "bench",
): Promise<{ org: string; owner: string }> {
  const { rows } = await db.query<{ org: string; owner: string }>(
    `WITH o AS (INSERT INTO organizations (name) VALUES ($1) RETURNING id),
         u AS (INSERT INTO users (username, name) VALUES ($1, $1) RETURNING id),
         m AS (INSERT INTO organization_members (organization_id, user_id)
               SELECT o.id, u.id FROM o, u RETURNING organization_id, user_id)
    SELECT organization_id AS org, user_id AS owner FROM m`,
    [name],
  );
  return rows[0]!;
}
