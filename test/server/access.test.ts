import fs from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { beforeAll, describe, expect, it } from "vitest";
import { initSqlParser, prepareQuery } from "../../scripts/sqlc_gen_ts/params.ts";
import { parseQueryFile } from "../../scripts/sqlc_gen_ts/parse.ts";

/*
 * Access checks are enforced, not a convention (the way coder's dbauthz accounting test works):
 * every generated query that request handling can reach (anything src/server, src/models,
 * src/forge or src/watch imports) either takes the caller's scope as a parameter (owner_id, user_id, agent_id)
 * or is listed below with the reason it cannot return or change another owner's rows. A new
 * query used by a route without either fails this test; so does a stale entry.
 */

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

/** Parameters that scope a query to the caller. */
const scopeParams = new Set(["owner_id", "user_id", "agent_id"]);

/** Reviewed: why each of these may take no caller scope. */
const unscoped: Record<string, string> = {
  // Authentication: the lookup that finds the caller.
  GetAPIKeyForAuthByID: "authentication: finds the key a bearer token names; the secret is checked",
  UpdateAPIKeyLastUsedByID: "authentication: the key just verified",
  GetWorkspaceAgentForAuthByTokenID: "authentication: finds the agent an agent token names",
  GetUserByID: "authentication and routes that check the caller is that user or a site owner",
  PingDatabase: "health check; reads no rows",
  // Site-owner routes (requireOwner): the whole deployment is theirs.
  InsertUser: "POST /users (site owner)",
  InsertOrganization: "POST /organizations (site owner)",
  GetOrganizationByID: "organization routes: site owner, or membership checked by the route",
  GetOrganizationByName: "bootstrap and site-owner organization routes",
  InsertGroup: "groups (site owner)",
  GetGroupByID: "groups (site owner)",
  InsertChatProvider: "/providers (site owner)",
  ListChatProviders: "/providers (site owner)",
  GetChatProviderByID: "/providers (site owner)",
  UpdateChatProviderByID: "/providers (site owner)",
  DeleteChatProviderByID: "/providers (site owner)",
  CreateChatModelConfig: "/model-configs (site owner)",
  ListChatModelConfigs: "/model-configs (site owner)",
  GetChatModelConfigByID: "/model-configs (site owner)",
  UpdateChatModelConfigByID: "/model-configs (site owner)",
  DeleteChatModelConfigByID: "/model-configs (site owner)",
  ListChatCostByUser: "GET /cost/users (site owner)",
  GetChatUsageLimitConfig: "/usage-limits (site owner)",
  ListChatUsageLimitUserOverrides: "/usage-limits (site owner)",
  ListChatUsageLimitGroupOverrides: "/usage-limits (site owner)",
  SetChatUsageLimitConfig: "PUT /usage-limits (site owner)",
  SetChatUsageLimitUserOverride: "/usage-limits/overrides/{user} (site owner)",
  SetChatUsageLimitGroupOverride: "/usage-limits/group-overrides/{group} (site owner)",
  GetChatHousekeepingConfig: "/config/retention, /config/auto-archive (site owner)",
  SetChatRetentionDays: "PUT /config/retention (site owner)",
  SetChatAutoArchiveDays: "PUT /config/auto-archive (site owner)",
  ListAuditLogs: "GET /audit (site owner)",
  ListTelemetryChats: "GET /telemetry/snapshot (site owner): no titles, content, URLs or labels",
  ListTelemetryMessageSummaries: "GET /telemetry/snapshot (site owner): counts and sums only",
  ListTelemetryModelConfigs: "GET /telemetry/snapshot (site owner)",
  GetWorkspaceByID: "workspace routes check the workspace's owner before acting",
  ListChatToolCallsByIDs:
    "rendering an agent's tool-call events: the ids come from events the hub routes only to the agent their payload names",
  InsertWorkspaceBuild:
    "POST /workspaces/{workspace}/builds: the route checks the workspace's owner first",
  // Reads of one chat's rows after the route or stream has checked the chat is the caller's
  // (GetChatExistsByIDForOwner, GetChatByIDForOwner, or a transition that raised PC404).
  GetChatMessageByID: "after a transition on the caller's chat (send, edit, tool results, promote)",
  ListChatMessagesByChatID: "GET /{chat}/messages: requireChat(owner) first",
  ListChatPromptsByChatID: "GET /{chat}/prompts: requireChat(owner) first",
  ListChatQueuedMessagesByChatID: "GET /{chat}/messages and the chat stream, after the owner check",
  GetChatQueuedMessageByID: "POST /{chat}/messages, after the send checked the owner",
  ListChatFilesByChatID: "loadChat, after GetChatByIDForOwner",
  ListChildChatsByRootIDs: "children of roots already read for their owner",
  ListChatMessagesAfterIDByChatID:
    "the chat stream's snapshot, opened after the owner check; GET /{chat}/messages polling, after requireChat(owner)",
  GetChatPendingToolCallsByChatID:
    "the chat stream's snapshot, opened after the owner check; the AI SDK route, after GetChatByIDForOwner",
  GetChatLastUserMessageByChatID: "the AI SDK route, after GetChatByIDForOwner",
  ListChatEventsByChatInRange: "the chat stream, opened after the owner check",
  MarkChatReadByID: "the chat stream's connect and disconnect, after the owner check",
  GetChatForRunByID: "title regeneration, after BeginChatTitleRegeneration checked the owner",
  ListChatTitleTurnMessagesByChatID:
    "title regeneration, after BeginChatTitleRegeneration checked the owner",
  DeleteChatTitleRegeneration: "title regeneration's own marker, after the owner check",
  UpdateChatTitleFromModelByID:
    "title regeneration, after BeginChatTitleRegeneration checked the owner",
  ClaimStaleChatDiffStatusByChatID:
    "GET /{chat} resolving its pull request inline, after GetChatByIDForOwner (loadChatResolved)",
  RecordChatDiffStatusRefresh:
    "the outcome of a reference claimed by the refresher or by GET /{chat} after the owner check",
  // The change-event fan-out: rows are read in batches for every subscriber and each event is
  // delivered only to its chat's owner (src/watch/hub.ts), never by a client-supplied id.
  ListChatsAndChildrenByIDs: "change events: ids from the log; each event goes to its owner only",
  ListChatMessagesByIDs: "change events: ids from the log; each event goes to its owner only",
  ListChatQueuedMessagesByChatIDs:
    "change events: ids from the log; each event goes to its owner only",
  ListChatEventsAfterCursor: "the tailer reads the whole log and routes each event to its owner",
  GetChatEventBounds: "the log's first and last cursor; no row content",
  GetChatEventHorizonStatus: "the read horizon; no row content",
  NotifyChatEvents: "a NOTIFY with no payload",
  PublishChatStreamEvent:
    "a turn's parts, published by its runner under its lease, or by the agent for its own running call",
  ListChatStreamPartsByChatID: "the chat stream's snapshot, opened after the owner check",
  ListChatStreamPartsMarksByChatIDs:
    "change events: chat ids from the log; a seq per chat, no content, and each event goes to its owner only",
};

let queries: Map<string, string[]>;
let reachable: Set<string>;

beforeAll(async () => {
  await initSqlParser();
  queries = new Map();
  for (const file of await fs.readdir(path.join(root, "sql/queries"))) {
    const text = await fs.readFile(path.join(root, "sql/queries", file), "utf8");
    for (const block of parseQueryFile(`sql/queries/${file}`, text)) {
      queries.set(
        block.name,
        prepareQuery(block).params.map((p) => p.name),
      );
    }
  }
  // What request handling imports from the generated modules.
  reachable = new Set();
  const byFunction = new Map([...queries.keys()].map((q) => [q[0]!.toLowerCase() + q.slice(1), q]));
  for (const dir of ["src/server", "src/models", "src/forge", "src/watch"]) {
    for (const file of await fs.readdir(path.join(root, dir), { recursive: true })) {
      if (!file.endsWith(".ts")) continue;
      const text = await fs.readFile(path.join(root, dir, file), "utf8");
      for (const m of text.matchAll(/import\s*\{([^}]*)\}\s*from\s*"[^"]*generated\/[^"]+"/g)) {
        for (const name of m[1]!.split(",").map((n) => n.trim())) {
          const query = byFunction.get(name);
          if (query) reachable.add(query);
        }
      }
    }
  }
});

describe("access checks", () => {
  it("every query request handling can reach takes the caller's scope, or is listed with the reason it need not", () => {
    expect(reachable.size).toBeGreaterThan(50);
    const unchecked = [...reachable]
      .filter((q) => !queries.get(q)!.some((p) => scopeParams.has(p)))
      .filter((q) => !(q in unscoped))
      .sort();
    expect(unchecked).toEqual([]);
  });

  it("the list of unscoped queries names only queries that exist, are reachable and take no scope", () => {
    const stale = Object.keys(unscoped).filter(
      (q) =>
        !queries.has(q) || !reachable.has(q) || queries.get(q)!.some((p) => scopeParams.has(p)),
    );
    expect(stale).toEqual([]);
  });
});
