import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { gen } from "../fixtures/index.ts";
import { type TestServer, testServer } from "../setup/server.ts";
import { openSse } from "../setup/sse.ts";

/*
 * Browser authentication (docs/api.md "Authentication"): EventSource cannot send headers, so the
 * session token also comes from the `coder_session_token` query parameter (any route) and cookie
 * (reads only: a cross-site page can make a browser send the cookie, never the token itself). Real
 * sockets, because a query string must reach no log line, and the logs are the server's.
 */

const base = "/api/experimental/chats";
let server: TestServer;
let orgId: string;

beforeAll(async () => {
  server = await testServer();
  orgId = (await gen.organization(server.pool)).id;
});
afterAll(() => server?.close());

const member = () => gen.member(server.pool, { organizationIds: [orgId] });

async function request(
  method: string,
  path: string,
  headers: Record<string, string> = {},
  body?: unknown,
) {
  const res = await fetch(`${server.url}${path}`, {
    method,
    headers: { ...(body === undefined ? {} : { "content-type": "application/json" }), ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, text, json: text ? JSON.parse(text) : undefined };
}

const chatsOf = async (userId: string) =>
  (await server.pool.query("SELECT id FROM chats WHERE owner_id = $1", [userId])).rows;

describe("the coder_session_token query parameter", () => {
  it("authenticates reads and writes on every route, and a wrong one is 401", async () => {
    const u = await member();
    const q = `coder_session_token=${encodeURIComponent(u.token)}`;
    const created = await request(
      "POST",
      `${base}?${q}`,
      {},
      {
        content: [{ type: "text", text: "hi" }],
      },
    );
    expect(created.status, created.text).toBe(201);
    const list = await request("GET", `${base}?limit=5&${q}`);
    expect(list.status).toBe(200);
    expect(list.json.map((c: { id: string }) => c.id)).toEqual([created.json.id]);
    expect((await request("GET", `/api/v2/users/me?${q}`)).status).toBe(200);
    expect((await request("GET", `${base}?coder_session_token=nope`)).status).toBe(401);
  });
});

describe("the coder_session_token cookie", () => {
  it("authenticates GET requests, and the header wins over it", async () => {
    const u = await member();
    const other = await member();
    const cookie = { cookie: `theme=dark; coder_session_token=${u.token}` };
    const me = await request("GET", "/api/v2/users/me", cookie);
    expect(me.status).toBe(200);
    expect(me.json.id).toBe(u.id);
    const both = await request("GET", "/api/v2/users/me", {
      ...cookie,
      authorization: `Bearer ${other.token}`,
    });
    expect(both.json.id).toBe(other.id);
  });

  it("never authenticates a write: POST, PATCH and DELETE with only the cookie are 401 and change nothing", async () => {
    const u = await member();
    const chat = await gen.chat(server.pool, { ownerId: u.id, organizationId: orgId });
    const cookie = { cookie: `coder_session_token=${u.token}` };
    const create = await request("POST", base, cookie, { content: [{ type: "text", text: "x" }] });
    expect(create.status).toBe(401);
    expect(create.json.message).toMatch(/cookie authenticates GET and HEAD requests only/);
    const patch = await request("PATCH", `${base}/${chat.id}`, cookie, { title: "forged" });
    expect(patch.status).toBe(401);
    const del = await request("DELETE", `${base}/${chat.id}`, cookie);
    expect(del.status).toBe(401);
    expect(await chatsOf(u.id)).toEqual([{ id: chat.id }]);
    const { rows } = await server.pool.query("SELECT title, archived FROM chats WHERE id = $1", [
      chat.id,
    ]);
    expect(rows[0]).toMatchObject({ archived: false });
    expect(rows[0].title).not.toBe("forged");
  });

  it("opens the watch and chat streams, which resume with Last-Event-ID", async () => {
    const u = await member();
    const chat = await gen.chat(server.pool, { ownerId: u.id, organizationId: orgId });
    const cookie = { cookie: `coder_session_token=${u.token}` };
    const watch = await openSse(`${server.url}${base}/watch`, cookie);
    expect(watch.status).toBe(200);
    const stream = await openSse(`${server.url}${base}/${chat.id}/stream`, cookie);
    expect(stream.status).toBe(200);
    await stream.next((e) => e.event === "queue_update");
    await server.pool.query("UPDATE chats SET title = 'renamed' WHERE id = $1", [chat.id]);
    const renamed = await watch.next((e) => e.event === "title_change");
    watch.close();
    stream.close();
    await server.pool.query("UPDATE chats SET title = 'renamed again' WHERE id = $1", [chat.id]);
    const resumed = await openSse(`${server.url}${base}/watch`, {
      ...cookie,
      "last-event-id": renamed.id,
    });
    const again = await resumed.next((e) => e.event === "title_change");
    expect(JSON.parse(again.data).chat.title).toBe("renamed again");
    resumed.close();
  });
});

describe("logs", () => {
  it("never hold a query string: no token from ?coder_session_token= reaches a log line", async () => {
    const u = await member();
    const secretQuery = `coder_session_token=${encodeURIComponent(u.token)}`;
    const chat = await gen.chat(server.pool, { ownerId: u.id, organizationId: orgId });
    const from = server.logLines.length;
    await request("GET", `${base}?${secretQuery}`);
    await request("GET", `${base}/${chat.id}/messages?limit=0&${secretQuery}`); // 400
    await request("GET", `${base}/not-a-chat?${secretQuery}`); // 400
    await request("GET", `/nowhere?${secretQuery}`); // 404
    await request("GET", `${base}?coder_session_token=wrong-secret-value`); // 401
    await request("POST", `${base}?${secretQuery}`, {}, "not json"); // 400
    const stream = await openSse(`${server.url}${base}/${chat.id}/stream?${secretQuery}`);
    await stream.next((e) => e.event === "queue_update");
    stream.close();
    await stream.ended;
    const logged = server.logLines.slice(from).join("");
    expect(logged).toContain('"route"');
    for (const leak of [u.token, secretQuery, "coder_session_token", "wrong-secret-value"]) {
      expect(logged).not.toContain(leak);
    }
  });
});
