import { randomUUID } from "node:crypto";
import { isDeepStrictEqual } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureWebBuilt } from "../../src/server/web.ts";
import { startWatch, type Watch } from "../../src/watch/index.ts";
import { gen } from "../fixtures/index.ts";
import { captureLogger, testApp } from "../setup/app.ts";
import { testDb } from "../setup/db.ts";
import { checkResponse } from "../setup/openapi.ts";
import { type TestServer, testServer } from "../setup/server.ts";
import { openSse, type SseClient } from "../setup/sse.ts";

/*
 * Who may call what (docs/api.md "Authentication", "Chats", the "(owner)" sections): every route
 * of the app against every kind of caller, with real credentials and otherwise valid requests, so
 * a status is the access decision and nothing else. The matrix is keyed by the app's own route
 * table (app.routes): a route added without a row fails here, as does a row for a route that is
 * gone. Refused writes on a chat must leave the chat, its messages, queue, tool calls, pull-request
 * status and audit entries as they were.
 */

const principals = [
  "owner",
  "orgMember",
  "otherOrg",
  "siteOwner",
  "agent",
  "otherAgent",
  "expired",
  "malformed",
  "none",
] as const;
type Principal = (typeof principals)[number];
type Expected = Record<Principal, number>;

/**
 * Cells run this many at a time: enough to finish in seconds, few enough that the app's pool of
 * 10 (shared with the fixtures) is never the thing a cell waits for.
 */
const concurrency = 6;

/** One request of a cell, built for the principal that sends it. */
interface Req {
  path: string;
  body?: unknown;
  /** A body sent as it is (an upload), with its own Content-Type in `headers`. */
  raw?: string;
  headers?: Record<string, string>;
  /** The chat a refused request must leave unchanged. */
  chat?: string;
}

interface Row {
  expect: Expected;
  /** `refused`: the principal is expected to be refused (see onTarget). */
  request: (p: Principal, refused: boolean) => Req | Promise<Req>;
  /**
   * Runs after every other row: a request that would pull the ground from under the others
   * (a new agent session ends the one the tool-call rows present).
   */
  last?: boolean;
}

/** A user route: what each user gets; agent tokens, the expired key, garbage and no token get 401. */
function users(s: Pick<Expected, "owner" | "orgMember" | "otherOrg" | "siteOwner">): Expected {
  return { ...s, agent: 401, otherAgent: 401, expired: 401, malformed: 401, none: 401 };
}
/** Every user gets `status`: the route acts on the caller's own things only. */
const everyUser = (status: number) =>
  users({ owner: status, orgMember: status, otherOrg: status, siteOwner: status });
/** The resource (a chat, a file) is the owner's: anyone else's is 404, site owners included. */
const ownerOnly = (status: number) =>
  users({ owner: status, orgMember: 404, otherOrg: 404, siteOwner: 404 });
/** Site owners only: members get 403. */
const siteOwnerOnly = (status: number) =>
  users({ owner: 403, orgMember: 403, otherOrg: 403, siteOwner: status });
/** An agent route: user keys are not agent tokens (401); another agent's chat or call is 404. */
function agents(agent: number, otherAgent: number): Expected {
  return {
    owner: 401,
    orgMember: 401,
    otherOrg: 401,
    siteOwner: 401,
    agent,
    otherAgent,
    expired: 401,
    malformed: 401,
    none: 401,
  };
}
const everyone = (status: number) =>
  Object.fromEntries(principals.map((p) => [p, status])) as Expected;

/**
 * docs/api.md "Authentication": any failure (missing, malformed, unknown, wrong, expired) is this
 * same 401, so a caller learns nothing about which part was wrong.
 */
const unauthenticated = { message: "You must be authenticated with a valid API token." };

const chats = "/api/experimental/chats";
const agentApi = "/api/v2/workspaceagents";
const text = (s: string) => [{ type: "text", text: s }];
const contextResources = [
  { source: "AGENTS.md", kind: "instruction_file", body: "Run the tests first." },
];

let watch: Watch;
let t: Awaited<ReturnType<typeof testApp>>;
let org1: string;
let org2: string;
const tokens = {} as Record<Principal, string | undefined>;
const ids = {} as Record<"owner" | "orgMember" | "otherOrg" | "siteOwner", string>;
let agent1: { id: string; workspaceId: string; session: string };
let agent2: { id: string; workspaceId: string; session: string };
/** Read-only fixtures of the owner: a chat (pending), a file, a notification, a workspace to build. */
let ownerChat: string;
let ownerFile: string;
let ownerNotification: number;
let buildWorkspace: string;
/** Site-owner fixtures: a provider, one that takes users' keys, a model config, a group. */
let provider: string;
let userKeyProvider: string;
let modelConfig: string;
let groups: string[];
/** Members of org1 for group membership and spend overrides; a user of no organization. */
let bystanders: string[];
let outsider: string;

const unique = (prefix: string) => gen.uniqueName(prefix);

/** A fresh chat of the owner (status pending, one user message): a write changes it. */
async function ownerChatFresh(opts: { workspace?: string } = {}) {
  const chat = await gen.chat(t.pool, {
    ownerId: ids.owner,
    organizationId: org1,
    workspace_id: opts.workspace ?? null,
  });
  return chat.id;
}

/** A fresh chat of the owner whose turn is over: a message sent now is admitted, not queued. */
async function waitingChat() {
  const chat = await ownerChatFresh();
  await gen.chatStatus(t.pool, chat, "waiting");
  return chat;
}

/** A fresh chat of the owner bound to agent1's workspace. */
const agentChatFresh = () => ownerChatFresh({ workspace: agent1.workspaceId });

/**
 * A workspace tool call of agent1 in a fresh chat bound to it, as the runner records it with the
 * assistant message that makes it (sql/functions/chat_runs.sql); `running` as agent1's current
 * session started it.
 */
async function agentCall(state: "pending" | "running") {
  const chat = await agentChatFresh();
  await gen.chatMessage(t.pool, chat, {
    content: [
      {
        type: "tool-call",
        tool_call_id: "call_1",
        tool_name: "execute",
        args: { command: "true" },
      },
    ],
  });
  await gen.chatStatus(t.pool, chat, "running", { worker: true });
  const { rows } = await t.pool.query(
    `INSERT INTO chat_tool_calls (chat_id, agent_id, tool_call_id, tool_name, args, deadline_at,
       state, session_id, started_at)
     VALUES ($1, $2, 'call_1', 'execute', '{"command": "true"}', now() + interval '1 hour',
       $3::chat_tool_call_state, CASE WHEN $3 = 'running' THEN $4::uuid END,
       CASE WHEN $3 = 'running' THEN now() END)
     RETURNING id`,
    [chat, agent1.id, state, agent1.session],
  );
  return { chat, call: Number(rows[0].id) };
}

/**
 * A write's request on a target that `setup` makes. A principal the write succeeds for gets a
 * target of its own (the write changes it); the refused ones share one, which none of them may
 * change, so no cell's before-and-after comparison sees another cell's write.
 */
function onTarget<T>(setup: () => Promise<T>, build: (target: T, p: Principal) => Req) {
  let shared: Promise<T> | undefined;
  return async (p: Principal, refused: boolean) => {
    shared ??= setup();
    return build(await (refused ? shared : setup()), p);
  };
}

/** The agent's own session, as each agent process presents it. */
const sessionOf = (p: Principal) => (p === "otherAgent" ? agent2.session : agent1.session);

const matrix: Record<string, Row> = {
  // Public: the same answer whoever asks, whatever they send.
  "GET /healthz": { expect: everyone(200), request: () => ({ path: "/healthz" }) },
  "GET /metrics": { expect: everyone(200), request: () => ({ path: "/metrics" }) },
  "GET /api/openapi.json": {
    expect: everyone(200),
    request: () => ({ path: "/api/openapi.json" }),
  },
  "GET /api/docs": { expect: everyone(200), request: () => ({ path: "/api/docs" }) },
  "GET /api/docs/:file": {
    expect: everyone(200),
    request: () => ({ path: "/api/docs/swagger-ui.css" }),
  },
  "GET /": { expect: everyone(200), request: () => ({ path: "/" }) },
  "GET /app/:file": { expect: everyone(200), request: () => ({ path: "/app/app.js" }) },

  // Users, organizations, workspaces, notifications, telemetry (/api/v2).
  "GET /api/v2/users/me": { expect: everyUser(200), request: () => ({ path: "/api/v2/users/me" }) },
  "POST /api/v2/users": {
    expect: siteOwnerOnly(201),
    request: () => ({ path: "/api/v2/users", body: { username: unique("made") } }),
  },
  // docs/api.md: another user's id answers 404 unless the caller is a site owner.
  "POST /api/v2/users/:user/keys": {
    expect: users({ owner: 201, orgMember: 404, otherOrg: 404, siteOwner: 201 }),
    request: () => ({ path: `/api/v2/users/${ids.owner}/keys`, body: { lifetime_seconds: 60 } }),
  },
  "POST /api/v2/organizations": {
    expect: siteOwnerOnly(201),
    request: () => ({ path: "/api/v2/organizations", body: { name: unique("org") } }),
  },
  "PUT /api/v2/organizations/:org/members/:user": {
    expect: siteOwnerOnly(200),
    request: () => ({ path: `/api/v2/organizations/${org1}/members/${outsider}` }),
  },
  "POST /api/v2/organizations/:org/groups": {
    expect: siteOwnerOnly(201),
    request: () => ({
      path: `/api/v2/organizations/${org1}/groups`,
      body: { name: unique("group") },
    }),
  },
  "PUT /api/v2/organizations/:org/groups/:group/members/:user": {
    expect: siteOwnerOnly(200),
    request: () => ({
      path: `/api/v2/organizations/${org1}/groups/${groups[0]}/members/${bystanders[0]}`,
    }),
  },
  // Members create workspaces in their own organizations; another organization's member is 403.
  "POST /api/v2/organizations/:org/workspaces": {
    expect: users({ owner: 201, orgMember: 201, otherOrg: 403, siteOwner: 201 }),
    request: () => ({
      path: `/api/v2/organizations/${org1}/workspaces`,
      body: { name: unique("ws") },
    }),
  },
  // The workspace's owner or a site owner (docs/api.md); anyone else finds no such workspace.
  "POST /api/v2/workspaces/:workspace/builds": {
    expect: users({ owner: 201, orgMember: 404, otherOrg: 404, siteOwner: 201 }),
    request: () => ({
      path: `/api/v2/workspaces/${buildWorkspace}/builds`,
      body: { agents: [{ name: "main" }] },
    }),
  },
  "GET /api/v2/notifications": {
    expect: everyUser(200),
    request: () => ({ path: "/api/v2/notifications" }),
  },
  "PUT /api/v2/notifications/read-all": {
    expect: everyUser(204),
    request: () => ({ path: "/api/v2/notifications/read-all" }),
  },
  "PUT /api/v2/notifications/:id/read": {
    expect: ownerOnly(204),
    request: () => ({ path: `/api/v2/notifications/${ownerNotification}/read` }),
  },
  "GET /api/v2/telemetry/snapshot": {
    expect: siteOwnerOnly(200),
    request: () => ({ path: "/api/v2/telemetry/snapshot" }),
  },

  // The workspace agent's routes: agent tokens only, each agent its own chats and calls.
  "PUT /api/v2/workspaceagents/me/context": {
    expect: agents(200, 200),
    // The content pushed in beforeAll again: it marks no chat, so no other cell sees a change.
    request: () => ({ path: `${agentApi}/me/context`, body: { resources: contextResources } }),
  },
  "POST /api/v2/workspaceagents/me/chat-context": {
    expect: agents(200, 404),
    request: onTarget(agentChatFresh, (chat) => ({
      path: `${agentApi}/me/chat-context`,
      body: { chat_id: chat, files: [{ path: "docs/rules.md", content: "be brief" }] },
      chat,
    })),
  },
  "DELETE /api/v2/workspaceagents/me/chat-context": {
    expect: agents(200, 404),
    request: onTarget(
      async () => {
        const chat = await agentChatFresh();
        const added = await t.call("POST", `${agentApi}/me/chat-context`, {
          token: tokens.agent,
          body: { chat_id: chat, files: [{ path: "docs/rules.md", content: "be brief" }] },
        });
        expect(added.status, added.text).toBe(200);
        return chat;
      },
      (chat) => ({ path: `${agentApi}/me/chat-context?chat_id=${chat}`, chat }),
    ),
  },
  "POST /api/v2/workspaceagents/me/git-activity": {
    expect: agents(200, 404),
    request: onTarget(agentChatFresh, (chat) => ({
      path: `${agentApi}/me/git-activity`,
      body: { chat_id: chat, branch: "fix/it", remote_origin: "git@github.com:acme/api.git" },
      chat,
    })),
  },
  "POST /api/v2/workspaceagents/me/sessions": {
    expect: agents(201, 201),
    request: () => ({ path: `${agentApi}/me/sessions` }),
    last: true,
  },
  // Another agent presenting agent1's session: not its current session (docs/api.md: 409).
  "GET /api/v2/workspaceagents/me/tool-calls/watch": {
    expect: agents(200, 409),
    request: () => ({ path: `${agentApi}/me/tool-calls/watch?session_id=${agent1.session}` }),
  },
  "POST /api/v2/workspaceagents/me/tool-calls/:call/start": {
    expect: agents(200, 404),
    request: onTarget(
      () => agentCall("pending"),
      ({ chat, call }, p) => ({
        path: `${agentApi}/me/tool-calls/${call}/start`,
        body: { session_id: sessionOf(p) },
        chat,
      }),
    ),
  },
  "POST /api/v2/workspaceagents/me/tool-calls/:call/progress": {
    expect: agents(200, 404),
    request: onTarget(
      () => agentCall("running"),
      ({ chat, call }, p) => ({
        path: `${agentApi}/me/tool-calls/${call}/progress`,
        body: { session_id: sessionOf(p), stdout: "working\n" },
        chat,
      }),
    ),
  },
  "POST /api/v2/workspaceagents/me/tool-calls/:call/result": {
    expect: agents(200, 404),
    request: onTarget(
      () => agentCall("running"),
      ({ chat, call }, p) => ({
        path: `${agentApi}/me/tool-calls/${call}/result`,
        body: { session_id: sessionOf(p), result: { exit_code: 0 } },
        chat,
      }),
    ),
  },

  // Chats: the caller's own; another user's chat is 404 on every route, like a missing one.
  [`GET ${chats}`]: { expect: everyUser(200), request: () => ({ path: chats }) },
  [`POST ${chats}`]: {
    expect: everyUser(201),
    request: () => ({ path: chats, body: { content: text("hello") } }),
  },
  [`GET ${chats}/by-workspace`]: {
    expect: everyUser(200),
    request: () => ({ path: `${chats}/by-workspace?workspace_ids=${agent1.workspaceId}` }),
  },
  [`GET ${chats}/models`]: { expect: everyUser(200), request: () => ({ path: `${chats}/models` }) },
  [`GET ${chats}/watch`]: { expect: everyUser(200), request: () => ({ path: `${chats}/watch` }) },
  [`GET ${chats}/insights/pull-requests`]: {
    expect: everyUser(200),
    request: () => ({ path: `${chats}/insights/pull-requests` }),
  },
  [`GET ${chats}/github-token`]: {
    expect: everyUser(200),
    request: () => ({ path: `${chats}/github-token` }),
  },
  [`PUT ${chats}/github-token`]: {
    expect: everyUser(204),
    request: () => ({ path: `${chats}/github-token`, body: { token: "ghp_matrix" } }),
  },
  [`DELETE ${chats}/github-token`]: {
    expect: everyUser(204),
    request: () => ({ path: `${chats}/github-token` }),
  },
  [`GET ${chats}/:chat`]: {
    expect: ownerOnly(200),
    request: () => ({ path: `${chats}/${ownerChat}` }),
  },
  [`PATCH ${chats}/:chat`]: {
    expect: ownerOnly(204),
    request: onTarget(ownerChatFresh, (chat) => ({
      path: `${chats}/${chat}`,
      body: { title: "renamed", pin_order: 1 },
      chat,
    })),
  },
  [`GET ${chats}/:chat/stream`]: {
    expect: ownerOnly(200),
    request: () => ({ path: `${chats}/${ownerChat}/stream` }),
  },
  [`GET ${chats}/:chat/messages`]: {
    expect: ownerOnly(200),
    request: () => ({ path: `${chats}/${ownerChat}/messages` }),
  },
  [`POST ${chats}/:chat/messages`]: {
    expect: ownerOnly(200),
    request: onTarget(waitingChat, (chat) => ({
      path: `${chats}/${chat}/messages`,
      body: { content: text("more") },
      chat,
    })),
  },
  [`PATCH ${chats}/:chat/messages/:message`]: {
    expect: ownerOnly(200),
    request: onTarget(
      async () => {
        const chat = await ownerChatFresh();
        const { rows } = await t.pool.query(
          "SELECT id FROM chat_messages WHERE chat_id = $1 AND role = 'user'",
          [chat],
        );
        return { chat, message: rows[0].id as number };
      },
      ({ chat, message }) => ({
        path: `${chats}/${chat}/messages/${message}`,
        body: { content: text("edited") },
        chat,
      }),
    ),
  },
  [`GET ${chats}/:chat/prompts`]: {
    expect: ownerOnly(200),
    request: () => ({ path: `${chats}/${ownerChat}/prompts` }),
  },
  [`DELETE ${chats}/:chat/queue/:queued`]: {
    expect: ownerOnly(204),
    request: onTarget(queuedMessage, ({ chat, queued }) => ({
      path: `${chats}/${chat}/queue/${queued}`,
      chat,
    })),
  },
  [`POST ${chats}/:chat/queue/:queued/promote`]: {
    expect: ownerOnly(202),
    request: onTarget(queuedMessage, ({ chat, queued }) => ({
      path: `${chats}/${chat}/queue/${queued}/promote`,
      chat,
    })),
  },
  [`POST ${chats}/:chat/tool-results`]: {
    expect: ownerOnly(200),
    request: onTarget(
      async () => {
        const chat = await ownerChatFresh();
        await gen.chatMessage(t.pool, chat, {
          content: [
            { type: "tool-call", tool_call_id: "call_1", tool_name: "read_file", args: {} },
          ],
        });
        await gen.chatStatus(t.pool, chat, "requires_action");
        return chat;
      },
      (chat) => ({
        path: `${chats}/${chat}/tool-results`,
        body: { results: [{ tool_call_id: "call_1", output: "contents" }] },
        chat,
      }),
    ),
  },
  [`POST ${chats}/:chat/interrupt`]: {
    expect: ownerOnly(200),
    request: onTarget(
      async () => {
        const chat = await ownerChatFresh();
        await gen.chatStatus(t.pool, chat, "running", { worker: true });
        return chat;
      },
      (chat) => ({ path: `${chats}/${chat}/interrupt`, chat }),
    ),
  },
  [`PUT ${chats}/:chat/context`]: {
    expect: ownerOnly(200),
    request: onTarget(agentChatFresh, (chat) => ({ path: `${chats}/${chat}/context`, chat })),
  },
  [`POST ${chats}/:chat/title/regenerate`]: {
    expect: ownerOnly(200),
    request: onTarget(
      async () => {
        const chat = await waitingChat();
        await gen.chatMessage(t.pool, chat, { text: "echo: hello" });
        return chat;
      },
      (chat) => ({ path: `${chats}/${chat}/title/regenerate`, chat }),
    ),
  },
  [`GET ${chats}/:chat/audit`]: {
    expect: ownerOnly(200),
    request: () => ({ path: `${chats}/${ownerChat}/audit` }),
  },
  [`GET ${chats}/:chat/cost`]: {
    expect: ownerOnly(200),
    request: () => ({ path: `${chats}/${ownerChat}/cost` }),
  },
  [`POST ${chats}/ai-sdk`]: {
    expect: ownerOnly(200),
    request: onTarget(waitingChat, (chat) => ({
      path: `${chats}/ai-sdk`,
      body: {
        id: chat,
        messages: [{ id: "m1", role: "user", parts: [{ type: "text", text: "more" }] }],
        trigger: "submit-message",
      },
      chat,
    })),
  },
  // The owner's chat is pending: its turn is under way, so the owner gets the stream.
  [`GET ${chats}/ai-sdk/:chat/stream`]: {
    expect: ownerOnly(200),
    request: () => ({ path: `${chats}/ai-sdk/${ownerChat}/stream` }),
  },
  [`POST ${chats}/files`]: {
    expect: everyUser(201),
    request: () => ({
      path: `${chats}/files`,
      raw: "hello\n",
      headers: { "content-type": "text/plain" },
    }),
  },
  [`GET ${chats}/files/:file`]: {
    expect: ownerOnly(200),
    request: () => ({ path: `${chats}/files/${ownerFile}` }),
  },

  // Cost: a user's own summary; anyone's for site owners; the deployment's for site owners only.
  [`GET ${chats}/cost/:user/summary`]: {
    expect: users({ owner: 200, orgMember: 404, otherOrg: 404, siteOwner: 200 }),
    request: () => ({ path: `${chats}/cost/${ids.owner}/summary` }),
  },
  [`GET ${chats}/cost/users`]: {
    expect: siteOwnerOnly(200),
    request: () => ({ path: `${chats}/cost/users` }),
  },
  [`GET ${chats}/audit`]: {
    expect: siteOwnerOnly(200),
    request: () => ({ path: `${chats}/audit` }),
  },

  // Providers and model configs (site owners); a user's own key for a provider (any member).
  [`GET ${chats}/providers`]: {
    expect: siteOwnerOnly(200),
    request: () => ({ path: `${chats}/providers` }),
  },
  [`POST ${chats}/providers`]: {
    expect: siteOwnerOnly(201),
    request: () => ({
      path: `${chats}/providers`,
      body: { provider: "openai-compatible", base_url: `http://${unique("p")}.test/v1` },
    }),
  },
  [`PATCH ${chats}/providers/:id`]: {
    expect: siteOwnerOnly(200),
    request: () => ({ path: `${chats}/providers/${provider}`, body: { display_name: "Renamed" } }),
  },
  [`DELETE ${chats}/providers/:id`]: {
    expect: siteOwnerOnly(204),
    request: onTarget(
      async () => (await gen.chatProvider(t.pool)).id,
      (id) => ({ path: `${chats}/providers/${id}` }),
    ),
  },
  [`PUT ${chats}/providers/:id/user-key`]: {
    expect: everyUser(204),
    request: () => ({
      path: `${chats}/providers/${userKeyProvider}/user-key`,
      body: { api_key: "sk-own" },
    }),
  },
  [`DELETE ${chats}/providers/:id/user-key`]: {
    expect: everyUser(204),
    request: () => ({ path: `${chats}/providers/${userKeyProvider}/user-key` }),
  },
  [`GET ${chats}/model-configs`]: {
    expect: siteOwnerOnly(200),
    request: () => ({ path: `${chats}/model-configs` }),
  },
  [`POST ${chats}/model-configs`]: {
    expect: siteOwnerOnly(201),
    request: () => ({
      path: `${chats}/model-configs`,
      body: { provider_id: provider, model: unique("model"), context_limit: 1000 },
    }),
  },
  [`PATCH ${chats}/model-configs/:id`]: {
    expect: siteOwnerOnly(200),
    request: () => ({
      path: `${chats}/model-configs/${modelConfig}`,
      body: { display_name: "Renamed" },
    }),
  },
  [`DELETE ${chats}/model-configs/:id`]: {
    expect: siteOwnerOnly(204),
    request: onTarget(
      async () => (await gen.modelConfig(t.pool, { providerId: provider })).id,
      (id) => ({ path: `${chats}/model-configs/${id}` }),
    ),
  },

  // Spend limits (site owners), and the caller's own status.
  [`GET ${chats}/usage-limits/status`]: {
    expect: everyUser(200),
    request: () => ({ path: `${chats}/usage-limits/status` }),
  },
  [`GET ${chats}/usage-limits`]: {
    expect: siteOwnerOnly(200),
    request: () => ({ path: `${chats}/usage-limits` }),
  },
  // Off, as it is: a limit would refuse the creates and sends of the other cells.
  [`PUT ${chats}/usage-limits`]: {
    expect: siteOwnerOnly(200),
    request: () => ({ path: `${chats}/usage-limits`, body: { spend_limit_micros: null } }),
  },
  [`PUT ${chats}/usage-limits/overrides/:user`]: {
    expect: siteOwnerOnly(200),
    request: () => ({
      path: `${chats}/usage-limits/overrides/${bystanders[0]}`,
      body: { spend_limit_micros: 1_000_000 },
    }),
  },
  [`DELETE ${chats}/usage-limits/overrides/:user`]: {
    expect: siteOwnerOnly(204),
    // Another user than the PUT's: each cell's answer is then its own request's alone.
    request: () => ({ path: `${chats}/usage-limits/overrides/${bystanders[1]}` }),
  },
  [`PUT ${chats}/usage-limits/group-overrides/:group`]: {
    expect: siteOwnerOnly(200),
    request: () => ({
      path: `${chats}/usage-limits/group-overrides/${groups[0]}`,
      body: { spend_limit_micros: 1_000_000 },
    }),
  },
  [`DELETE ${chats}/usage-limits/group-overrides/:group`]: {
    expect: siteOwnerOnly(204),
    request: () => ({ path: `${chats}/usage-limits/group-overrides/${groups[1]}` }),
  },

  // Housekeeping (site owners); the values are the defaults, so nothing is archived or deleted.
  [`GET ${chats}/config/retention`]: {
    expect: siteOwnerOnly(200),
    request: () => ({ path: `${chats}/config/retention` }),
  },
  [`PUT ${chats}/config/retention`]: {
    expect: siteOwnerOnly(200),
    request: () => ({ path: `${chats}/config/retention`, body: { retention_days: 0 } }),
  },
  [`GET ${chats}/config/auto-archive`]: {
    expect: siteOwnerOnly(200),
    request: () => ({ path: `${chats}/config/auto-archive` }),
  },
  [`PUT ${chats}/config/auto-archive`]: {
    expect: siteOwnerOnly(200),
    request: () => ({ path: `${chats}/config/auto-archive`, body: { auto_archive_days: 0 } }),
  },
};

/** A fresh chat of the owner with one queued message (sent while its turn is pending). */
async function queuedMessage() {
  const chat = await ownerChatFresh();
  const sent = await t.call("POST", `${chats}/${chat}/messages`, {
    token: tokens.owner,
    body: { content: text("later") },
  });
  expect(sent.json?.queued, sent.text).toBe(true);
  return { chat, queued: sent.json.queued_message.id as number };
}

/** Everything a request on the chat could change; a refused one must change none of it. */
async function chatState(chat: string) {
  const rows = (table: string) =>
    `(SELECT coalesce(jsonb_agg(to_jsonb(x) ORDER BY x.id), '[]') FROM ${table} x WHERE x.chat_id = $1)`;
  const { rows: state } = await t.pool.query(
    `SELECT (SELECT to_jsonb(c) FROM chats c WHERE c.id = $1) AS chat,
       ${rows("chat_messages")} AS messages, ${rows("chat_queued_messages")} AS queue,
       ${rows("chat_tool_calls")} AS tool_calls, ${rows("audit_logs")} AS audit,
       (SELECT to_jsonb(d) FROM chat_diff_statuses d WHERE d.chat_id = $1) AS diff_status`,
    [chat],
  );
  return state[0];
}

/**
 * One request as `p` sends it: a Bearer token, whatever kind (an agent token where a user key is
 * read is a wrong key, not a missing one). A stream's status is its headers'; the stream is then
 * closed. Other responses are checked against the OpenAPI document.
 */
async function send(p: Principal, method: string, req: Req) {
  const headers: Record<string, string> = { ...req.headers };
  const token = tokens[p];
  if (token) headers.authorization = `Bearer ${token}`;
  let body: string | undefined = req.raw;
  if (req.body !== undefined) {
    headers["content-type"] = "application/json";
    body = JSON.stringify(req.body);
  }
  const res = await t.app.request(req.path, { method, headers, body });
  const type = res.headers.get("content-type");
  if (type?.startsWith("text/event-stream")) {
    await res.body?.cancel();
    return { status: res.status, text: "(a stream)", json: undefined };
  }
  const raw = await res.text();
  let json: unknown;
  try {
    json = raw && type?.startsWith("application/json") ? JSON.parse(raw) : undefined;
  } catch {
    json = undefined;
  }
  await checkResponse(method, req.path, res.status, type, json);
  return { status: res.status, text: raw.slice(0, 300), json };
}

/** Runs `tasks` with at most `limit` at once. */
async function limited<T>(limit: number, tasks: (() => Promise<T>)[]): Promise<T[]> {
  const results: T[] = new Array(tasks.length);
  let next = 0;
  const worker = async () => {
    while (next < tasks.length) {
      const i = next++;
      results[i] = await tasks[i]!();
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, tasks.length) }, worker));
  return results;
}

/** Every route the app answers, as "METHOD /path" with Hono's parameter names. */
function appRoutes(): Set<string> {
  const routes = new Set<string>();
  // "ALL" entries are middleware (authentication, requireOwner, the body limit), not handlers.
  for (const r of t.app.routes) if (r.method !== "ALL") routes.add(`${r.method} ${r.path}`);
  return routes;
}

beforeAll(async () => {
  const db = await testDb();
  watch = await startWatch({
    url: db.url,
    pool: db.pool,
    logger: captureLogger().logger,
    mode: "trigger",
  });
  t = await testApp({ watch });
  // The web app's page and files are public routes too; a checkout may not have built them.
  await ensureWebBuilt();
  org1 = (await gen.organization(t.pool)).id;
  org2 = (await gen.organization(t.pool)).id;
  const owner = await gen.member(t.pool, { organizationIds: [org1] });
  const orgMember = await gen.member(t.pool, { organizationIds: [org1] });
  const otherOrg = await gen.member(t.pool, { organizationIds: [org2] });
  const siteOwner = await gen.member(t.pool, { organizationIds: [org1], owner: true });
  Object.assign(ids, {
    owner: owner.id,
    orgMember: orgMember.id,
    otherOrg: otherOrg.id,
    siteOwner: siteOwner.id,
  });
  // The owner's own key, expired (as test/server/users.test.ts expires one).
  const expired = await gen.apiKey(t.pool, owner.id);
  await t.pool.query("UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE id = $1", [
    expired.split("-")[0],
  ]);
  // Two workspaces of the owner, each with its agent: agent2 is "another agent" of the same user,
  // so a check that went by the owner instead of the agent would let it through.
  const workspaces = [];
  for (const name of ["one", "two"]) {
    const ws = await gen.workspace(t.pool, { organizationId: org1, ownerId: owner.id, name });
    const build = await gen.build(t.pool, ws.id, ["main"]);
    workspaces.push({ id: build.agents[0]!.id, workspaceId: ws.id, token: build.agents[0]!.token });
  }
  Object.assign(tokens, {
    owner: owner.token,
    orgMember: orgMember.token,
    otherOrg: otherOrg.token,
    siteOwner: siteOwner.token,
    agent: workspaces[0]!.token,
    otherAgent: workspaces[1]!.token,
    expired,
    malformed: "not-a-token!",
    none: undefined,
  });
  const agentSetup = async (token: string) => {
    const pushed = await t.call("PUT", `${agentApi}/me/context`, {
      token,
      body: { resources: contextResources },
    });
    expect(pushed.status, pushed.text).toBe(200);
    const session = await t.call("POST", `${agentApi}/me/sessions`, { token });
    expect(session.status, session.text).toBe(201);
    return session.json.session_id as string;
  };
  agent1 = { ...workspaces[0]!, session: await agentSetup(workspaces[0]!.token) };
  agent2 = { ...workspaces[1]!, session: await agentSetup(workspaces[1]!.token) };

  ownerChat = await ownerChatFresh();
  ownerFile = (await gen.chatFile(t.pool, { ownerId: owner.id, organizationId: org1 })).id;
  const { rows } = await t.pool.query(
    `INSERT INTO notifications (user_id, kind, title, body)
     VALUES ($1, 'chats_auto_archived', 'Chats auto-archived', 'body') RETURNING id`,
    [owner.id],
  );
  ownerNotification = Number(rows[0].id);
  buildWorkspace = (await gen.workspace(t.pool, { organizationId: org1, ownerId: owner.id })).id;

  provider = (await gen.chatProvider(t.pool)).id;
  userKeyProvider = (await gen.chatProvider(t.pool)).id;
  const policy = await t.call("PATCH", `${chats}/providers/${userKeyProvider}`, {
    token: siteOwner.token,
    body: { allow_user_key: true },
  });
  expect(policy.status, policy.text).toBe(200);
  modelConfig = (await gen.modelConfig(t.pool, { providerId: provider })).id;
  groups = [(await gen.group(t.pool, org1)).id, (await gen.group(t.pool, org1)).id];
  bystanders = [
    (await gen.user(t.pool, { organizationIds: [org1] })).id,
    (await gen.user(t.pool, { organizationIds: [org1] })).id,
  ];
  outsider = (await gen.user(t.pool)).id;
});

afterAll(async () => {
  await watch?.close();
});

describe("the authorization matrix", () => {
  it("has a row for every route of the app, and no row for a route that is gone", () => {
    const routes = appRoutes();
    const rows = new Set(Object.keys(matrix));
    const missing = [...routes].filter((r) => !rows.has(r)).sort();
    const stale = [...rows].filter((r) => !routes.has(r)).sort();
    expect(missing, "routes without a row in the matrix: add one").toEqual([]);
    expect(stale, "rows for routes the app no longer has").toEqual([]);
  });

  it("answers each principal with the status docs/api.md gives, and a refused write changes nothing", async () => {
    const cell = (key: string, row: Row, p: Principal) => () =>
      check(key, row, p).catch((err: Error) => [`${key} as ${p}: ${err.message}`]);
    const check = async (key: string, row: Row, p: Principal) => {
      const method = key.slice(0, key.indexOf(" "));
      const req = await row.request(p, row.expect[p] >= 400);
      const before = req.chat ? await chatState(req.chat) : undefined;
      const res = await send(p, method, req);
      const failures: string[] = [];
      if (res.status !== row.expect[p]) {
        failures.push(`${key} as ${p}: ${res.status}, expected ${row.expect[p]} (${res.text})`);
      } else if (res.status === 401 && !isDeepStrictEqual(res.json, unauthenticated)) {
        failures.push(`${key} as ${p}: 401 with another body than every 401's (${res.text})`);
      } else if (before && res.status >= 400) {
        const after = await chatState(req.chat!);
        const changed = Object.keys(before).filter((k) => !isDeepStrictEqual(before[k], after[k]));
        if (changed.length > 0) {
          failures.push(`${key} as ${p}: refused with ${res.status}, but changed ${changed}`);
        }
      }
      // Another's chat or file is 404 "exactly like a missing one" (docs/api.md "Chats"): the same
      // request with an id that names nothing must get the same answer, or the answer leaks.
      const sent = `${req.path} ${JSON.stringify(req.body ?? null)}`;
      const id = [req.chat, ownerChat, ownerFile].find((x) => x !== undefined && sent.includes(x));
      if (res.status === 404 && id) {
        const missing = randomUUID();
        const twin = await send(p, method, {
          ...req,
          path: req.path.replaceAll(id, missing),
          body: req.body && JSON.parse(JSON.stringify(req.body).replaceAll(id, missing)),
        });
        if (twin.status !== 404 || !isDeepStrictEqual(twin.json, res.json)) {
          failures.push(
            `${key} as ${p}: another's answers ${res.text}, a missing one ${twin.status} ${twin.text}`,
          );
        }
      }
      return failures;
    };
    const cells = (last: boolean) =>
      Object.entries(matrix)
        .filter(([, row]) => (row.last ?? false) === last)
        .flatMap(([key, row]) => principals.map((p) => cell(key, row, p)));
    const failures = [
      ...(await limited(concurrency, cells(false))),
      ...(await limited(concurrency, cells(true))),
    ].flat();
    expect(failures).toEqual([]);
  });
});

describe("the streams", () => {
  let server: TestServer;
  const streams: SseClient[] = [];

  beforeAll(async () => {
    // Another server on this file's database: its streams get the events the app's requests
    // commit through the change-event log, as a second replica would.
    server = await testServer();
  });
  afterAll(async () => {
    for (const s of streams) s.close();
    await server?.close();
  });

  async function open(path: string, token: string) {
    const stream = await openSse(`${server.url}${path}`, { authorization: `Bearer ${token}` });
    streams.push(stream);
    expect(stream.status).toBe(200);
    return stream;
  }
  const chatOf = (e: { data: string }) => (JSON.parse(e.data) as { chat?: { id: string } }).chat;

  it("never deliver an event about another user's chat, nor a call of another agent", async () => {
    // New agent processes: the matrix's last row ended the sessions of beforeAll.
    const session = async (token: string | undefined) => {
      const res = await t.call("POST", `${agentApi}/me/sessions`, { token });
      expect(res.status, res.text).toBe(201);
      return res.json.session_id as string;
    };
    agent1.session = await session(tokens.agent);
    agent2.session = await session(tokens.otherAgent);
    // Each subscriber's own chat, whose turn is over: the marker it waits for is a change of it.
    const subscribers = ["orgMember", "otherOrg", "siteOwner"] as const;
    const own: Record<string, string> = {};
    for (const p of subscribers) {
      const chat = await gen.chat(t.pool, {
        ownerId: ids[p],
        organizationId: p === "otherOrg" ? org2 : org1,
      });
      await gen.chatStatus(t.pool, chat.id, "waiting");
      own[p] = chat.id;
    }
    const watches = Object.fromEntries(
      await Promise.all(
        subscribers.map(async (p) => [p, await open(`${chats}/watch`, tokens[p]!)]),
      ),
    ) as Record<(typeof subscribers)[number], SseClient>;
    const memberChat = await open(`${chats}/${own.orgMember}/stream`, tokens.orgMember!);
    // The owner's and agent1's own streams prove the changes below are events at all.
    const ownerWatch = await open(`${chats}/watch`, tokens.owner!);
    const agentStream = await open(
      `${agentApi}/me/tool-calls/watch?session_id=${agent1.session}`,
      tokens.agent!,
    );
    const otherAgentStream = await open(
      `${agentApi}/me/tool-calls/watch?session_id=${agent2.session}`,
      tokens.otherAgent!,
    );

    // The owner's changes: create, send, retitle, archive; and a call for agent1 to run.
    const as = (method: string, path: string, body?: unknown) =>
      t.call(method, path, { token: tokens.owner, body });
    const created = await as("POST", chats, { content: text("the owner's secret plans") });
    expect(created.status, created.text).toBe(201);
    const chat = created.json.id as string;
    expect((await as("POST", `${chats}/${chat}/messages`, { content: text("more") })).status).toBe(
      200,
    );
    expect((await as("PATCH", `${chats}/${chat}`, { title: "secret" })).status).toBe(204);
    expect((await as("PATCH", `${chats}/${chat}`, { archived: true })).status).toBe(204);
    const { chat: agentChat, call } = await agentCall("pending");
    await ownerWatch.next((e) => e.event === "deleted" && chatOf(e)?.id === chat);
    await agentStream.next((e) => e.event === "tool_call" && JSON.parse(e.data).id === call);

    // Then each subscriber's own change, committed after all of the owner's: events come in
    // commit order, so once it arrives, anything of the owner's routed to it would have, too.
    for (const p of subscribers) {
      const res = await t.call("PATCH", `${chats}/${own[p]}`, {
        token: tokens[p],
        body: { title: "marker" },
      });
      expect(res.status, res.text).toBe(204);
    }
    const sent = await t.call("POST", `${chats}/${own.orgMember}/messages`, {
      token: tokens.orgMember,
      body: { content: text("marker") },
    });
    expect(sent.status, sent.text).toBe(200);
    const agent2Chat = await ownerChatFresh({ workspace: agent2.workspaceId });
    const { rows } = await t.pool.query(
      `INSERT INTO chat_tool_calls (chat_id, agent_id, tool_call_id, tool_name, args, deadline_at)
       VALUES ($1, $2, 'call_1', 'execute', '{}', now() + interval '1 hour') RETURNING id`,
      [agent2Chat, agent2.id],
    );
    for (const p of subscribers) {
      await watches[p].next((e) => e.event === "title_change" && chatOf(e)?.id === own[p]);
    }
    await memberChat.next(
      (e) => e.event === "message" && JSON.parse(e.data).id === sent.json.message.id,
    );
    await otherAgentStream.next(
      (e) => e.event === "tool_call" && JSON.parse(e.data).id === Number(rows[0].id),
    );

    const ownerChats = (
      await t.pool.query("SELECT id FROM chats WHERE owner_id = $1", [ids.owner])
    ).rows.map((r) => r.id as string);
    const agent1Chats = (
      await t.pool.query("SELECT id FROM chats WHERE agent_id = $1", [agent1.id])
    ).rows.map((r) => r.id as string);
    expect(ownerChats).toContain(chat);
    expect(agent1Chats).toContain(agentChat);
    const naming = (stream: SseClient, secrets: string[]) =>
      stream.events.filter((e) => secrets.some((s) => e.data.includes(s)));
    for (const p of subscribers) {
      expect(naming(watches[p], [...ownerChats, ids.owner]), `${p}'s watch stream`).toEqual([]);
    }
    expect(naming(memberChat, [...ownerChats, ids.owner]), "orgMember's chat stream").toEqual([]);
    expect(
      naming(otherAgentStream, [...agent1Chats, agent1.id, `"id":${call},`]),
      "the other agent's stream",
    ).toEqual([]);
  });
});
