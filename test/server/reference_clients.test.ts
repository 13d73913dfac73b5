import { beforeAll, describe, expect, it } from "vitest";
import { gen } from "../fixtures/index.ts";
import { testApp } from "../setup/app.ts";
import { base, chatRequests, text } from "../setup/chat_requests.ts";

/*
 * The optional fields the reference system's clients send (docs/api.md "Fields of other
 * clients"): stored where pgchatd has a column, validated where they have a meaning, otherwise
 * accepted and ignored. Anything else stays a 400.
 */

let t: Awaited<ReturnType<typeof testApp>>;
let orgId: string;

beforeAll(async () => {
  t = await testApp();
  orgId = (await gen.organization(t.pool)).id;
});

const { member, chatIn, chatRow, stored, send, setStatus } = chatRequests(() => ({ t, orgId }));
const planModeOf = async (chatId: string) =>
  (await t.pool.query("SELECT plan_mode FROM chats WHERE id = $1", [chatId])).rows[0].plan_mode;
const edit = (u: { token: string }, chatId: string, messageId: number, body: unknown) =>
  t.call("PATCH", `${base}/${chatId}/messages/${messageId}`, { token: u.token, body });

const server1 = "0b6f1f8e-8a39-4f6e-9d5c-6f1c2b1e0a01";
const server2 = "0b6f1f8e-8a39-4f6e-9d5c-6f1c2b1e0a02";

describe("create", () => {
  it("stores mcp_server_ids and shows them; a child inherits its parent's", async () => {
    const u = await member();
    const res = await t.call("POST", base, {
      token: u.token,
      body: {
        content: text("hi"),
        mcp_server_ids: [server1, server2],
        reasoning_effort: "high",
      },
    });
    expect(res.status, res.text).toBe(201);
    expect(res.json.mcp_server_ids).toEqual([server1, server2]);
    const child = await t.call("POST", base, {
      token: u.token,
      body: { content: text("sub"), parent_chat_id: res.json.id },
    });
    expect(child.status, child.text).toBe(201);
    expect(child.json.mcp_server_ids).toEqual([server1, server2]);
    const plain = await t.call("POST", base, { token: u.token, body: { content: text("x") } });
    expect(plain.json.mcp_server_ids).toEqual([]);
  });

  it("refuses a reasoning_effort or mcp_server_ids it cannot mean, and unknown fields, creating nothing", async () => {
    const u = await member();
    for (const extra of [
      { reasoning_effort: "extreme" },
      { reasoning_effort: 3 },
      { mcp_server_ids: ["not-a-uuid"] },
      { mcp_server_ids: [server1, server1] },
      { mcp_servers: [server1] },
    ]) {
      const res = await t.call("POST", base, {
        token: u.token,
        body: { content: text("x"), ...extra },
      });
      expect(res.status, JSON.stringify(extra)).toBe(400);
    }
    const { rows } = await t.pool.query(
      "SELECT count(*)::int AS n FROM chats WHERE owner_id = $1",
      [u.id],
    );
    expect(rows[0].n).toBe(0);
  });
});

describe("send", () => {
  it("sets the chat's plan_mode with the message, and clears it with null", async () => {
    const u = await member();
    const chat = await chatIn(u, "waiting");
    const res = await send(u, chat.id, { content: text("plan it"), plan_mode: "plan" });
    expect(res.status, res.text).toBe(200);
    expect(await planModeOf(chat.id)).toBe("plan");
    await setStatus(chat.id, "waiting");
    const off = await send(u, chat.id, { content: text("do it"), plan_mode: null });
    expect(off.status, off.text).toBe(200);
    expect(await planModeOf(chat.id)).toBeNull();
  });

  it("keeps plan_mode and stores no message when the send is refused", async () => {
    const u = await member();
    const chat = await chatIn(u, "waiting");
    const before = (await stored(chat.id)).length;
    const bad = await send(u, chat.id, { content: text("x"), plan_mode: "build" });
    expect(bad.status).toBe(400);
    await t.pool.query("UPDATE chats SET archived = true WHERE id = $1", [chat.id]);
    const archived = await send(u, chat.id, { content: text("x"), plan_mode: "plan" });
    expect(archived.status).toBeGreaterThanOrEqual(400);
    expect(archived.status).toBeLessThan(500);
    expect(await planModeOf(chat.id)).toBeNull();
    expect(await stored(chat.id)).toHaveLength(before);
  });
});

describe("edit", () => {
  it("runs the new turn on model_config_id when given, else on the edited message's model", async () => {
    const u = await member();
    const chat = await chatIn(u, "waiting");
    const first = (await stored(chat.id)).find((m) => m.role === "user")!;
    const other = await gen.modelConfig(t.pool);
    const res = await edit(u, chat.id, first.id, {
      content: text("again, on B"),
      model_config_id: other.id,
    });
    expect(res.status, res.text).toBe(200);
    expect(res.json.message.model_config_id).toBe(other.id);
    expect((await chatRow(chat.id)).last_model_config_id).toBe(other.id);
    await setStatus(chat.id, "waiting");
    const plain = await edit(u, chat.id, res.json.message.id, { content: text("once more") });
    expect(plain.json.message.model_config_id).toBe(other.id);
  });

  it("refuses an unknown model_config_id and leaves the history as it was", async () => {
    const u = await member();
    const chat = await chatIn(u, "waiting");
    const before = await stored(chat.id);
    const first = before.find((m) => m.role === "user")!;
    const res = await edit(u, chat.id, first.id, {
      content: text("x"),
      model_config_id: "00000000-0000-4000-8000-000000000000",
    });
    expect(res.status).toBe(400);
    expect(await stored(chat.id)).toEqual(before);
  });
});
