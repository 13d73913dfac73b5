import { z } from "zod";
import { chatErrorKinds } from "../models/chat_error.ts";
import { type EventKind, watchKinds } from "../watch/kinds.ts";

/*
 * Response bodies of docs/api.md as zod schemas: what the OpenAPI document (src/server/openapi.ts)
 * says each route answers. The shapes themselves are built in src/api/shapes.ts; the tests check
 * every response they receive against the document (test/setup/app.ts), so the two cannot drift.
 * Each named schema (`.meta({id})`) becomes a component of the document.
 */

const timestamp = () => z.string().meta({ format: "date-time" });
const uuidString = () => z.string().meta({ format: "uuid" });

export const ErrorBody = z
  .strictObject({
    message: z.string(),
    detail: z.string().optional(),
    validations: z.array(z.strictObject({ field: z.string(), detail: z.string() })).optional(),
    spent_micros: z
      .number()
      .int()
      .optional()
      .meta({ description: "A spend limit's 409: spent in the current period, in micro-dollars" }),
    limit_micros: z
      .number()
      .int()
      .optional()
      .meta({ description: "A spend limit's 409: the limit that applies, in micro-dollars" }),
    resets_at: z
      .string()
      .optional()
      .meta({ description: "A spend limit's 409: when the current period ends" }),
  })
  .meta({ id: "Error", description: 'Every error body (docs/api.md "Errors").' });

export const ChatStatus = z
  .enum(["waiting", "pending", "running", "paused", "completed", "error", "requires_action"])
  .meta({ id: "ChatStatus" });

export const ChatError = z
  .object({
    message: z.string(),
    kind: z.enum(chatErrorKinds),
    provider: z.string().nullable(),
    retryable: z.boolean(),
    status_code: z.number().int().nullable(),
    detail: z.string().nullable(),
  })
  .meta({ id: "ChatError" });

export const ChatDiffStatus = z
  .object({
    chat_id: uuidString(),
    url: z.string().nullable(),
    pull_request_state: z.string().nullable(),
    pull_request_title: z.string(),
    pull_request_draft: z.boolean(),
    pr_number: z.number().int().nullable(),
    changes_requested: z.boolean(),
    additions: z.number().int(),
    deletions: z.number().int(),
    changed_files: z.number().int(),
    git_branch: z.string(),
    git_remote_origin: z.string(),
    refreshed_at: timestamp().nullable(),
    stale_at: timestamp(),
  })
  .meta({ id: "ChatDiffStatus" });

/** A message part as stored and returned (docs/api.md "Part"); providers may add fields. */
export const Part = z
  .looseObject({
    type: z.enum(["text", "reasoning", "tool-call", "tool-result", "file", "context-file"]),
    text: z.string().optional(),
    tool_call_id: z.string().optional(),
    tool_name: z.string().optional(),
    args: z.unknown().optional(),
    result: z.unknown().optional(),
    is_error: z.boolean().optional(),
    file_id: uuidString().optional(),
    context_file_path: z.string().optional(),
    context_file_content: z.string().optional(),
  })
  .meta({ id: "Part" });

export const ChatFile = z
  .object({
    id: uuidString(),
    name: z.string(),
    mimetype: z.string(),
    size: z.number().int(),
    created_at: timestamp(),
  })
  .meta({ id: "ChatFile" });

const chatFields = {
  id: uuidString(),
  owner_id: uuidString(),
  organization_id: uuidString(),
  workspace_id: uuidString().nullable(),
  build_id: uuidString().nullable(),
  agent_id: uuidString().nullable(),
  parent_chat_id: uuidString().nullable(),
  root_chat_id: uuidString().nullable(),
  last_model_config_id: uuidString(),
  title: z.string(),
  status: ChatStatus,
  last_error: ChatError.nullable(),
  diff_status: ChatDiffStatus.nullable(),
  created_at: timestamp(),
  updated_at: timestamp(),
  archived: z.boolean(),
  pin_order: z.number().int().min(0),
  mode: z.string().nullable(),
  plan_mode: z.enum(["plan"]).nullable(),
  client_type: z.enum(["ui", "api"]),
  mcp_server_ids: z.array(uuidString()),
  labels: z.record(z.string(), z.string()),
  has_unread: z.boolean(),
  last_turn_summary: z.string().nullable(),
  context: z.object({
    aggregate_hash: z.string().nullable(),
    dirty: z.boolean(),
    dirty_since: timestamp().nullable(),
    dirty_resources: z.array(z.unknown()).nullable(),
    error: z.string().nullable(),
  }),
  version: z.number().int(),
};

/** A subagent chat as its root embeds it: `children` is always []. */
const ChildChat = z.object({ ...chatFields, children: z.array(z.never()).max(0) });

export const Chat = z
  .object({
    ...chatFields,
    children: z.array(ChildChat),
    files: z.array(ChatFile).optional(),
  })
  .meta({ id: "Chat", description: 'docs/api.md "Chat object".' });

export const ChatMessage = z
  .object({
    id: z.number().int(),
    chat_id: uuidString(),
    created_at: timestamp(),
    role: z.enum(["system", "user", "assistant", "tool"]),
    content: z.array(Part),
    model_config_id: uuidString().nullable(),
    created_by: uuidString().nullable(),
    usage: z
      .object({
        input_tokens: z.number().int(),
        output_tokens: z.number().int(),
        total_tokens: z.number().int(),
        reasoning_tokens: z.number().int(),
        cache_creation_tokens: z.number().int(),
        cache_read_tokens: z.number().int(),
        context_limit: z.number().int().nullable(),
      })
      .nullable(),
    total_cost_micros: z.number().int().nullable(),
    runtime_ms: z.number().int().nullable(),
  })
  .meta({ id: "ChatMessage" });

export const ChatQueuedMessage = z
  .object({
    id: z.number().int(),
    chat_id: uuidString(),
    content: z.array(Part),
    created_at: timestamp(),
    model_config_id: uuidString().nullable(),
    created_by: uuidString().nullable(),
  })
  .meta({ id: "ChatQueuedMessage" });

export const MessagesPage = z
  .object({
    messages: z.array(ChatMessage),
    queued_messages: z.array(ChatQueuedMessage),
    has_more: z.boolean(),
  })
  .meta({ id: "MessagesPage" });

export const SentMessage = z
  .object({
    message: ChatMessage.optional(),
    queued_message: ChatQueuedMessage.optional(),
    queued: z.boolean(),
  })
  .meta({
    id: "SentMessage",
    description: "`message` when admitted, `queued_message` when queued.",
  });

export const EditedMessage = z
  .object({ message: ChatMessage, deleted_message_ids: z.array(z.number().int()) })
  .meta({ id: "EditedMessage" });

export const Prompts = z
  .object({ prompts: z.array(z.object({ id: z.number().int(), text: z.string() })) })
  .meta({ id: "Prompts" });

export const User = z
  .object({
    id: uuidString(),
    username: z.string(),
    name: z.string(),
    email: z.string().nullable(),
    roles: z.array(z.enum(["owner", "member"])),
    organization_ids: z.array(uuidString()),
    created_at: timestamp(),
  })
  .meta({ id: "User" });

export const Group = z
  .object({
    id: uuidString(),
    organization_id: uuidString(),
    name: z.string(),
    chat_spend_limit_micros: z.number().int().nullable(),
    created_at: timestamp(),
  })
  .meta({ id: "Group" });

export const Workspace = z
  .object({
    id: uuidString(),
    name: z.string(),
    owner_id: uuidString(),
    organization_id: uuidString(),
  })
  .meta({ id: "Workspace" });

export const WorkspaceBuild = z
  .object({
    id: uuidString(),
    workspace_id: uuidString(),
    build_number: z.number().int(),
    agents: z.array(
      z.object({
        id: uuidString(),
        name: z.string(),
        token: z.string().meta({ description: "The agent's token, shown once" }),
      }),
    ),
  })
  .meta({ id: "WorkspaceBuild" });

export const Notifications = z
  .object({
    notifications: z.array(
      z.object({
        id: z.number().int(),
        kind: z.string(),
        title: z.string(),
        body: z.string(),
        created_at: timestamp(),
        read_at: timestamp().nullable(),
      }),
    ),
    has_more: z.boolean(),
  })
  .meta({ id: "Notifications" });

export const Health = z
  .object({ status: z.enum(["ok", "unavailable"]), message: z.string().optional() })
  .meta({ id: "Health" });

export const Provider = z
  .object({
    id: uuidString(),
    provider: z.enum(["openai", "anthropic", "openai-compatible", "local"]),
    display_name: z.string(),
    base_url: z.string().nullable(),
    enabled: z.boolean(),
    has_api_key: z.boolean(),
    central_key_enabled: z.boolean(),
    allow_user_key: z.boolean(),
    central_fallback: z.boolean(),
    created_at: timestamp(),
    updated_at: timestamp(),
  })
  .meta({ id: "Provider", description: "A model provider; its key is never returned." });

export const Pricing = z
  .object({
    input: z.number().int(),
    output: z.number().int(),
    cache_read: z.number().int(),
    cache_write: z.number().int(),
  })
  .meta({ id: "Pricing", description: "Micros per million tokens." });

export const ModelConfig = z
  .object({
    id: uuidString(),
    provider_id: uuidString(),
    provider: z.string(),
    model: z.string(),
    display_name: z.string(),
    context_limit: z.number().int(),
    enabled: z.boolean(),
    is_default: z.boolean(),
    pricing: Pricing.nullable(),
    store_responses: z.boolean(),
    created_at: timestamp(),
    updated_at: timestamp(),
  })
  .meta({ id: "ModelConfig" });

export const ModelCatalog = z
  .object({
    providers: z.array(
      z.object({
        id: uuidString(),
        provider: z.string(),
        display_name: z.string(),
        available: z.boolean(),
        unavailable_reason: z.string().optional(),
        allow_user_key: z.boolean(),
        has_user_api_key: z.boolean(),
        models: z.array(
          z.object({
            id: uuidString(),
            model: z.string(),
            display_name: z.string(),
            context_limit: z.number().int(),
            is_default: z.boolean(),
            pricing: Pricing.nullable(),
          }),
        ),
      }),
    ),
  })
  .meta({ id: "ModelCatalog" });

const int = () => z.number().int();

export const UsageLimitStatus = z
  .object({
    is_limited: z.boolean(),
    period: z.enum(["day", "week", "month"]).optional(),
    spend_limit_micros: int().optional(),
    current_spend: int(),
    period_start: timestamp().optional(),
    period_end: timestamp().optional(),
  })
  .meta({
    id: "UsageLimitStatus",
    description: "The period and figures only while a limit applies.",
  });

export const UserOverride = z
  .object({
    user_id: uuidString(),
    username: z.string(),
    name: z.string(),
    spend_limit_micros: int().nullable(),
  })
  .meta({ id: "UserOverride" });

export const GroupOverride = z
  .object({
    group_id: uuidString(),
    group_name: z.string(),
    organization_id: uuidString(),
    member_count: int().nullable(),
    spend_limit_micros: int().nullable(),
  })
  .meta({ id: "GroupOverride" });

export const UsageLimitConfig = z
  .object({
    spend_limit_micros: int().nullable(),
    period: z.enum(["day", "week", "month"]),
    updated_at: timestamp(),
    unpriced_model_count: int().nullable(),
    overrides: z.array(UserOverride),
    group_overrides: z.array(GroupOverride),
  })
  .meta({ id: "UsageLimitConfig" });

const tokenTotals = {
  total_input_tokens: int(),
  total_output_tokens: int(),
  total_cache_read_tokens: int(),
  total_cache_creation_tokens: int(),
};

export const CostSummary = z
  .object({
    start_date: timestamp(),
    end_date: timestamp(),
    total_cost_micros: int(),
    priced_message_count: int(),
    unpriced_message_count: int(),
    ...tokenTotals,
    total_runtime_ms: int(),
    by_model: z.array(
      z.object({
        model_config_id: uuidString().nullable(),
        display_name: z.string().nullable(),
        provider: z.string().nullable(),
        model: z.string().nullable(),
        total_cost_micros: int(),
        message_count: int(),
        ...tokenTotals,
        total_runtime_ms: int(),
      }),
    ),
    by_chat: z.array(
      z.object({
        root_chat_id: uuidString().nullable(),
        chat_title: z.string().nullable(),
        total_cost_micros: int(),
        message_count: int(),
        ...tokenTotals,
        total_runtime_ms: int(),
      }),
    ),
    usage_limit: UsageLimitStatus.optional(),
  })
  .meta({ id: "CostSummary", description: "Subagents roll up to their root chat." });

export const CostUsers = z
  .object({
    start_date: timestamp(),
    end_date: timestamp(),
    count: int(),
    users: z.array(
      z.object({
        user_id: uuidString().nullable(),
        username: z.string().nullable(),
        name: z.string().nullable(),
        total_cost_micros: int(),
        message_count: int(),
        chat_count: int(),
        ...tokenTotals,
        total_runtime_ms: int(),
      }),
    ),
  })
  .meta({ id: "CostUsers", description: "Most expensive first." });

export const ChatCost = z
  .object({
    chat_id: uuidString(),
    total_cost_micros: int(),
    message_count: int(),
    unpriced_message_count: int(),
    total_runtime_ms: int(),
  })
  .meta({ id: "ChatCost", description: "The chat and its descendants." });

export const AuditEntries = z
  .object({
    entries: z.array(
      z.object({
        id: int(),
        time: timestamp(),
        action: z.string(),
        actor_user_id: uuidString().nullable(),
        actor_agent_id: uuidString().nullable(),
        api_key_id: z.string().nullable(),
        chat_id: uuidString().nullable(),
        agent_id: uuidString().nullable(),
        detail: z.record(z.string(), z.unknown()),
      }),
    ),
    has_more: z.boolean(),
  })
  .meta({ id: "AuditEntries" });

export const PullRequestInsights = z
  .object({
    counts: z.object({
      total: int(),
      open: int(),
      merged: int(),
      closed: int(),
      draft: int(),
    }),
    chats: z.array(z.object({ chat_id: uuidString(), diff_status: ChatDiffStatus.nullable() })),
  })
  .meta({ id: "PullRequestInsights" });

/*
 * The streams' events (docs/api.md "Streams", "Workspace tools"). A text/event-stream response's
 * schema describes one event, as OpenAPI 3.2's itemSchema does: `event` its SSE name, `data` its
 * JSON, `id` its cursor (durable events and the snapshot's last event carry one).
 */
const sseItem = <E extends z.ZodType, D extends z.ZodType>(event: E, data: D) =>
  z.object({
    event,
    data,
    id: z.string().optional().meta({ description: "The cursor to resume after (Last-Event-ID)" }),
  });

const Resync = sseItem(
  z.literal("resync"),
  z.object({ cursor: z.string() }).meta({ id: "Resync" }),
).meta({ description: "The cursor could not be honoured: refetch, then continue live" });

const ClientToolCall = z
  .object({ tool_call_id: z.string(), tool_name: z.string(), args: z.unknown() })
  .meta({ id: "ClientToolCall" });

/** A hard-deleted chat's identity, all its event can still say of it. */
const DeletedChat = z
  .object({
    id: uuidString(),
    owner_id: uuidString(),
    organization_id: uuidString().nullable(),
    parent_chat_id: uuidString().nullable(),
    root_chat_id: uuidString().nullable(),
    title: z.string(),
    version: z.number().int(),
  })
  .meta({ id: "DeletedChat" });

/** The watch stream's events about a chat: every watch kind but the notification. */
const chatWatchKinds = [...watchKinds].filter((k) => k !== "notification") as [
  EventKind,
  ...EventKind[],
];

export const WatchStreamEvent = z
  .union([
    sseItem(
      z.enum(chatWatchKinds),
      z
        .object({
          kind: z.string(),
          chat: z.union([Chat, DeletedChat]).nullable(),
          tool_calls: z.array(ClientToolCall).optional(),
        })
        .meta({ id: "ChatEvent" }),
    ),
    sseItem(
      z.literal("notification"),
      z.object({
        kind: z.literal("notification"),
        notification: Notifications.shape.notifications.element,
      }),
    ),
    Resync,
  ])
  .meta({ id: "WatchStreamEvent" });

/** A delta of the running turn: text to append, a whole tool call, or a command's output. */
const StreamPart = z
  .looseObject({
    type: z.enum(["text", "reasoning", "tool-call", "tool-output"]),
    text: z.string().optional(),
    tool_call_id: z.string().optional(),
    tool_name: z.string().optional(),
    args: z.unknown().optional(),
    stream: z.enum(["stdout", "stderr"]).optional(),
  })
  .meta({ id: "StreamPart" });

const turnFields = {
  turn_id: z.string().meta({ description: "The turn the event belongs to" }),
  seq: z.number().int().meta({
    description: "Increases with every event of the chat; drop one at or below the last applied",
  }),
  chat_id: uuidString(),
};

export const ChatStreamEvent = z
  .union([
    sseItem(z.literal("status"), z.object({ chat_id: uuidString(), status: ChatStatus })),
    sseItem(z.literal("error"), ChatError),
    sseItem(z.literal("message"), ChatMessage),
    sseItem(
      z.literal("message_part"),
      z.object({ ...turnFields, part: StreamPart }).meta({ id: "MessagePart" }),
    ),
    sseItem(
      z.literal("retry"),
      z
        .object({
          ...turnFields,
          attempt: z.number().int(),
          max_attempts: z.number().int(),
          delay_ms: z.number().int(),
          error: ChatError,
        })
        .meta({ id: "Retry" }),
    ),
    sseItem(z.literal("queue_update"), z.object({ queued_messages: z.array(ChatQueuedMessage) })),
    sseItem(
      z.literal("action_required"),
      z.object({ chat_id: uuidString(), tool_calls: z.array(ClientToolCall) }),
    ),
    sseItem(
      z.literal("history_reset"),
      z.object({ chat_id: uuidString(), deleted_message_ids: z.array(z.number().int()) }),
    ),
    Resync,
  ])
  .meta({ id: "ChatStreamEvent" });

export const AgentStreamEvent = z
  .union([
    sseItem(
      z.literal("tool_call"),
      z
        .object({
          id: z.number().int(),
          chat_id: uuidString(),
          tool_call_id: z.string(),
          tool_name: z.string(),
          args: z.unknown(),
          state: z.string(),
          created_at: timestamp(),
          deadline_at: timestamp(),
        })
        .meta({ id: "WorkspaceToolCall" }),
    ),
    sseItem(
      z.literal("tool_call_canceled"),
      z.object({
        id: z.number().int(),
        chat_id: uuidString(),
        tool_call_id: z.string(),
        state: z.string(),
        reason: z.unknown(),
      }),
    ),
    Resync,
  ])
  .meta({ id: "AgentStreamEvent" });

/** A Server-Sent Events response in another protocol (the AI SDK's UI message stream). */
export const EventStream = z.string().meta({ description: "text/event-stream" });
