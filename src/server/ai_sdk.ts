import type { Queryable } from "../db/index.ts";
import {
  editChatMessage,
  getChatLastUserMessageByChatID,
  getChatPendingToolCallsByChatID,
  sendChatMessage,
  submitChatToolResults,
} from "../generated/chat_messages.ts";
import type { UserActor } from "./deps.ts";
import { badRequest, notFound } from "./errors.ts";

/*
 * What a request of the AI SDK's DefaultChatTransport does to a pgchatd chat (docs/api.md "The AI
 * SDK's useChat"): pgchatd holds the history, so only the request's last message counts. The
 * response (the turn as a UI message stream) is src/watch/ui_stream.ts.
 */

/** The parts of a UIMessage pgchatd reads (the AI SDK's shapes, v5 and later). */
export interface UiPart {
  type: string;
  text?: string;
  toolCallId?: string;
  state?: string;
  output?: unknown;
  errorText?: string;
}

export interface UiRequest {
  id: string;
  messages: { id?: string; role: "user" | "assistant" | "system"; parts: UiPart[] }[];
  trigger: "submit-message" | "regenerate-message";
}

/** A tool part of the client's message: `tool-<name>` (static tools) or `dynamic-tool`. */
const isToolPart = (p: UiPart) => p.type === "dynamic-tool" || p.type.startsWith("tool-");

function textContent(parts: UiPart[]) {
  const content = [];
  for (const p of parts) {
    if (p.type === "text") content.push({ type: "text", text: p.text ?? "" });
    else if (p.type !== "step-start") {
      throw badRequest(
        `The AI SDK endpoint takes text parts only, not "${p.type}".`,
        "Upload files with POST /api/experimental/chats/files and send them with POST /{chat}/messages.",
      );
    }
  }
  if (content.length === 0) throw badRequest("The message has no text.");
  return content;
}

/**
 * Applies the request's last message to the chat: a user message is sent (queued while the chat
 * is busy); the client's assistant message with its tool outputs answers the chat's pending calls;
 * a regenerate sends the newest user message again, as an edit of it. Throws the route's 4xx
 * errors (the rules' SQLSTATEs map through src/server/errors.ts).
 */
export async function applyUiRequest(db: Queryable, actor: UserActor, req: UiRequest) {
  const chat_id = req.id;
  const owner_id = actor.user.id;
  const api_key_id = actor.apiKeyId;
  if (req.trigger === "regenerate-message") {
    const last = await getChatLastUserMessageByChatID(db, { chat_id });
    if (!last) throw notFound("User message");
    await editChatMessage(db, {
      chat_id,
      owner_id,
      message_id: last.id,
      content: last.content,
      api_key_id,
      model_config_id: null,
    });
    return;
  }
  const message = req.messages[req.messages.length - 1]!;
  if (message.role === "user") {
    await sendChatMessage(db, {
      chat_id,
      owner_id,
      content: textContent(message.parts),
      model_config_id: null,
      busy_behavior: "queue",
      api_key_id,
    });
    return;
  }
  if (message.role !== "assistant") throw badRequest("The last message must be the user's.");
  // The client ran its tools: their outputs answer the calls the chat waits for.
  const pending = (await getChatPendingToolCallsByChatID(db, { chat_id }))?.tool_calls as
    | { tool_call_id: string }[]
    | null;
  const waiting = new Set((pending ?? []).map((t) => t.tool_call_id));
  const results = message.parts
    .filter((p) => isToolPart(p) && p.toolCallId && waiting.has(p.toolCallId))
    .filter((p) => p.state === "output-available" || p.state === "output-error")
    .map((p) =>
      p.state === "output-error"
        ? { tool_call_id: p.toolCallId!, output: { error: p.errorText ?? "" }, is_error: true }
        : { tool_call_id: p.toolCallId!, output: p.output ?? null, is_error: false },
    );
  await submitChatToolResults(db, { chat_id, owner_id, results, api_key_id });
}
