import { chatMessageJson, chatQueuedMessageJson } from "../api/shapes.ts";
import type { Pool } from "../db/index.ts";
import {
  getChatEventBounds,
  listChatEventsByAgentInRange,
  listChatEventsByChatInRange,
  listChatEventsByOwnerInRange,
} from "../generated/chat_events.ts";
import {
  getChatPendingToolCallsByChatID,
  listChatMessagesAfterIDByChatID,
} from "../generated/chat_messages.ts";
import { listChatQueuedMessagesByChatID } from "../generated/chat_queue.ts";
import { listChatStreamPartsByChatID } from "../generated/chat_stream_parts.ts";
import { listPendingChatToolCallsByAgentID } from "../generated/chat_tool_calls.ts";
import { getChatByIDForOwner, markChatReadByID } from "../generated/chats.ts";
import type { Logger } from "../log.ts";
import { type Cursor, compareCursors, formatCursor, parseCursor } from "./cursor.ts";
import { streamData, toolCallData } from "./frames.ts";
import type { Hub } from "./hub.ts";
import { agentOfEvent, type EventRow, streamKinds, watchKinds } from "./kinds.ts";
import { type SseSink, sseComment, sseEvent } from "./sse.ts";
import type { Subscriber } from "./subscriber.ts";
import type { RenderEvents, Tailer } from "./tailer.ts";

/*
 * The lifecycle of the two SSE streams of docs/api.md: register (live events are held), send what
 * came before (backfill from the log, or a snapshot), release the held events, then pump the
 * subscriber's queue to the socket until either side closes.
 */

/** A comment this often keeps proxies and load balancers from closing a quiet stream. */
export const heartbeatIntervalMs = 15_000;
/** Log rows per backfill query; a long absence is sent in pages. */
const backfillPage = 500;
/** Messages per snapshot query. */
const snapshotPage = 500;
/** Past every cursor: xid8 and identity ids are below these. */
const maxCursor: Cursor = { xid: 2n ** 64n - 1n, id: Number.MAX_SAFE_INTEGER };
/**
 * Message events logged between a stream's registration and its snapshot read: a handful (the
 * writes of those few milliseconds); the bound only keeps a pathological burst from being read whole.
 */
const maxOverlap = 10_000;

const watchKindList = [...watchKinds];
const streamKindList = [...streamKinds];

export type Resume = { kind: "fresh" } | { kind: "resume"; cursor: Cursor } | { kind: "resync" };

/**
 * What a client's Last-Event-ID (or ?after=) asks for. A cursor that is malformed, was not made by
 * this database (beyond its newest transaction), or lies below what pruning removed cannot be
 * honoured without loss: the client is told to resync.
 */
export async function resolveResume(db: Pool, lastEventId: string | undefined): Promise<Resume> {
  if (lastEventId === undefined || lastEventId === "") return { kind: "fresh" };
  const cursor = parseCursor(lastEventId);
  if (!cursor) return { kind: "resync" };
  const bounds = await getChatEventBounds(db);
  if (!bounds?.next_xid) return { kind: "resync" };
  if (cursor.xid >= BigInt(bounds.next_xid)) return { kind: "resync" };
  const pruned = { xid: BigInt(bounds.pruned_xid), id: bounds.pruned_id };
  if (compareCursors(cursor, pruned) < 0) return { kind: "resync" };
  return { kind: "resume", cursor };
}

/** What a stream needs of this process's Watch (index.ts). */
interface StreamWatch {
  hub: Hub;
  tailer: Pick<Tailer, "position">;
  render: RenderEvents;
  poke(): void;
}

interface StreamContext {
  stream: SseSink;
  watch: StreamWatch;
  db: Pool;
  logger: Logger;
}

/** GET /chats/watch: the owner's chat events. */
export async function runWatchStream(ctx: StreamContext, ownerId: string, resume: Resume) {
  const sub = ctx.watch.hub.subscribeWatch(ownerId);
  await withSubscriber(ctx, sub, async () => {
    // A new watcher's Last-Event-ID starts at the head, so it can resume even before its first
    // event. Not when resuming: a client cut off during the backfill must keep its own cursor.
    if (resume.kind === "fresh") await ctx.stream.write(sseComment("watching", sub.floor));
    if (resume.kind === "resync") await writeResync(ctx, sub);
    if (resume.kind === "resume") {
      await backfill(ctx, sub, resume.cursor, "watch", (after) =>
        listChatEventsByOwnerInRange(ctx.db, { owner_id: ownerId, kinds: watchKindList, ...after }),
      );
    }
  });
}

/**
 * GET /chats/{chat}/stream: a snapshot (status and its error, messages after `afterId`, the calls
 * of a chat in requires_action, the running turn's output so far, queue) unless the client
 * resumes from a cursor, then the chat's live events. The read cursor moves on connect and on
 * disconnect (docs/api.md "has_unread").
 */
export async function runChatStream(
  ctx: StreamContext,
  ownerId: string,
  chatId: string,
  afterId: number,
  resume: Resume,
) {
  const sub = ctx.watch.hub.subscribeChat(ownerId, chatId);
  await markRead(ctx, chatId);
  await withSubscriber(ctx, sub, async () => {
    if (resume.kind === "resume") {
      await backfill(ctx, sub, resume.cursor, "stream", (after) =>
        listChatEventsByChatInRange(ctx.db, { chat_id: chatId, kinds: streamKindList, ...after }),
      );
      return;
    }
    if (resume.kind === "resync") await writeResync(ctx, sub);
    await writeSnapshot(ctx, sub, ownerId, chatId, afterId);
  });
  await markRead(ctx, chatId);
}

/** The lifecycle of an agent's tool-call stream (runAgentStream), besides its events. */
export interface AgentStreamHooks {
  /** At every keep-alive: false when the stream must end (its agent session was replaced). */
  keepAlive(): Promise<boolean>;
  /** Once, when the stream ends. */
  closed(): Promise<void>;
}

/**
 * GET /workspaceagents/me/tool-calls/watch: the calls waiting for the agent to start them (a
 * snapshot) unless it resumes from a cursor, then its live tool_call and tool_call_canceled
 * events (docs/api.md "Workspace tools").
 */
export async function runAgentStream(
  ctx: StreamContext,
  agent: { id: string; ownerId: string },
  resume: Resume,
  hooks: AgentStreamHooks,
) {
  const sub = ctx.watch.hub.subscribeAgent(agent.ownerId, agent.id);
  try {
    await withSubscriber(
      ctx,
      sub,
      async () => {
        if (resume.kind === "resume") {
          await backfill(ctx, sub, resume.cursor, "agent", (after) =>
            listChatEventsByAgentInRange(ctx.db, { agent_id: agent.id, ...after }),
          );
          return;
        }
        if (resume.kind === "resync") await writeResync(ctx, sub);
        await writeAgentSnapshot(ctx, sub, agent.id);
      },
      () => {
        hooks.keepAlive().then(
          (alive) => {
            if (!alive) sub.close("client");
          },
          (err) => ctx.logger.warn({ err, agent: agent.id }, "refreshing an agent stream failed"),
        );
      },
    );
  } finally {
    await hooks.closed();
  }
}

/** Every call waiting for the agent to start it; the last frame carries the stream's cursor. */
async function writeAgentSnapshot(ctx: StreamContext, sub: Subscriber, agentId: string) {
  let after = 0;
  for (;;) {
    const page = await listPendingChatToolCallsByAgentID(ctx.db, {
      agent_id: agentId,
      after_id: after,
      page_limit: snapshotPage,
    });
    if (page.length === 0) break;
    await ctx.stream.write(page.map((t) => sseEvent("tool_call", toolCallData(t))).join(""));
    after = page[page.length - 1]!.id;
    if (page.length < snapshotPage || sub.closed) break;
  }
  // Later calls arrive live. One sent here and again live is harmless: starting a call twice is
  // refused (docs/api.md "Workspace tools").
  await ctx.stream.write(sseComment("watching", sub.floor));
}

async function withSubscriber(
  ctx: StreamContext,
  sub: Subscriber,
  before: () => Promise<void>,
  onHeartbeat?: () => void,
) {
  ctx.stream.onAbort(() => sub.close("client"));
  sub.whenClosed(() => {
    if (sub.closeReason !== "overflow") return;
    ctx.logger.info({ owner: sub.ownerId, chat: sub.chatId }, "slow stream subscriber dropped");
    ctx.stream.close();
  });
  const heartbeat = setInterval(() => {
    sub.heartbeat(ctx.watch.tailer.position);
    onHeartbeat?.();
  }, heartbeatIntervalMs);
  try {
    await before();
    sub.release();
    for (;;) {
      const chunk = await sub.take();
      if (chunk === null || ctx.stream.aborted) break;
      await ctx.stream.write(chunk);
    }
  } finally {
    clearInterval(heartbeat);
    sub.close("client");
  }
}

type RangeArgs = {
  after_xid: string;
  after_id: number;
  until_xid: string;
  until_id: number;
  page_limit: number;
};

/** Sends the logged events in (cursor, sub.floor]; later ones are held in the subscriber. */
async function backfill(
  ctx: StreamContext,
  sub: Subscriber,
  from: Cursor,
  audience: "watch" | "stream" | "agent",
  list: (args: RangeArgs) => Promise<EventRow[]>,
) {
  let after = from;
  while (compareCursors(after, sub.floor) < 0 && !sub.closed) {
    const rows = await list({
      after_xid: after.xid.toString(),
      after_id: after.id,
      until_xid: sub.floor.xid.toString(),
      until_id: sub.floor.id,
      page_limit: backfillPage,
    });
    if (rows.length === 0) break;
    const wanted = rows.map(() => ({
      watch: audience === "watch",
      stream: audience === "stream",
      agent: audience === "agent",
    }));
    const events = await ctx.watch.render(rows, wanted);
    let chunk = "";
    for (const ev of events) {
      const frame =
        audience === "agent"
          ? agentOfEvent(ev.row) === sub.agentId
            ? ev.agent
            : undefined
          : ev.row.owner_id !== sub.ownerId
            ? undefined
            : audience === "watch"
              ? ev.watch?.chatOwnerId === sub.ownerId
                ? ev.watch.frame
                : undefined
              : ev.stream;
      if (!frame) continue;
      chunk += frame.text;
    }
    if (chunk) await ctx.stream.write(chunk);
    after = events[events.length - 1]!.cursor;
    if (rows.length < backfillPage) break;
  }
  // A client that is ahead of this replica's tailer must not get those events twice.
  if (compareCursors(from, sub.lastCursor) > 0) sub.lastCursor = from;
}

async function writeResync(ctx: StreamContext, sub: Subscriber) {
  const cursor = formatCursor(sub.floor);
  await ctx.stream.write(sseEvent("resync", JSON.stringify({ cursor }), sub.floor));
}

async function writeSnapshot(
  ctx: StreamContext,
  sub: Subscriber,
  ownerId: string,
  chatId: string,
  afterId: number,
) {
  const chat = await getChatByIDForOwner(ctx.db, { id: chatId, owner_id: ownerId });
  if (!chat) {
    sub.close("client");
    return;
  }
  // Only the snapshot's last frame carries the cursor: a client cut off in the middle of it has
  // no new Last-Event-ID, so it gets the whole snapshot again instead of the rest of the log.
  // As live: a status of `error` and its ChatError in one write (docs/api.md "Chat stream events").
  await ctx.stream.write(
    sseEvent("status", streamData.status(chat.id, chat.status)) +
      (chat.status === "error" && chat.last_error
        ? sseEvent("error", JSON.stringify(chat.last_error))
        : ""),
  );
  let after = afterId;
  const sent = new Set<number>();
  for (;;) {
    const page = await listChatMessagesAfterIDByChatID(ctx.db, {
      chat_id: chatId,
      after_id: after,
      page_limit: snapshotPage,
    });
    if (page.length === 0) break;
    let chunk = "";
    for (const m of page) {
      chunk += sseEvent("message", JSON.stringify(chatMessageJson(m)));
      sent.add(m.id);
    }
    await ctx.stream.write(chunk);
    after = page[page.length - 1]!.id;
    if (page.length < snapshotPage || sub.closed) break;
  }
  // Messages read above committed before the read, and so did their events: those logged after
  // the floor are the ones that will also arrive live.
  const later = await listChatEventsByChatInRange(ctx.db, {
    chat_id: chatId,
    kinds: ["message"],
    after_xid: sub.floor.xid.toString(),
    after_id: sub.floor.id,
    until_xid: maxCursor.xid.toString(),
    until_id: maxCursor.id,
    page_limit: maxOverlap,
  });
  sub.alreadySent(later.map((r) => Number(r.payload?.message_id)).filter((id) => sent.has(id)));
  if (chat.status === "requires_action") {
    // Read after the messages, so the calls are those of the newest assistant message sent. None
    // left: the client answered meanwhile, and the status change that follows says so.
    const pending = await getChatPendingToolCallsByChatID(ctx.db, { chat_id: chatId });
    const calls = (pending?.tool_calls ?? []) as unknown[];
    if (calls.length > 0) {
      await ctx.stream.write(
        sseEvent("action_required", JSON.stringify({ chat_id: chatId, tool_calls: calls })),
      );
    }
  }
  // The running turn's output so far, read after the messages: a step stored meanwhile marked its
  // parts saved in the same transaction, so they are either in the messages sent or will be a
  // live `message`. Parts published from now on carry a higher seq; those read here (and older
  // ones still on their way) are dropped from the live ones (docs/api.md "Chat stream events").
  const parts = await listChatStreamPartsByChatID(ctx.db, { chat_id: chatId });
  const inFlight = parts.map((p) => p.in_flight_body ?? "").join("");
  if (inFlight) await ctx.stream.write(inFlight);
  if (parts.length > 0) sub.partsThrough = Number(parts[parts.length - 1]!.seq);
  const queue = await listChatQueuedMessagesByChatID(ctx.db, { chat_id: chatId });
  await ctx.stream.write(
    sseEvent("queue_update", streamData.queue(queue.map(chatQueuedMessageJson)), sub.floor),
  );
}

async function markRead(ctx: StreamContext, chatId: string) {
  try {
    await markChatReadByID(ctx.db, { id: chatId });
    ctx.watch.poke();
  } catch (err) {
    ctx.logger.warn({ err, chat: chatId }, "moving the read cursor failed");
  }
}
