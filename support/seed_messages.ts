/*
 * Chat messages to measure the history and prompt-history reads against, seeded with set-based
 * SQL (INSERT ... SELECT over generate_series), a few thousand rows per statement. Shared by
 * `npm run bench -- prompts` and `npm run explain`.
 *
 * Shape (defaults): one owner in one organization with 51 chats: a target chat of 20,000 messages
 * (10,000 of them user messages) and 50 others of 5,000 each, 270,000 messages in all.
 * Chats are created with the generated insertChat (chat_create), whose first message is the
 * chat's first user prompt; the rest go straight into chat_messages, through the real triggers,
 * so chat_prompts is filled by chat_messages__sync_prompt exactly as in production.
 *
 * Per chat, odd positions are user messages and even ones assistant (~90%) or tool (~10%)
 * messages. A user message's content is a JSON array of 1-3 parts: the first is text, the others
 * text or (~25%) a file part; ~3% have only whitespace text, ~0.5% are legacy rows whose content
 * is a JSON string. Any message is deleted with ~2% chance and model-only (visibility 'model')
 * with ~2%; ~1% of the visible user messages have visibility 'user'. Assistant content is one
 * text part of 170-400 bytes, tool content one tool-result part.
 *
 * Layout: "per-chat" (default) inserts each chat's messages in one run, so a chat's rows are
 * adjacent in the heap (a long conversation imported at once, or a lone active chat);
 * "interleaved" inserts every chat's messages in time slices, ordered by progress through the
 * chat, so the chats' rows interleave as they do when many chats are active at once.
 * random() runs after setseed, so one size and layout always seed the same data.
 */
import type pg from "pg";
import { insertChat } from "../src/generated/chats.ts";
import { defaultModelConfigId, seedProgressBar } from "./seed_chats.ts";

export type MessagesLayout = "per-chat" | "interleaved";

export interface SeedMessagesOptions {
  /** Messages in the target chat. Default 20,000 (10,000 user messages). */
  targetMessages?: number;
  /** Chats besides the target. Default 50. */
  otherChats?: number;
  /** Messages in each other chat. Default 5,000. */
  messagesPerChat?: number;
  layout?: MessagesLayout;
  /** Draw a progress bar on stderr. Default true. */
  progress?: boolean;
}

export interface SeededMessages {
  organizationId: string;
  ownerId: string;
  /** The chat with the most messages. */
  targetChatId: string;
  otherChatIds: string[];
  layout: MessagesLayout;
  counts: {
    chats: number;
    messages: number;
    user: number;
    assistant: number;
    tool: number;
    deleted: number;
    modelOnly: number;
    legacy: number;
    /** User messages with a file part. */
    withFile: number;
    /** Rows of chat_prompts (every chat). */
    prompts: number;
    targetMessages: number;
    targetUser: number;
    targetPrompts: number;
  };
  /** Wall time of the seeding, VACUUM ANALYZE included. */
  ms: number;
}

/** Rows per INSERT statement, about (the progress bar moves once per statement). */
const rowsPerStatement = 5_000;

const openings = [
  "Fix the flaky test in",
  "Why does the build fail in",
  "Add pagination to",
  "Explain the error from",
  "Refactor the handlers of",
  "Write a migration for",
  "Review the latest changes to",
  "Speed up the slow query in",
];
const arrayOf = (xs: string[]) =>
  `ARRAY[${xs.map((x) => `'${x.replaceAll("'", "''")}'`).join(", ")}]`;
const pick = (xs: string[]) => `(${arrayOf(xs)})[1 + floor(random() * ${xs.length})::int]`;
/** 30-240 characters of prompt. */
const promptTextExpr = `${pick(openings)} || ' module' || (1 + floor(random() * 40))::int || '. '
  || repeat('Keep the public API stable and add tests. ', floor(random() * 5)::int)`;
/** Whitespace-only text: the prompt history drops it. */
const blankExpr = `(ARRAY[' ', E'\\n', E'\\t  ', E'   \\n  '])[1 + floor(random() * 4)::int]`;

/**
 * One statement's rows: positions whose progress (k - 1) / n is in [$4, $5) of the chats with
 * idx in [$2, $3] of seed_msg_chats, in progress order (so a slice over many chats interleaves
 * them). Position 1, the chat's first prompt, was written by chat_create.
 */
const insertSql = `
INSERT INTO chat_messages (chat_id, created_at, role, content, visibility, deleted,
  model_config_id, created_by, input_tokens, output_tokens, total_tokens)
SELECT s.chat_id, now() - (s.n - s.k) * interval '10 seconds', s.role,
  CASE s.role
    WHEN 'user' THEN
      CASE WHEN s.r_kind < 0.005 THEN to_jsonb('Legacy prompt ' || s.k || ' of this chat')
      ELSE (
        SELECT jsonb_agg(
          CASE WHEN p = 1 OR random() >= 0.25 THEN jsonb_build_object('type', 'text', 'text',
            CASE WHEN s.r_kind < 0.035 THEN ${blankExpr}
              ELSE CASE WHEN p > 1 THEN E'\\n\\n' ELSE '' END || ${promptTextExpr} END)
          ELSE jsonb_build_object('type', 'file',
            'file_id', md5('pgchatd-seed-file:' || s.chat_id || ':' || s.k || ':' || p)::uuid)
          END ORDER BY p)
        FROM generate_series(1, s.parts) p
      ) END
    WHEN 'assistant' THEN jsonb_build_array(jsonb_build_object('type', 'text', 'text',
      'Done: ' || repeat('I updated the handler, ran the suite and all tests pass. ',
        3 + floor(random() * 5)::int)))
    ELSE jsonb_build_array(jsonb_build_object('type', 'tool-result', 'tool_call_id', 'call_' || s.k,
      'tool_name', 'run_tests', 'result', jsonb_build_object('output', 'ok ' || s.k),
      'is_error', false))
  END,
  (CASE WHEN s.r_vis < 0.02 THEN 'model' WHEN s.r_vis < 0.03 AND s.role = 'user' THEN 'user'
    ELSE 'both' END)::chat_message_visibility,
  s.r_del < 0.02,
  CASE WHEN s.role = 'assistant' THEN $1::uuid END,
  CASE WHEN s.role = 'user' THEN s.owner_id END,
  CASE WHEN s.role = 'assistant' THEN 1200 END,
  CASE WHEN s.role = 'assistant' THEN 300 END,
  CASE WHEN s.role = 'assistant' THEN 1500 END
FROM (
  SELECT c.id AS chat_id, c.idx, c.n, c.owner_id, k,
    (CASE WHEN k % 2 = 1 THEN 'user' WHEN random() < 0.1 THEN 'tool' ELSE 'assistant' END)
      ::chat_message_role AS role,
    1 + floor(random() * 3)::int AS parts, random() AS r_kind, random() AS r_vis,
    random() AS r_del
  FROM seed_msg_chats c
  CROSS JOIN LATERAL generate_series(
    greatest(2, floor($4::float8 * c.n)::int + 1), floor($5::float8 * c.n)::int) k
  WHERE c.idx BETWEEN $2 AND $3
  OFFSET 0
) s
ORDER BY (s.k - 1)::float8 / s.n, s.idx`;

/**
 * Seeds the messages into a migrated database through `client` (one connection: the seed uses a
 * temporary table and setseed). Runs VACUUM ANALYZE on the tables it wrote, so index-only scans
 * are possible.
 */
export async function seedMessages(
  client: pg.ClientBase,
  opts: SeedMessagesOptions = {},
): Promise<SeededMessages> {
  const started = performance.now();
  const target = Math.max(2, Math.floor(opts.targetMessages ?? 20_000));
  const others = Math.max(0, Math.floor(opts.otherChats ?? 50));
  const perChat = Math.max(2, Math.floor(opts.messagesPerChat ?? 5_000));
  const layout = opts.layout ?? "per-chat";
  const total = target + others * perChat;
  const show = opts.progress ?? true;
  const bar = seedProgressBar("messages");
  let done = 0;
  if (show) bar.start(total, 0, { step: "chats" });

  try {
    await client.query("SELECT setseed(0.17)");
    const modelId = await defaultModelConfigId(client);
    const orgId = (
      await client.query<{ id: string }>(
        "INSERT INTO organizations (name) VALUES ('prompts-bench') RETURNING id",
      )
    ).rows[0]!.id;
    const ownerId = (
      await client.query<{ id: string }>(
        "INSERT INTO users (username, name) VALUES ('prompts-owner', 'Prompts Owner') RETURNING id",
      )
    ).rows[0]!.id;
    await client.query(
      "INSERT INTO organization_members (organization_id, user_id) VALUES ($1, $2)",
      [orgId, ownerId],
    );

    // The chats, as the create route makes them; idx 0 is the target.
    const chatIds: string[] = [];
    for (let idx = 0; idx <= others; idx++) {
      chatIds.push(
        await createChat(
          client,
          ownerId,
          orgId,
          `Chat ${idx}: the CI pipeline fails on main, look into it.`,
        ),
      );
      done++;
    }
    await client.query(
      `CREATE TEMP TABLE seed_msg_chats ON COMMIT PRESERVE ROWS AS
       SELECT (i - 1)::int AS idx, id, CASE WHEN i = 1 THEN $2::int ELSE $3::int END AS n,
         $4::uuid AS owner_id
       FROM unnest($1::uuid[]) WITH ORDINALITY AS t(id, i)`,
      [chatIds, target, perChat, ownerId],
    );

    // Statements: [first idx, last idx, from progress, to progress, label].
    const statements: [number, number, number, number, string][] = [];
    if (layout === "interleaved") {
      const slices = Math.max(1, Math.ceil(total / rowsPerStatement));
      for (let s = 0; s < slices; s++) {
        statements.push([0, others, s / slices, (s + 1) / slices, `slice ${s + 1}/${slices}`]);
      }
    } else {
      for (let idx = 0; idx <= others; idx++) {
        const n = idx === 0 ? target : perChat;
        const parts = Math.max(1, Math.ceil(n / rowsPerStatement));
        for (let s = 0; s < parts; s++) {
          statements.push([
            idx,
            idx,
            s / parts,
            (s + 1) / parts,
            idx === 0 ? "target" : `chat ${idx}`,
          ]);
        }
      }
    }
    for (const [lo, hi, from, to, label] of statements) {
      if (show) bar.update(done, { step: label });
      const r = await client.query(insertSql, [modelId, lo, hi, from, to]);
      done += r.rowCount ?? 0;
    }
    if (show) bar.update(done, { step: "VACUUM ANALYZE" });
    await client.query("VACUUM (ANALYZE) chats, chat_messages, chat_prompts");
    if (show) bar.update(done, { step: "done" });

    const c = (
      await client.query(
        `SELECT count(*)::int AS messages,
           count(*) FILTER (WHERE role = 'user')::int AS "user",
           count(*) FILTER (WHERE role = 'assistant')::int AS assistant,
           count(*) FILTER (WHERE role = 'tool')::int AS tool,
           count(*) FILTER (WHERE deleted)::int AS deleted,
           count(*) FILTER (WHERE visibility = 'model')::int AS model_only,
           count(*) FILTER (WHERE jsonb_typeof(content) <> 'array')::int AS legacy,
           count(*) FILTER (WHERE role = 'user' AND jsonb_typeof(content) = 'array'
             AND content @> '[{"type": "file"}]')::int AS with_file,
           count(*) FILTER (WHERE chat_id = $2)::int AS target_messages,
           count(*) FILTER (WHERE chat_id = $2 AND role = 'user')::int AS target_user,
           (SELECT count(*)::int FROM chat_prompts WHERE chat_id = ANY ($1)) AS prompts,
           (SELECT count(*)::int FROM chat_prompts WHERE chat_id = $2) AS target_prompts
         FROM chat_messages WHERE chat_id = ANY ($1)`,
        [chatIds, chatIds[0]],
      )
    ).rows[0] as Record<string, number>;
    await client.query("DROP TABLE seed_msg_chats");
    return {
      organizationId: orgId,
      ownerId,
      targetChatId: chatIds[0]!,
      otherChatIds: chatIds.slice(1),
      layout,
      counts: {
        chats: chatIds.length,
        messages: c.messages!,
        user: c.user!,
        assistant: c.assistant!,
        tool: c.tool!,
        deleted: c.deleted!,
        modelOnly: c.model_only!,
        legacy: c.legacy!,
        withFile: c.with_file!,
        prompts: c.prompts!,
        targetMessages: c.target_messages!,
        targetUser: c.target_user!,
        targetPrompts: c.target_prompts!,
      },
      ms: performance.now() - started,
    };
  } finally {
    if (show) bar.stop();
  }
}

/**
 * Creates a chat as the create route does for an API client that sets only the first prompt
 * (chat_create writes it as the chat's first user message, through the triggers); returns its id.
 * The seed's chats and the prompts bench's write-side chat are made alike this way.
 */
export async function createChat(
  client: Parameters<typeof insertChat>[0],
  ownerId: string,
  organizationId: string,
  prompt: string,
): Promise<string> {
  const created = await insertChat(client, {
    owner_id: ownerId,
    organization_id: organizationId,
    workspace_id: null,
    model_config_id: null,
    parent_chat_id: null,
    client_type: "api",
    mode: null,
    plan_mode: null,
    labels: null,
    dynamic_tools: null,
    system_prompt: null,
    content: [{ type: "text", text: prompt }],
    api_key_id: null,
    mcp_server_ids: null,
  });
  return created!.id!;
}

/** One line describing the seeded messages, for reports and docs/sql.md. */
export function describeMessages(s: SeededMessages): string {
  const n = (x: number) => x.toLocaleString("en");
  const c = s.counts;
  return (
    `${n(c.messages)} messages in ${n(c.chats)} chats of one owner (${s.layout} layout): ` +
    `${n(c.user)} user (${n(c.withFile)} with a file part, ${n(c.legacy)} legacy non-array), ` +
    `${n(c.assistant)} assistant, ${n(c.tool)} tool; ${n(c.deleted)} deleted, ` +
    `${n(c.modelOnly)} model-only; ${n(c.prompts)} chat_prompts rows. ` +
    `Target chat: ${n(c.targetMessages)} messages, ${n(c.targetUser)} user messages, ` +
    `${n(c.targetPrompts)} prompts`
  );
}
