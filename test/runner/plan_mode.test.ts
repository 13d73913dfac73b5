import { beforeAll, describe, expect, it } from "vitest";
import { gen } from "../fixtures/index.ts";
import { testApp } from "../setup/app.ts";
import { eventually, messagesOf, settled, testRunner, textOf } from "../setup/runner.ts";

/*
 * Plan mode (docs/api.md "Plan mode") with the local echo model's /plan, /ask and /tools: a plan
 * turn offers only ask_user_question and propose_plan, a proposed plan becomes the chat's
 * plan.md, and the client's tools come back when the chat leaves plan mode.
 */

const base = "/api/experimental/chats";
const text = (s: string) => [{ type: "text", text: s }];
const lookupTool = {
  name: "lookup",
  description: "Looks something up.",
  input_schema: { type: "object", properties: { q: { type: "string" } } },
};

let t: Awaited<ReturnType<typeof testApp>>;
let orgId: string;

beforeAll(async () => {
  t = await testApp();
  orgId = (await gen.organization(t.pool)).id;
});

async function planChat(token: string, content: string) {
  const res = await t.call("POST", base, {
    token,
    body: { content: text(content), plan_mode: "plan", unsafe_dynamic_tools: [lookupTool] },
  });
  expect(res.status, res.text).toBe(201);
  return res.json.id as string;
}

async function send(token: string, chatId: string, content: string) {
  const res = await t.call("POST", `${base}/${chatId}/messages`, {
    token,
    body: { content: text(content) },
  });
  expect(res.status, res.text).toBe(200);
}

describe("plan mode", () => {
  it("offers only ask_user_question and propose_plan, never the client's tools, until the chat leaves plan mode", async () => {
    const me = await gen.member(t.pool, { organizationIds: [orgId] });
    const { runner } = await testRunner();
    const chat = await planChat(me.token, "/tools");
    runner.wake();
    await settled(t.pool, chat, "waiting");
    expect(textOf((await messagesOf(t.pool, chat)).at(-1)!)).toBe(
      "tools: ask_user_question, propose_plan",
    );

    const left = await t.call("PATCH", `${base}/${chat}`, {
      token: me.token,
      body: { plan_mode: null },
    });
    expect(left.status, left.text).toBe(204);
    await send(me.token, chat, "/tools");
    runner.wake();
    await settled(t.pool, chat, "waiting");
    expect(textOf((await messagesOf(t.pool, chat)).at(-1)!)).toBe("tools: lookup");
  });

  it("saves a proposed plan as the chat's plan.md, listed in its files, and ends the turn", async () => {
    const me = await gen.member(t.pool, { organizationIds: [orgId] });
    const { runner } = await testRunner();
    const chat = await planChat(me.token, "/plan Ship it\n1. Write the code\n2. Test it");
    runner.wake();
    await settled(t.pool, chat, "waiting");
    const shown = await t.call("GET", `${base}/${chat}`, { token: me.token });
    expect(shown.status).toBe(200);
    const plans = shown.json.files.filter((f: { name: string }) => f.name === "plan.md");
    expect(plans).toHaveLength(1);
    const file = await t.call("GET", `${base}/files/${plans[0].id}`, { token: me.token });
    expect(file.status).toBe(200);
    expect(file.text).toBe("# Ship it\n\n1. Write the code\n2. Test it\n");
    const messages = await messagesOf(t.pool, chat);
    // The call and the runner's answer naming the file, and no further model step.
    expect(messages.map((m) => m.role)).toEqual(["user", "assistant", "tool"]);
    expect(messages[2]!.content).toEqual([
      {
        type: "tool-result",
        tool_call_id: expect.any(String),
        tool_name: "propose_plan",
        result: { saved: true, file_id: plans[0].id, name: "plan.md" },
        is_error: false,
      },
    ]);
  });

  it("asking the user waits for the client's answer through tool-results, then the turn goes on", async () => {
    const me = await gen.member(t.pool, { organizationIds: [orgId] });
    const { runner } = await testRunner();
    const chat = await planChat(me.token, "/ask Which database?");
    runner.wake();
    await settled(t.pool, chat, "requires_action");
    const { rows } = await t.pool.query(
      "SELECT payload FROM chat_events WHERE chat_id = $1 AND kind = 'action_required'",
      [chat],
    );
    const [call] = rows[0].payload.tool_calls;
    expect(call).toMatchObject({
      tool_name: "ask_user_question",
      args: { question: "Which database?" },
    });
    const answered = await t.call("POST", `${base}/${chat}/tool-results`, {
      token: me.token,
      body: { results: [{ tool_call_id: call.tool_call_id, output: "PostgreSQL" }] },
    });
    expect(answered.status, answered.text).toBe(200);
    runner.wake();
    await settled(t.pool, chat, "waiting");
    expect(textOf((await messagesOf(t.pool, chat)).at(-1)!)).toBe(
      'tool ask_user_question returned "PostgreSQL"',
    );
  });

  it("a call of the client's tool in plan mode gets an error result the model can act on", async () => {
    const me = await gen.member(t.pool, { organizationIds: [orgId] });
    const { runner } = await testRunner();
    const chat = await planChat(me.token, '/tool lookup {"q": "x"}');
    runner.wake();
    await settled(t.pool, chat, "waiting");
    const messages = await messagesOf(t.pool, chat);
    expect(messages.map((m) => m.role)).toEqual(["user", "assistant", "tool", "assistant"]);
    expect(messages[2]!.content).toEqual([
      expect.objectContaining({
        tool_name: "lookup",
        is_error: true,
        result: { error: expect.stringMatching(/^lookup is not available in plan mode/) },
      }),
    ]);
  });

  it("a plan whose turn was interrupted before it could be saved says so to the model, and no plan.md is linked", async () => {
    const me = await gen.member(t.pool, { organizationIds: [orgId] });
    const { runner, published } = await testRunner();
    // The model proposes, then holds the stream open: the interrupt lands after the call.
    const chat = await planChat(me.token, "/plan --hold 60000 Never saved\nsteps");
    runner.wake();
    await eventually(
      () =>
        published.some((p) => p.chatId === chat && JSON.stringify(p.data).includes("propose_plan"))
          ? true
          : undefined,
      "the propose_plan call to stream",
    );
    const interrupted = await t.call("POST", `${base}/${chat}/interrupt`, { token: me.token });
    expect(interrupted.status, interrupted.text).toBe(200);
    await settled(t.pool, chat, "waiting");
    const results = (await messagesOf(t.pool, chat))
      .flatMap((m) => m.content as { type: string; tool_name?: string }[])
      .filter((p) => p.type === "tool-result" && p.tool_name === "propose_plan");
    expect(results).toHaveLength(1);
    expect(results[0]).toMatchObject({
      is_error: true,
      result: { error: expect.stringMatching(/not saved/) },
    });
    const shown = await t.call("GET", `${base}/${chat}`, { token: me.token });
    expect(shown.json.files).toEqual([]);
  });
});
