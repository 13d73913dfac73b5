import type { Cursor } from "./cursor.ts";
import { agentKinds, agentOfEvent, type EventRow, streamKinds, watchKinds } from "./kinds.ts";
import { type Frame, Subscriber } from "./subscriber.ts";

/** What the renderer must produce for one event, decided by who is subscribed. */
export interface Wanted {
  watch: boolean;
  stream: boolean;
  /** A workspace agent's tool-call stream. */
  agent: boolean;
}

/** One event rendered for its audiences; a missing side had no subscriber when it was read. */
export interface RenderedEvent {
  row: EventRow;
  cursor: Cursor;
  /** The watch frame, and the owner of the chat it shows (checked again before delivery). */
  watch?: { frame: Frame; chatOwnerId: string };
  /** The chat stream frame (status_change gives `status` and, on error, `error` after it). */
  stream?: Frame | undefined;
  /** The agent stream frame (tool_call, tool_call_canceled). */
  agent?: Frame | undefined;
}

export interface HubOptions {
  /** Per subscriber; see Subscriber. */
  maxQueuedBytes: number;
  /** The tailer's position, read when a subscriber registers. */
  position: () => Cursor;
}

/**
 * The subscribers of this process, by owner (watch streams), by chat (chat streams) and by
 * workspace agent (tool-call streams). Delivery
 * is synchronous and never waits on a socket: each subscriber has its own queue.
 */
export class Hub {
  private readonly byOwner = new Map<string, Set<Subscriber>>();
  private readonly byChat = new Map<string, Set<Subscriber>>();
  private readonly byAgent = new Map<string, Set<Subscriber>>();
  private closing = false;
  /** Subscribers disconnected because they fell behind (see Subscriber). */
  overflows = 0;

  constructor(private readonly opts: HubOptions) {}

  /** A watch stream of one owner's chats. Held until the handler calls `release()`. */
  subscribeWatch(ownerId: string): Subscriber {
    return this.add(this.byOwner, ownerId, new Subscriber(ownerId, null, this.start(), this.max));
  }

  /** A stream of one chat (its owner checked by the route). Held until `release()`. */
  subscribeChat(ownerId: string, chatId: string): Subscriber {
    return this.add(this.byChat, chatId, new Subscriber(ownerId, chatId, this.start(), this.max));
  }

  /** A workspace agent's tool-call stream (the agent authenticated by the route). */
  subscribeAgent(ownerId: string, agentId: string): Subscriber {
    const sub = new Subscriber(ownerId, null, this.start(), this.max, agentId);
    return this.add(this.byAgent, agentId, sub);
  }

  /** What to render for a batch of events just read, given who is subscribed right now. */
  wanted(row: EventRow): Wanted {
    return {
      watch: watchKinds.has(row.kind) && this.byOwner.has(row.owner_id),
      stream: streamKinds.has(row.kind) && row.chat_id !== null && this.byChat.has(row.chat_id),
      agent: agentKinds.has(row.kind) && this.byAgent.has(agentOfEvent(row) ?? ""),
    };
  }

  /**
   * Hands rendered events to their subscribers. Authorization is checked per event and fails
   * closed: a frame reaches a subscriber only when the event's owner is the subscriber's user
   * (and, for watch frames, so is the owner of the chat the frame shows).
   */
  dispatch(events: RenderedEvent[]): void {
    for (const ev of events) {
      if (ev.watch && ev.watch.chatOwnerId === ev.row.owner_id) {
        for (const sub of this.byOwner.get(ev.row.owner_id) ?? []) {
          if (sub.ownerId === ev.row.owner_id) sub.push(ev.watch.frame);
        }
      }
      if (ev.stream) {
        for (const sub of this.byChat.get(ev.row.chat_id!) ?? []) {
          if (sub.ownerId !== ev.row.owner_id || sub.chatId !== ev.row.chat_id) continue;
          sub.push(ev.stream);
        }
      }
      if (ev.agent) {
        // An agent's events name it in their payload; any other subscriber never gets them.
        const agentId = agentOfEvent(ev.row);
        for (const sub of this.byAgent.get(agentId ?? "") ?? []) {
          if (sub.agentId === agentId) sub.push(ev.agent);
        }
      }
    }
  }

  /** Ephemeral events (`message_part`, `retry`; `seq` their dedup key) for a chat's local subscribers. */
  dispatchEphemeral(chatId: string, ownerId: string, body: string, seq?: number): void {
    const subs = this.byChat.get(chatId);
    if (!subs) return;
    const bytes = Buffer.from(body);
    for (const sub of subs) {
      if (sub.ownerId === ownerId) sub.pushEphemeral(bytes, seq);
    }
  }

  /** Whether any chat stream is open: with none, a streamed part is not even parsed. */
  hasChatStreams(): boolean {
    return this.byChat.size > 0;
  }

  /** No subscriber at all: nothing to deliver, so a wake-up need not read. */
  isEmpty(): boolean {
    return this.byOwner.size === 0 && this.byChat.size === 0 && this.byAgent.size === 0;
  }

  /** Subscriber counts, for /metrics and tests. */
  counts(): { watch: number; stream: number; agent: number } {
    const size = (map: Map<string, Set<Subscriber>>) =>
      [...map.values()].reduce((n, set) => n + set.size, 0);
    return { watch: size(this.byOwner), stream: size(this.byChat), agent: size(this.byAgent) };
  }

  /** Shutdown: ends every stream, so their requests finish and the server can drain. */
  closeAll(): void {
    this.closing = true;
    for (const map of [this.byOwner, this.byChat, this.byAgent]) {
      for (const set of map.values()) for (const sub of [...set]) sub.close("shutdown");
    }
  }

  private get max() {
    return this.opts.maxQueuedBytes;
  }

  private start(): Cursor {
    return this.opts.position();
  }

  private add(map: Map<string, Set<Subscriber>>, key: string, sub: Subscriber): Subscriber {
    if (this.closing) {
      sub.close("shutdown");
      return sub;
    }
    let set = map.get(key);
    if (!set) {
      set = new Set();
      map.set(key, set);
    }
    set.add(sub);
    sub.whenClosed(() => {
      if (sub.closeReason === "overflow") this.overflows++;
      set.delete(sub);
      if (set.size === 0 && map.get(key) === set) map.delete(key);
    });
    return sub;
  }
}
