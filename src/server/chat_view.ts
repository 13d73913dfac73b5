import { type ChatRow, chatFileJson, chatJson, chatMessageJson } from "../api/shapes.ts";
import type { Queryable } from "../db/index.ts";
import { refreshReferenceInline } from "../forge/refresh.ts";
import { listChatFilesByChatID } from "../generated/chat_files.ts";
import { getChatMessageByID } from "../generated/chat_messages.ts";
import {
  getChatByIDForOwner,
  getChatLastInjectedContextByID,
  listChildChatsByRootIDs,
} from "../generated/chats.ts";
import type { AppDeps } from "./deps.ts";
import { notFound } from "./errors.ts";

/*
 * Chats and messages as responses need more than one query (children, files) or are answered by
 * several features' routes (chats, messages, queue, context, titles), so the loading lives here
 * rather than in one route file.
 */

/** Roots with their children embedded (children of every depth, newest first). */
export async function withChildren(db: Queryable, roots: ChatRow[], archived: boolean) {
  const rootIds = roots.filter((r) => r.parent_chat_id === null).map((r) => r.id);
  const children =
    rootIds.length > 0 ? await listChildChatsByRootIDs(db, { root_ids: rootIds, archived }) : [];
  const byRoot = new Map<string, ChatRow[]>();
  for (const child of children) {
    const list = byRoot.get(child.root_chat_id!) ?? [];
    list.push(child);
    byRoot.set(child.root_chat_id!, list);
  }
  return roots.map((r) => chatJson(r, byRoot.get(r.id) ?? []));
}

/** GET /{chat}, the 201 of POST / and the interrupt response: the chat with children and files. */
export async function loadChat(db: Queryable, ownerId: string, chatId: string) {
  const chat = await getChatByIDForOwner(db, { id: chatId, owner_id: ownerId });
  if (!chat) throw notFound("Chat");
  const [json] = await withChildren(db, [chat], chat.archived);
  const files = await listChatFilesByChatID(db, { chat_id: chat.id });
  const injected = await getChatLastInjectedContextByID(db, { id: chat.id, owner_id: ownerId });
  return {
    ...json!,
    files: files.map(chatFileJson),
    last_injected_context: injected?.last_injected_context ?? null,
  };
}

/**
 * GET /{chat}: loadChat, with a pull-request status the refresher has not reached yet resolved
 * now, within deps.forge.inlineMs (docs/api.md "Pull-request status").
 */
export async function loadChatResolved(deps: AppDeps, ownerId: string, chatId: string) {
  const chat = await loadChat(deps.db, ownerId, chatId);
  const stale = chat.diff_status && Date.parse(chat.diff_status.stale_at!) <= Date.now();
  if (!deps.forge || !stale || chat.archived) return chat;
  const resolved = await refreshReferenceInline(
    { db: deps.db, forge: deps.forge.forge, secrets: deps.secrets, logger: deps.logger },
    chatId,
    deps.forge.inlineMs,
  );
  return resolved ? loadChat(deps.db, ownerId, chatId) : chat;
}

/** A message as a response (send, edit, tool results, promotion); undefined when it is gone. */
export async function loadMessage(db: Queryable, chatId: string, id: number) {
  const m = await getChatMessageByID(db, { id, chat_id: chatId });
  return m ? chatMessageJson(m) : undefined;
}
