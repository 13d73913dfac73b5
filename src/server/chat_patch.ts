import { type Pool, withTx } from "../db/index.ts";
import {
  archiveChat,
  bindChatWorkspace,
  lockChatForUpdate,
  pinChat,
  renameChatByID,
  setChatLabelsByID,
  setChatPlanModeByID,
  unarchiveChat,
  unpinChat,
} from "../generated/chats.ts";
import { notFound } from "./errors.ts";

/** The fields PATCH /{chat} may change; an absent field stays as it is. */
export interface ChatPatch {
  title?: string | undefined;
  archived?: boolean | undefined;
  pin_order?: number | undefined;
  labels?: Record<string, string> | undefined;
  /** null unbinds. */
  workspace_id?: string | null | undefined;
  /** null leaves plan mode. */
  plan_mode?: "plan" | null | undefined;
}

/**
 * PATCH /{chat}: one rule query per field, all in one transaction. Archive runs before pin, so
 * {archived: false, pin_order: 1} unarchives and then pins. With more than one field (or none,
 * which only checks the chat is the caller's) LockChatForUpdate first takes every lock the rules
 * will take, in the global lock order (docs/sql.md "Lock order"): one after another they would
 * not. PC404 (another owner's chat) and the rules' own errors come from SQL. apiKeyId (the
 * caller's key, null for the server itself) is named in the archive and unarchive audit entries.
 */
export async function patchChat(
  pool: Pool,
  ownerId: string,
  chatId: string,
  patch: ChatPatch,
  apiKeyId: string | null,
): Promise<void> {
  const ids = { id: chatId, owner_id: ownerId };
  const fields = Object.values(patch).filter((v) => v !== undefined).length;
  await withTx(pool, async (tx) => {
    if (fields !== 1) {
      await lockChatForUpdate(tx, {
        ...ids,
        archived: patch.archived ?? null,
        pin: patch.pin_order !== undefined,
        set_workspace: patch.workspace_id !== undefined,
        workspace_id: patch.workspace_id ?? null,
      });
    }
    if (patch.archived === true) await archiveChat(tx, { ...ids, api_key_id: apiKeyId });
    if (patch.archived === false) await unarchiveChat(tx, { ...ids, api_key_id: apiKeyId });
    if (patch.pin_order === 0) await unpinChat(tx, ids);
    else if (patch.pin_order !== undefined)
      await pinChat(tx, { ...ids, pin_order: patch.pin_order });
    if (patch.workspace_id !== undefined)
      await bindChatWorkspace(tx, { ...ids, workspace_id: patch.workspace_id });
    // Plain column changes, one statement at a time on the transaction's client: 0 rows means
    // the chat is not the caller's (the lock step, when it ran, has already said so with PC404).
    const changed = async (rows: Promise<number>) => {
      if ((await rows) === 0) throw notFound("Chat");
    };
    if (patch.title !== undefined)
      await changed(renameChatByID(tx, { ...ids, title: patch.title }));
    if (patch.labels !== undefined)
      await changed(setChatLabelsByID(tx, { ...ids, labels: patch.labels }));
    if (patch.plan_mode !== undefined)
      await changed(setChatPlanModeByID(tx, { ...ids, plan_mode: patch.plan_mode }));
  });
}
