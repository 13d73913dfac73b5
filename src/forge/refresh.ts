import type { Queryable } from "../db/index.ts";
import {
  type ClaimStaleChatDiffStatusesRow,
  claimStaleChatDiffStatusByChatID,
  recordChatDiffStatusRefresh,
} from "../generated/chat_diff_statuses.ts";
import type { Secrets } from "../lib/secrets.ts";
import type { Logger } from "../log.ts";
import type { Forge, Resolution } from "./github.ts";
import { parseRemote } from "./remote.ts";

/*
 * One claimed reference, refreshed: its pull request resolved through the forge and the outcome
 * recorded by chat_diff_status_record_refresh (sql/functions/chat_diff_statuses.sql), which
 * applies it only if the reference is still the one claimed. The refresher job
 * (src/jobs/chat_diff_statuses.ts) and GET /{chat} (inline) both call it.
 */

export type ClaimedReference = ClaimStaleChatDiffStatusesRow;

/** The associated data a user's forge token is sealed for: that user's row, and what it is. */
export function forgeTokenSealedFor(userId: string): string {
  return `forge-token:${userId}`;
}

async function ownersToken(
  row: ClaimedReference,
  secrets: Secrets | undefined,
): Promise<string | undefined> {
  if (!row.token_ciphertext || !secrets) return undefined;
  return secrets.decrypt(row.token_ciphertext, forgeTokenSealedFor(row.owner_id!));
}

/** Resolves and records one claimed reference; returns what the forge said. */
export async function refreshClaimedReference(
  deps: { db: Queryable; forge: Forge; secrets?: Secrets | undefined; logger: Logger },
  row: ClaimedReference,
): Promise<Resolution> {
  const repo = parseRemote(row.git_remote_origin!);
  let resolution: Resolution | undefined;
  let token: string | undefined;
  if (!repo) {
    resolution = { outcome: "error", error: "the remote names no owner/repo on a forge host" };
  } else {
    try {
      token = await ownersToken(row, deps.secrets);
    } catch {
      // A token sealed under another key: the owner must set it again; say so, not the value.
      resolution = { outcome: "error", error: "the owner's forge token cannot be opened" };
    }
    resolution ??= await deps.forge.resolve(repo, row.git_branch!, { token });
  }
  if (!resolution) throw new Error("unreachable: no resolution");
  const tokenUsed = token !== undefined;
  const applied = await recordChatDiffStatusRefresh(deps.db, {
    chat_id: row.chat_id!,
    git_branch: row.git_branch!,
    git_remote_origin: row.git_remote_origin!,
    updated_at: row.updated_at!,
    outcome: resolution.outcome,
    pr: resolution.outcome === "found" ? resolution.pr : null,
    error: "error" in resolution ? resolution.error : null,
    until: resolution.outcome === "rate_limited" ? resolution.until.toISOString() : null,
    // A rate limit is the token's: the owner's own, or the deployment's (NULL).
    token_user_id: tokenUsed ? row.owner_id : null,
  });
  if (resolution.outcome === "error" || resolution.outcome === "rate_limited") {
    // A remote no forge here serves fails the same way every 120 s: last_error says so; the log
    // keeps warnings for forges that failed.
    const unserved = !repo || repo.host !== deps.forge.host;
    deps.logger[unserved ? "debug" : "warn"](
      { chat_id: row.chat_id, forge_host: row.forge_host, error: resolution.error },
      "pull-request status refresh failed",
    );
  }
  if (!applied.applied) {
    deps.logger.debug({ chat_id: row.chat_id }, "reference changed during its refresh: dropped");
  }
  return resolution;
}

/**
 * GET /{chat}: a stale reference is claimed and refreshed now rather than at the refresher's next
 * poll, but the response waits at most `boundMs` for it; a slower forge's answer is still
 * recorded when it comes (and reaches watchers as diff_status_change). Resolves with whether the
 * refresh finished in time (the caller then reloads the chat). Nothing happens when the reference
 * is not stale or a refresher holds it.
 */
export async function refreshReferenceInline(
  deps: { db: Queryable; forge: Forge; secrets?: Secrets | undefined; logger: Logger },
  chatId: string,
  boundMs: number,
): Promise<boolean> {
  const deadline = Date.now() + boundMs;
  const [row] = await claimStaleChatDiffStatusByChatID(deps.db, { chat_id: chatId });
  if (!row) return false;
  const refresh = refreshClaimedReference(deps, row).then(
    () => true,
    (err) => {
      deps.logger.warn({ err, chat_id: chatId }, "recording a pull-request status failed");
      return false;
    },
  );
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), Math.max(0, deadline - Date.now()));
  });
  try {
    return await Promise.race([refresh, late]);
  } finally {
    clearTimeout(timer);
  }
}
