import fs from "node:fs";
import net from "node:net";
import { type Browser, chromium } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { gen } from "../fixtures/index.ts";
import { eventually } from "../setup/runner.ts";
import { type TestServer, testServer } from "../setup/server.ts";

/*
 * The streams in a real browser (docs/api.md "Authentication", "Streams"): headless Chromium
 * (Debian's `chromium`, driven by playwright-core; .ci/run installs it) opens both streams with
 * its own EventSource and the coder_session_token cookie, loses the server, and resumes with the
 * Last-Event-ID it keeps by itself when the server is back.
 */

/** Where Debian installs it; PGCHATD_CHROMIUM points elsewhere. */
const chromiumPath = process.env.PGCHATD_CHROMIUM ?? "/usr/bin/chromium";
const haveChromium = fs.existsSync(chromiumPath);
if (!haveChromium) {
  console.warn(
    `test/browser: SKIPPED, no Chromium at ${chromiumPath} (apt-get install -y chromium, or set PGCHATD_CHROMIUM)`,
  );
}

const base = "/api/experimental/chats";
let browser: Browser | undefined;
const servers: TestServer[] = [];

beforeAll(async () => {
  if (haveChromium) browser = await chromium.launch({ executablePath: chromiumPath });
});
afterAll(async () => {
  await browser?.close();
  await Promise.allSettled(servers.map((s) => s.close()));
});

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
    srv.on("error", reject);
  });
}

interface Seen {
  stream: string;
  event: string;
  id: string;
  data: string;
}

describe.skipIf(!haveChromium)("streams in headless Chromium", () => {
  it("opens the watch and chat streams with the cookie, and resumes both with Last-Event-ID after the server restarts", async () => {
    const port = await freePort();
    let server = await testServer({ port });
    servers.push(server);
    const orgId = (await gen.organization(server.pool)).id;
    const u = await gen.member(server.pool, { organizationIds: [orgId] });
    const chat = await gen.chat(server.pool, { ownerId: u.id, organizationId: orgId });

    const context = await browser!.newContext();
    await context.addCookies([{ name: "coder_session_token", value: u.token, url: server.url }]);
    const page = await context.newPage();
    await page.goto(`${server.url}/healthz`);
    await page.evaluate(
      ({ base, chatId }) => {
        // Runs in the page: the browser's own EventSource (this file's types are Node's).
        const w = globalThis as unknown as {
          seen: Seen[];
          opened: number;
          EventSource: new (
            url: string,
          ) => {
            onopen: () => void;
            addEventListener(
              event: string,
              fn: (e: { lastEventId: string; data: string }) => void,
            ): void;
          };
        };
        w.seen = [];
        w.opened = 0;
        for (const [stream, url] of [
          ["watch", `${base}/watch`],
          ["chat", `${base}/${chatId}/stream`],
        ] as const) {
          const es = new w.EventSource(url);
          es.onopen = () => w.opened++;
          for (const event of ["title_change", "message", "status", "queue_update", "resync"]) {
            es.addEventListener(event, (e) => {
              w.seen.push({ stream, event, id: e.lastEventId, data: e.data });
            });
          }
        }
      },
      { base, chatId: chat.id },
    );
    const seen = () => page.evaluate(() => (globalThis as unknown as { seen: Seen[] }).seen);
    const opened = () => page.evaluate(() => (globalThis as unknown as { opened: number }).opened);
    await eventually(async () => ((await opened()) === 2 ? true : undefined), "both streams open");
    await eventually(
      async () => ((await seen()).some((e) => e.event === "queue_update") ? true : undefined),
      "the chat stream's snapshot",
    );

    await server.pool.query("UPDATE chats SET title = 'before the restart' WHERE id = $1", [
      chat.id,
    ]);
    await eventually(
      async () => ((await seen()).some((e) => e.event === "title_change") ? true : undefined),
      "the first title_change",
    );

    // The server goes away; what happens meanwhile reaches the browser once it is back.
    await server.close();
    const dbUrl = server.dbUrl;
    const pool = server.pool;
    await pool.query("UPDATE chats SET title = 'while it was down' WHERE id = $1", [chat.id]);
    const missed = await gen.chatMessage(pool, chat.id, { text: "missed" });
    server = await testServer({ port, dbUrl });
    servers.push(server);

    const all = await eventually(async () => {
      const events = await seen();
      const gotTitle = events.some(
        (e) => e.event === "title_change" && JSON.parse(e.data).chat.title === "while it was down",
      );
      const gotMessage = events.some(
        (e) => e.stream === "chat" && e.event === "message" && JSON.parse(e.data).id === missed.id,
      );
      return gotTitle && gotMessage ? events : undefined;
    }, "the events logged while the server was down");
    // Resumed, not restarted: no resync, no second snapshot, and each event once.
    expect(all.filter((e) => e.event === "resync")).toEqual([]);
    expect(all.filter((e) => e.stream === "chat" && e.event === "queue_update")).toHaveLength(1);
    const titles = all
      .filter((e) => e.event === "title_change")
      .map((e) => JSON.parse(e.data).chat.title);
    expect(titles).toEqual(["before the restart", "while it was down"]);
    expect(
      all.filter((e) => e.event === "message" && JSON.parse(e.data).id === missed.id),
    ).toHaveLength(1);
    await context.close();
  }, 60_000);
});
