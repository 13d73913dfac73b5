import { beforeAll, describe, expect, it } from "vitest";
import { parseToken } from "../../src/lib/tokens.ts";
import { gen } from "../fixtures/index.ts";
import { testApp } from "../setup/app.ts";
import { base, chatRequests, type Member, text } from "../setup/chat_requests.ts";

/*
 * The audit log (docs/api.md "Audit log"): every chat, sent or queued message and tool result
 * names the API key that initiated it, and so do archive and unarchive; a chat's owner reads the
 * chat's entries, site owners the deployment's, by key or by chat. No runner here: chats stay
 * where the requests leave them.
 */

let t: Awaited<ReturnType<typeof testApp>>;
let orgId: string;

beforeAll(async () => {
  t = await testApp();
  orgId = (await gen.organization(t.pool)).id;
});

const { member, requireAction, stored, call, chatIn, queue } = chatRequests(() => ({ t, orgId }));

/** The key id of a token (the part before the dash). */
const keyOf = (token: string) => parseToken(token)!.id;

/** A second key of the same user. */
async function secondKey(u: Member): Promise<Member> {
  return { id: u.id, token: await gen.apiKey(t.pool, u.id) };
}

interface Entry {
  id: number;
  action: string;
  actor_user_id: string | null;
  api_key_id: string | null;
  chat_id: string | null;
  detail: Record<string, unknown>;
}

async function createChat(as: Member, body: Record<string, unknown> = {}) {
  const res = await t.call("POST", base, {
    token: as.token,
    body: { organization_id: orgId, content: text("hello"), ...body },
  });
  expect(res.status).toBe(201);
  return res.json.id as string;
}

async function chatAudit(as: Member, chatId: string, query = "") {
  return t.call("GET", `${base}/${chatId}/audit${query}`, { token: as.token });
}

const summary = (entries: Entry[]) => entries.map((e) => [e.action, e.actor_user_id, e.api_key_id]);

describe("GET /chats/{chat}/audit", () => {
  it("names the key that created the chat, queued and sent its messages, answered its tool calls and archived it", async () => {
    const u = await member();
    const a = u;
    const b = await secondKey(u);
    const chatId = await createChat(a);
    // Pending (no runner): the send is queued.
    const queued = await t.call("POST", `${base}/${chatId}/messages`, {
      token: b.token,
      body: { content: text("and then") },
    });
    expect(queued.json).toMatchObject({ queued: true });
    // No runner holds the chat: the interrupt admits the queue head at once, in B's name.
    expect((await t.call("POST", `${base}/${chatId}/interrupt`, { token: a.token })).status).toBe(
      200,
    );
    await requireAction(chatId, [call("call_1")]);
    const answered = await t.call("POST", `${base}/${chatId}/tool-results`, {
      token: a.token,
      body: { results: [{ tool_call_id: "call_1", output: "ok" }] },
    });
    expect(answered.status).toBe(200);
    const archived = await t.call("PATCH", `${base}/${chatId}`, {
      token: b.token,
      body: { archived: true },
    });
    expect(archived.status).toBe(204);

    const res = await chatAudit(u, chatId);
    expect(res.status).toBe(200);
    expect(res.json.has_more).toBe(false);
    const entries: Entry[] = res.json.entries;
    expect(summary(entries)).toEqual([
      ["chat_archive", u.id, keyOf(b.token)],
      ["tool_results", u.id, keyOf(a.token)],
      ["message_send", u.id, keyOf(b.token)],
      ["message_queue", u.id, keyOf(b.token)],
      ["chat_create", u.id, keyOf(a.token)],
    ]);
    // The entries name the rows, and the rows carry the same keys.
    const messages = (await stored(chatId)).filter((m) => m.visibility !== "model");
    const byId = new Map(messages.map((m) => [Number(m.id), m.api_key_id]));
    const [, tool, sent, queue, create] = entries;
    expect(byId.get(create!.detail.message_id as number)).toBe(keyOf(a.token));
    expect(queue!.detail).toEqual({ queued_message_id: queued.json.queued_message.id });
    expect(byId.get(sent!.detail.message_id as number)).toBe(keyOf(b.token));
    expect(byId.get(tool!.detail.message_id as number)).toBe(keyOf(a.token));
    expect(entries[0]).toEqual({
      id: expect.any(Number),
      time: expect.stringMatching(/Z$/),
      action: "chat_archive",
      actor_user_id: u.id,
      actor_agent_id: null,
      api_key_id: keyOf(b.token),
      chat_id: chatId,
      agent_id: null,
      detail: {},
    });
  });

  it("a refused send leaves no audit entry", async () => {
    const u = await member();
    const chatId = await createChat(u);
    const before = (await chatAudit(u, chatId)).json.entries;
    await t.call("PATCH", `${base}/${chatId}`, { token: u.token, body: { archived: true } });
    const refused = await t.call("POST", `${base}/${chatId}/messages`, {
      token: u.token,
      body: { content: text("too late") },
    });
    expect(refused.status).toBe(400);
    const after: Entry[] = (await chatAudit(u, chatId)).json.entries;
    expect(after.map((e) => e.action)).toEqual([
      "chat_archive",
      ...before.map((e: Entry) => e.action),
    ]);
  });

  it("a subagent chat is attributed to the key that spawned it, and the entries outlive the key", async () => {
    const u = await member();
    const spawner = await secondKey(u);
    const rootId = await createChat(u);
    const childId = await createChat(spawner, {
      parent_chat_id: rootId,
      organization_id: undefined,
    });
    const [create] = (await chatAudit(u, childId)).json.entries as Entry[];
    expect(create).toMatchObject({
      action: "chat_create",
      api_key_id: keyOf(spawner.token),
      detail: { parent_chat_id: rootId, message_id: expect.any(Number) },
    });
    const firstUser = (await stored(childId)).find(
      (m) => m.role === "user" && m.visibility === "both",
    );
    expect(firstUser.api_key_id).toBe(keyOf(spawner.token));

    // A deleted key clears the rows' attribution (the foreign key), never the audit log's.
    await t.pool.query("DELETE FROM api_keys WHERE id = $1", [keyOf(spawner.token)]);
    expect((await stored(childId)).every((m) => m.api_key_id === null)).toBe(true);
    const after = (await chatAudit(u, childId)).json.entries as Entry[];
    expect(after[0]!.api_key_id).toBe(keyOf(spawner.token));
  });

  it("a deleted key's queued messages are dropped, never sent in nobody's name", async () => {
    const u = await member();
    const revoked = await secondKey(u);
    const chat = await chatIn(u, "running", { worker: true });
    const queued = await t.call("POST", `${base}/${chat.id}/messages`, {
      token: revoked.token,
      body: { content: text("sent with a key that leaks") },
    });
    expect(queued.json).toMatchObject({ queued: true });
    await t.pool.query("DELETE FROM api_keys WHERE id = $1", [keyOf(revoked.token)]);
    expect(await queue(chat.id)).toEqual([]);
    // The runner lets go; nothing is left to admit.
    await t.pool.query("UPDATE chats SET worker_id = NULL, status = 'waiting' WHERE id = $1", [
      chat.id,
    ]);
    expect((await t.call("POST", `${base}/${chat.id}/interrupt`, { token: u.token })).status).toBe(
      200,
    );
    expect((await stored(chat.id)).map((m) => m.role)).toEqual(["user"]);
    const entries = (await chatAudit(u, chat.id)).json.entries as Entry[];
    expect(summary(entries)).toEqual([
      ["message_queue", u.id, keyOf(revoked.token)],
      ["chat_create", u.id, null],
    ]);
  });

  it("the previous release's archive call still works during an upgrade, naming no key", async () => {
    const u = await member();
    const chat = await chatIn(u, "waiting");
    await t.pool.query("SELECT chat_set_archived($1, $2, true)", [chat.id, u.id]);
    const entries = (await chatAudit(u, chat.id)).json.entries as Entry[];
    expect(summary(entries.slice(0, 1))).toEqual([["chat_archive", u.id, null]]);
  });

  it("pages newest first by after_id, and another member's chat looks missing", async () => {
    const u = await member();
    const other = await member();
    const chatId = await createChat(u);
    for (const word of ["one", "two", "three"]) {
      await t.call("POST", `${base}/${chatId}/messages`, {
        token: u.token,
        body: { content: text(word) },
      });
    }
    const all: Entry[] = (await chatAudit(u, chatId)).json.entries;
    expect(all).toHaveLength(4);
    const first = await chatAudit(u, chatId, "?limit=3");
    expect(first.json.has_more).toBe(true);
    expect(first.json.entries.map((e: Entry) => e.id)).toEqual(all.slice(0, 3).map((e) => e.id));
    const rest = await chatAudit(u, chatId, `?limit=3&after_id=${all[2]!.id}`);
    expect(rest.json).toEqual({ entries: [all[3]], has_more: false });
    const past = await chatAudit(u, chatId, `?after_id=${all[3]!.id}`);
    expect(past.json).toEqual({ entries: [], has_more: false });

    expect((await chatAudit(other, chatId)).status).toBe(404);
    expect((await chatAudit(u, chatId, "?after_id=1e3")).status).toBe(400);
    expect((await chatAudit(u, chatId, "?limit=0")).status).toBe(400);
    expect((await chatAudit(u, "not-a-uuid")).status).toBe(400);
  });
});

describe("GET /chats/audit (site owners)", () => {
  it("lists one key's entries across chats, or one chat's, newest first", async () => {
    const owner = await gen.member(t.pool, { organizationIds: [orgId], owner: true });
    const u = await member();
    const leaked = await secondKey(u);
    const first = await createChat(leaked);
    const second = await createChat(u);
    await t.call("POST", `${base}/${second}/messages`, {
      token: leaked.token,
      body: { content: text("queued in the leaked key's name") },
    });
    const byKey = await t.call("GET", `${base}/audit?api_key_id=${keyOf(leaked.token)}`, {
      token: owner.token,
    });
    expect(byKey.status).toBe(200);
    expect((byKey.json.entries as Entry[]).map((e) => [e.action, e.chat_id, e.api_key_id])).toEqual(
      [
        ["message_queue", second, keyOf(leaked.token)],
        ["chat_create", first, keyOf(leaked.token)],
      ],
    );
    const byChat = await t.call("GET", `${base}/audit?chat_id=${second}&limit=1`, {
      token: owner.token,
    });
    expect(byChat.json.has_more).toBe(true);
    expect(byChat.json.entries.map((e: Entry) => e.action)).toEqual(["message_queue"]);
    const newest = await t.call("GET", `${base}/audit?limit=1`, { token: owner.token });
    expect(newest.json.entries[0].id).toBe(byChat.json.entries[0].id);
  });

  it("refuses members (403) and malformed filters (400)", async () => {
    const owner = await gen.member(t.pool, { organizationIds: [orgId], owner: true });
    const u = await member();
    expect((await t.call("GET", `${base}/audit`, { token: u.token })).status).toBe(403);
    for (const query of ["api_key_id=short", "api_key_id=ABCDEFGHIJ", "chat_id=x", "after_id=0"]) {
      const res = await t.call("GET", `${base}/audit?${query}`, { token: owner.token });
      expect(res.status, query).toBe(400);
    }
  });
});
