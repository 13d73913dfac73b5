import type pg from "pg";
import { channels as projectChannels } from "../../src/db/channels.ts";
import { connectClient } from "../../src/db/pool.ts";
import { announceChatListener } from "../../src/generated/chat_events.ts";

export interface Notice {
  channel: string;
  payload: string;
}

export interface Listener {
  /** Every notification received so far, in arrival order. */
  received: Notice[];
  /** Resolves with the first notification (received or future) matching `match`. */
  next(match?: (n: Notice) => boolean, timeoutMs?: number): Promise<Notice>;
  client: pg.Client;
  close(): Promise<void>;
}

/**
 * A raw LISTEN connection for event tests: no library between the test and Postgres, so a test
 * sees exactly what the server sent. Like a server's, it announces itself before it LISTENs change
 * events or streamed parts, whose publishers NOTIFY only while someone does (chat_listeners_exist).
 */
export async function listen(url: string, ...channels: string[]): Promise<Listener> {
  const client = await connectClient(url, "pgchatd-test-listen");
  const received: Notice[] = [];
  const waiters: { match: (n: Notice) => boolean; resolve: (n: Notice) => void }[] = [];
  const consumed = new Set<Notice>();
  client.on("notification", (msg) => {
    const notice = { channel: msg.channel, payload: msg.payload ?? "" };
    received.push(notice);
    const i = waiters.findIndex((w) => w.match(notice));
    if (i >= 0) {
      consumed.add(notice);
      waiters.splice(i, 1)[0]!.resolve(notice);
    }
  });
  const announced: string[] = [projectChannels.events, projectChannels.parts];
  // Not made while a publisher holds its slot (for its commit): again, as the server does.
  if (channels.some((ch) => announced.includes(ch))) {
    while (!(await announceChatListener(client)).announced) {
      await new Promise((r) => setTimeout(r, 10));
    }
  }
  for (const ch of channels) await client.query(`LISTEN ${client.escapeIdentifier(ch)}`);
  return {
    received,
    client,
    next(match = () => true, timeoutMs = 5_000) {
      const already = received.find((n) => !consumed.has(n) && match(n));
      if (already) {
        consumed.add(already);
        return Promise.resolve(already);
      }
      return new Promise((resolve, reject) => {
        const waiter = {
          match,
          resolve: (n: Notice) => {
            clearTimeout(timer);
            resolve(n);
          },
        };
        const timer = setTimeout(() => {
          waiters.splice(waiters.indexOf(waiter), 1);
          reject(new Error(`no matching notification within ${timeoutMs} ms`));
        }, timeoutMs);
        waiters.push(waiter);
      });
    },
    close: () => client.end(),
  };
}
