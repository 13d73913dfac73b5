import type { ModelMessage } from "ai";
import type { PoolQueryable } from "../db/index.ts";
import { listChatTitleTurnMessagesByChatID } from "../generated/chat_messages.ts";
import { getChatForRunByID } from "../generated/chat_runs.ts";
import {
  beginChatTitleRegeneration,
  deleteChatTitleRegeneration,
  updateChatTitleFromModelByID,
} from "../generated/chat_titles.ts";
import { type ChatError, classifyError } from "./chat_error.ts";
import { partsOf } from "./prompt.ts";
import type { Models, ResolvedModel } from "./providers.ts";
import { generateQuickText } from "./quick_text.ts";

/*
 * Chat titles from the model: once after the first completed turn (while the title is still the
 * fallback from the first message), and on request (POST /{chat}/title/regenerate) from the first
 * turn and the last three, with a marker where turns were left out.
 */

/** Generated titles are cut to this many characters (the column allows 256). */
const maxTitleLength = 80;
/** A regeneration row left by a crashed server stops blocking the chat after this. */
const regenerationExpirySeconds = 120;

const instructions =
  "You name conversations. Reply with a short title (at most 8 words) that says what the " +
  "conversation is about. Reply with the title only: no quotes, no trailing punctuation.";
const ask = "Write the title of the conversation above.";

export interface TitleTurnRow {
  id: number;
  role: string;
  content: unknown;
}

function textOf(content: unknown): string {
  return partsOf(content)
    .filter((p) => p.type === "text" && p.text)
    .map((p) => p.text)
    .join("")
    .trim();
}

/**
 * The turns as messages (user and assistant text only), with "[… n turns left out …]" between the
 * first turn and the last ones when `totalTurns` says some were skipped. A turn starts at a user
 * message.
 */
export function titleMessages(rows: TitleTurnRow[], totalTurns: number): ModelMessage[] {
  const out: ModelMessage[] = [];
  const left = totalTurns - rows.filter((r) => r.role === "user").length;
  let turnsSeen = 0;
  for (const r of rows) {
    const text = textOf(r.content);
    if (r.role === "user") {
      turnsSeen++;
      // The last turns start right after the first one: the gap is marked there.
      if (turnsSeen === 2 && left > 0) {
        out.push({ role: "user", content: `[… ${left} turn${left === 1 ? "" : "s"} left out …]` });
      }
      if (text) out.push({ role: "user", content: text });
    } else if (r.role === "assistant" && text) {
      out.push({ role: "assistant", content: text });
    }
  }
  return out;
}

export async function generateTitle(
  model: ResolvedModel,
  messages: ModelMessage[],
  signal?: AbortSignal,
): Promise<string> {
  if (!messages.some((m) => m.role === "user")) return "";
  return generateQuickText(model, {
    task: "title",
    instructions,
    messages,
    ask,
    maxLength: maxTitleLength,
    signal,
  });
}

export type RegenerateResult = { ok: true } | { ok: false; error: ChatError };

/**
 * POST /{chat}/title/regenerate: one at a time per chat (PC409 while another runs, across
 * replicas), PC404 for a chat that is not the caller's. A model failure is returned, not thrown.
 */
export async function regenerateChatTitle(
  deps: { db: PoolQueryable; models: Models },
  ownerId: string,
  chatId: string,
): Promise<RegenerateResult> {
  await beginChatTitleRegeneration(deps.db, {
    chat_id: chatId,
    owner_id: ownerId,
    expire_after_seconds: regenerationExpirySeconds,
  });
  try {
    const [chat, rows] = await Promise.all([
      getChatForRunByID(deps.db, { id: chatId, gateway: deps.models.routing.mode === "gateway" }),
      listChatTitleTurnMessagesByChatID(deps.db, { chat_id: chatId }),
    ]);
    if (!chat) return { ok: true };
    let model: ResolvedModel | undefined;
    let title: string;
    try {
      model = await deps.models.resolve(chat);
      title = await generateTitle(model, titleMessages(rows, rows[0]?.turns ?? 0));
    } catch (err) {
      return { ok: false, error: classifyError(err, chat.provider, model?.secrets ?? []) };
    }
    if (title) {
      await updateChatTitleFromModelByID(deps.db, { id: chatId, title, regenerated: true });
    }
    return { ok: true };
  } finally {
    await deleteChatTitleRegeneration(deps.db, { chat_id: chatId });
  }
}
