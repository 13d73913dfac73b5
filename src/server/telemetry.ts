import type { Queryable } from "../db/index.ts";
import { getChatPullRequestCountsByOwner } from "../generated/chat_diff_statuses.ts";
import {
  listTelemetryChats,
  listTelemetryMessageSummaries,
  listTelemetryModelConfigs,
} from "../generated/telemetry.ts";

/*
 * The telemetry snapshot (docs/api.md "Telemetry"), for GET /api/v2/telemetry/snapshot and
 * `pgchatd admin telemetry`: what the deployment did in a window, without what anyone wrote or
 * who they are (sql/queries/telemetry.sql selects no such column). Nothing is sent anywhere.
 */

/** Chats per snapshot: a window larger than this is cut, and says so (`truncated`). */
export const maxTelemetryChats = 50_000;
/** Without `since`, the last day. */
export const defaultTelemetryWindowMs = 24 * 3600_000;

export async function buildTelemetrySnapshot(db: Queryable, window: { since: Date; until: Date }) {
  const [chats, models, prs] = await Promise.all([
    listTelemetryChats(db, {
      since: window.since.toISOString(),
      until: window.until.toISOString(),
      page_limit: maxTelemetryChats + 1,
    }),
    listTelemetryModelConfigs(db),
    // The deployment's pull requests: the insights' query with no owner.
    getChatPullRequestCountsByOwner(db, { owner_id: null }),
  ]);
  const shown = chats.slice(0, maxTelemetryChats);
  const summaries =
    shown.length > 0
      ? await listTelemetryMessageSummaries(db, { chat_ids: shown.map((c) => c.id!) })
      : [];
  const n = (v: unknown) => Number(v ?? 0);
  return {
    generated_at: window.until.toISOString(),
    since: window.since.toISOString(),
    truncated: chats.length > maxTelemetryChats,
    chats: shown.map((c) => ({
      id: c.id,
      status: c.status,
      mode: c.mode,
      archived: c.archived,
      has_parent: c.has_parent,
      root_chat_id: c.root_chat_id,
      model_config_id: c.last_model_config_id,
      workspace_bound: c.workspace_bound,
      created_at: c.created_at,
    })),
    chat_message_summaries: summaries.map((s) => ({
      chat_id: s.chat_id,
      messages: {
        user: n(s.user_messages),
        assistant: n(s.assistant_messages),
        tool: n(s.tool_messages),
        system: n(s.system_messages),
      },
      tokens: {
        input: n(s.input_tokens),
        output: n(s.output_tokens),
        reasoning: n(s.reasoning_tokens),
        cache_read: n(s.cache_read_tokens),
        cache_creation: n(s.cache_creation_tokens),
      },
      total_cost_micros: n(s.total_cost_micros),
      runtime_ms: n(s.runtime_ms),
      model_count: n(s.model_count),
    })),
    model_configs: models.map((m) => ({
      id: m.id,
      provider: m.provider,
      model: m.model,
      context_limit: m.context_limit,
      enabled: m.enabled,
      is_default: m.is_default,
    })),
    pull_requests: {
      total: n(prs?.total),
      open: n(prs?.open),
      merged: n(prs?.merged),
      closed: n(prs?.closed),
      draft: n(prs?.draft),
    },
  };
}
