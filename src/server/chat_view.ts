import { type ChatRow, chatFileJson, chatJson, chatMessageJson } from "../api/shapes.ts";
import type { Queryable } from "../db/index.ts";
import { listChatFilesByChatID } from "../generated/chat_files.ts";
import { getChatMessageByID } from "../generated/chat_messages.ts";
import { getChatByIDForOwner, listChildChatsByRootIDs } from "../generated/chats.ts";
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
  return { ...json!, files: files.map(chatFileJson) };
}

/** A message as a response (send, edit, tool results, promotion); undefined when it is gone. */
export async function loadMessage(db: Queryable, chatId: string, id: number) {
  const m = await getChatMessageByID(db, { id, chat_id: chatId });
  return m ? chatMessageJson(m) : undefined;
}
