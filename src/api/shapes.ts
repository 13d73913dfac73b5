import type {
  ListChatCostByUserRow,
  ListChatCostSummaryByOwnerRow,
} from "../generated/chat_costs.ts";
import type { ReportChatGitActivityRow } from "../generated/chat_diff_statuses.ts";
import type { ListChatFilesByChatIDRow } from "../generated/chat_files.ts";
import type { GetChatMessageByIDRow } from "../generated/chat_messages.ts";
import type {
  GetChatModelConfigByIDRow,
  GetChatProviderByIDRow,
} from "../generated/chat_models.ts";
import type { GetChatQueuedMessageByIDRow } from "../generated/chat_queue.ts";
import type {
  GetChatUsageLimitConfigRow,
  GetChatUsageLimitStatusRow,
  ListChatUsageLimitGroupOverridesRow,
  ListChatUsageLimitUserOverridesRow,
} from "../generated/chat_usage_limits.ts";
import type { GetChatByIDForOwnerRow } from "../generated/chats.ts";
import type { GetUserByIDRow } from "../generated/users.ts";

/*
 * Response shapes of docs/api.md: rows from the generated queries in, JSON objects out. Routes
 * shape every response through these, so a field is named and formatted in one place.
 */

export function userJson(u: GetUserByIDRow) {
  return {
    id: u.id,
    username: u.username,
    name: u.name,
    email: u.email,
    roles: u.roles,
    organization_ids: u.organization_ids,
    created_at: u.created_at,
  };
}

/** The chat columns every chat query selects (GetChatByIDForOwner, ListChatsByOwner, ...). */
export type ChatRow = GetChatByIDForOwnerRow;

/** ChatDiffStatus: a diff-status row (as ReportChatGitActivity returns it), or null. */
export function chatDiffStatusJson(d: ReportChatGitActivityRow) {
  if (d.chat_id === null) return null;
  return {
    chat_id: d.chat_id,
    url: d.url,
    pull_request_state: d.pull_request_state,
    pull_request_title: d.pull_request_title ?? "",
    pull_request_draft: d.pull_request_draft ?? false,
    pr_number: d.pr_number,
    changes_requested: d.changes_requested ?? false,
    additions: d.additions ?? 0,
    deletions: d.deletions ?? 0,
    changed_files: d.changed_files ?? 0,
    git_branch: d.git_branch ?? "",
    git_remote_origin: d.git_remote_origin ?? "",
    refreshed_at: d.refreshed_at,
    stale_at: d.stale_at,
  };
}

/** A chat's diff status, from the diff_* columns of chat_rows. */
function diffStatusJson(c: ChatRow) {
  return chatDiffStatusJson({
    chat_id: c.diff_chat_id,
    url: c.diff_url,
    pull_request_state: c.diff_pull_request_state,
    pull_request_title: c.diff_pull_request_title,
    pull_request_draft: c.diff_pull_request_draft,
    pr_number: c.diff_pr_number,
    changes_requested: c.diff_changes_requested,
    additions: c.diff_additions,
    deletions: c.diff_deletions,
    changed_files: c.diff_changed_files,
    git_branch: c.diff_git_branch,
    git_remote_origin: c.diff_git_remote_origin,
    refreshed_at: c.diff_refreshed_at,
    stale_at: c.diff_stale_at,
  });
}

function chatFields(c: ChatRow) {
  return {
    id: c.id,
    owner_id: c.owner_id,
    organization_id: c.organization_id,
    workspace_id: c.workspace_id,
    build_id: c.build_id,
    agent_id: c.agent_id,
    parent_chat_id: c.parent_chat_id,
    root_chat_id: c.root_chat_id,
    last_model_config_id: c.last_model_config_id,
    title: c.title,
    status: c.status,
    last_error: c.last_error,
    diff_status: diffStatusJson(c),
    created_at: c.created_at,
    updated_at: c.updated_at,
    archived: c.archived,
    pin_order: c.pin_order,
    mode: c.mode,
    plan_mode: c.plan_mode,
    client_type: c.client_type,
    mcp_server_ids: c.mcp_server_ids,
    labels: c.labels,
    has_unread: c.has_unread,
    last_turn_summary: c.last_turn_summary,
    context: {
      aggregate_hash: c.context_aggregate_hash,
      dirty: c.context_dirty_since !== null,
      dirty_since: c.context_dirty_since,
      dirty_resources: c.context_dirty_resources,
      error: c.context_error,
    },
    version: c.version,
  };
}

/** A Chat. Only roots embed their subagent chats; a child's `children` is [] (docs/api.md). */
export function chatJson(c: ChatRow, children: ChatRow[] = []) {
  const embedded = c.parent_chat_id === null ? children : [];
  return {
    ...chatFields(c),
    children: embedded.map((child) => ({ ...chatFields(child), children: [] })),
  };
}

export function chatFileJson(f: ListChatFilesByChatIDRow) {
  return { id: f.id, name: f.name, mimetype: f.mimetype, size: f.size, created_at: f.created_at };
}

export function chatMessageJson(m: GetChatMessageByIDRow) {
  const usageColumns = [
    m.input_tokens,
    m.output_tokens,
    m.total_tokens,
    m.reasoning_tokens,
    m.cache_creation_tokens,
    m.cache_read_tokens,
    m.context_limit,
  ];
  return {
    id: m.id,
    chat_id: m.chat_id,
    created_at: m.created_at,
    role: m.role,
    content: m.content,
    model_config_id: m.model_config_id,
    created_by: m.created_by,
    usage: usageColumns.every((v) => v === null)
      ? null
      : {
          input_tokens: m.input_tokens ?? 0,
          output_tokens: m.output_tokens ?? 0,
          total_tokens: m.total_tokens ?? 0,
          reasoning_tokens: m.reasoning_tokens ?? 0,
          cache_creation_tokens: m.cache_creation_tokens ?? 0,
          cache_read_tokens: m.cache_read_tokens ?? 0,
          context_limit: m.context_limit,
        },
    total_cost_micros: m.total_cost_micros,
    runtime_ms: m.runtime_ms,
  };
}

export function chatQueuedMessageJson(q: GetChatQueuedMessageByIDRow) {
  return {
    id: q.id,
    chat_id: q.chat_id,
    content: q.content,
    created_at: q.created_at,
    model_config_id: q.model_config_id,
    created_by: q.created_by,
  };
}

/** A Provider: never the key, only whether one is stored. */
export function chatProviderJson(p: GetChatProviderByIDRow) {
  return {
    id: p.id,
    provider: p.provider,
    display_name: p.display_name,
    base_url: p.base_url,
    enabled: p.enabled,
    has_api_key: p.has_api_key,
    central_key_enabled: p.central_key_enabled,
    allow_user_key: p.allow_user_key,
    central_fallback: p.central_fallback,
    created_at: p.created_at,
    updated_at: p.updated_at,
  };
}

interface PriceColumns {
  input_price_micros: number | null;
  output_price_micros: number | null;
  cache_read_price_micros: number | null;
  cache_write_price_micros: number | null;
}

/** Prices in micros per million tokens; null for a free model (no price set). */
export function pricingJson(m: PriceColumns) {
  const prices = [
    m.input_price_micros,
    m.output_price_micros,
    m.cache_read_price_micros,
    m.cache_write_price_micros,
  ];
  if (prices.every((v) => v === null)) return null;
  return {
    input: m.input_price_micros ?? 0,
    output: m.output_price_micros ?? 0,
    cache_read: m.cache_read_price_micros ?? 0,
    cache_write: m.cache_write_price_micros ?? 0,
  };
}

export function chatModelConfigJson(m: GetChatModelConfigByIDRow) {
  return {
    id: m.id,
    provider_id: m.provider_id,
    provider: m.provider,
    model: m.model,
    display_name: m.display_name,
    context_limit: m.context_limit,
    enabled: m.enabled,
    is_default: m.is_default,
    pricing: pricingJson(m),
    store_responses: m.store_responses,
    created_at: m.created_at,
    updated_at: m.updated_at,
  };
}

/** A cost window as the responses show it (docs/api.md "Cost and limit bodies"). */
export interface CostWindow {
  start_date: string;
  end_date: string;
}

const tokenTotals = (r: ListChatCostSummaryByOwnerRow) => ({
  total_input_tokens: r.total_input_tokens,
  total_output_tokens: r.total_output_tokens,
  total_cache_read_tokens: r.total_cache_read_tokens,
  total_cache_creation_tokens: r.total_cache_creation_tokens,
});

/** UsageLimitStatus: the period and figures only while a limit applies. */
export function usageLimitStatusJson(s: GetChatUsageLimitStatusRow) {
  if (!s.is_limited) return { is_limited: false, current_spend: s.current_spend };
  return {
    is_limited: true,
    period: s.period,
    spend_limit_micros: s.spend_limit_micros,
    current_spend: s.current_spend,
    period_start: s.period_start,
    period_end: s.period_end,
  };
}

/** CostSummary from ListChatCostSummaryByOwner's three groupings; usage_limit only when limited. */
export function costSummaryJson(
  window: CostWindow,
  rows: ListChatCostSummaryByOwnerRow[],
  usageLimit: GetChatUsageLimitStatusRow | null,
) {
  const total = rows.find((r) => r.kind === "total");
  return {
    ...window,
    total_cost_micros: total?.total_cost_micros ?? 0,
    priced_message_count: total?.priced_message_count ?? 0,
    unpriced_message_count: total?.unpriced_message_count ?? 0,
    total_input_tokens: total?.total_input_tokens ?? 0,
    total_output_tokens: total?.total_output_tokens ?? 0,
    total_cache_read_tokens: total?.total_cache_read_tokens ?? 0,
    total_cache_creation_tokens: total?.total_cache_creation_tokens ?? 0,
    total_runtime_ms: total?.total_runtime_ms ?? 0,
    by_model: rows
      .filter((r) => r.kind === "model")
      .map((r) => ({
        model_config_id: r.model_config_id,
        display_name: r.display_name,
        provider: r.provider,
        model: r.model,
        total_cost_micros: r.total_cost_micros,
        message_count: r.priced_message_count + r.unpriced_message_count,
        ...tokenTotals(r),
        total_runtime_ms: r.total_runtime_ms,
      })),
    by_chat: rows
      .filter((r) => r.kind === "chat")
      .map((r) => ({
        root_chat_id: r.root_chat_id,
        chat_title: r.chat_title,
        total_cost_micros: r.total_cost_micros,
        message_count: r.priced_message_count + r.unpriced_message_count,
        ...tokenTotals(r),
        total_runtime_ms: r.total_runtime_ms,
      })),
    ...(usageLimit?.is_limited ? { usage_limit: usageLimitStatusJson(usageLimit) } : {}),
  };
}

/** CostUsers from ListChatCostByUser (its first row carries the count even on an empty page). */
export function costUsersJson(window: CostWindow, rows: ListChatCostByUserRow[]) {
  return {
    ...window,
    count: rows[0]?.total_count ?? 0,
    users: rows
      .filter((r) => r.user_id !== null)
      .map((r) => ({
        user_id: r.user_id,
        username: r.username,
        name: r.name,
        total_cost_micros: r.total_cost_micros,
        message_count: r.message_count,
        chat_count: r.chat_count,
        total_input_tokens: r.total_input_tokens,
        total_output_tokens: r.total_output_tokens,
        total_cache_read_tokens: r.total_cache_read_tokens,
        total_cache_creation_tokens: r.total_cache_creation_tokens,
        total_runtime_ms: r.total_runtime_ms,
      })),
  };
}

/** UsageLimitConfig with its overrides embedded. */
export function usageLimitConfigJson(
  config: GetChatUsageLimitConfigRow,
  overrides: ListChatUsageLimitUserOverridesRow[],
  groupOverrides: ListChatUsageLimitGroupOverridesRow[],
) {
  return {
    spend_limit_micros: config.spend_limit_micros,
    period: config.period,
    updated_at: config.updated_at,
    unpriced_model_count: config.unpriced_model_count,
    overrides,
    group_overrides: groupOverrides,
  };
}
