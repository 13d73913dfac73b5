import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { gen } from "../fixtures/index.ts";
import { testApp } from "../setup/app.ts";
import { type FakeResponses, fakeOpenAIResponses } from "../setup/fake_openai_responses.ts";
import { settled, testRunner } from "../setup/runner.ts";

/*
 * Response chaining (docs/api.md "Response chaining"): a follow-up turn on an OpenAI model that
 * keeps its responses sends previous_response_id and only what came after the stored response;
 * anything else replays the history. Against a fake Responses API that checks what it receives
 * (an unknown previous_response_id is a 400, as at OpenAI).
 */

const base = "/api/experimental/chats";
const text = (s: string) => [{ type: "text", text: s }];

let t: Awaited<ReturnType<typeof testApp>>;
let fake: FakeResponses;
let ownerToken: string;

beforeAll(async () => {
  t = await testApp();
  fake = await fakeOpenAIResponses((req) =>
    JSON.stringify(req.body.input).includes("Write the title") ? "Title: Chained" : "answer",
  );
  const org = await gen.organization(t.pool);
  ownerToken = await gen.apiKey(
    t.pool,
    (await gen.user(t.pool, { owner: true, organizationIds: [org.id] })).id,
  );
});

afterAll(async () => {
  await fake?.close();
});

/** An openai provider at the fake (its own marker) and a model config on it. */
async function openaiModel(storeResponses: boolean) {
  const provider = await t.call("POST", `${base}/providers`, {
    token: ownerToken,
    body: {
      provider: "openai",
      base_url: `${fake.url}?p=${randomBytes(4).toString("hex")}`,
      api_key: `sk-test-${randomBytes(8).toString("hex")}`,
    },
  });
  expect(provider.status, provider.text).toBe(201);
  const model = await t.call("POST", `${base}/model-configs`, {
    token: ownerToken,
    body: {
      provider_id: provider.json.id,
      model: "gpt-fake",
      context_limit: 32_000,
      store_responses: storeResponses,
    },
  });
  expect(model.status, model.text).toBe(201);
  expect(model.json.store_responses).toBe(storeResponses);
  return model.json.id as string;
}

/** The turn request whose input carries `marker` (not the title's or summary's). */
function turnRequest(marker: string) {
  const found = fake.requests.filter((r) => {
    const input = JSON.stringify(r.body.input);
    return (
      input.includes(marker) && !input.includes("Write the title") && !input.includes("Summar")
    );
  });
  expect(found, marker).toHaveLength(1);
  return found[0]!.body;
}

async function assistantResponseIds(chatId: string): Promise<string[]> {
  const { rows } = await t.pool.query(
    `SELECT provider_response_id FROM chat_messages
     WHERE chat_id = $1 AND role = 'assistant' AND NOT deleted ORDER BY id`,
    [chatId],
  );
  return rows.map((r) => r.provider_response_id);
}

async function send(chatId: string, content: string, extra: Record<string, unknown> = {}) {
  const res = await t.call("POST", `${base}/${chatId}/messages`, {
    token: ownerToken,
    body: { content: text(content), ...extra },
  });
  expect(res.status, res.text).toBe(200);
  return res.json;
}

describe("response chaining", () => {
  it("a follow-up turn on a stored response sends previous_response_id, the system prompt and only the new message", async () => {
    const model = await openaiModel(true);
    const m = randomBytes(3).toString("hex");
    const { runner } = await testRunner({ secrets: t.secrets });
    const chat = await t.call("POST", base, {
      token: ownerToken,
      body: { content: text(`first ${m}`), model_config_id: model, system_prompt: `be brief ${m}` },
    });
    expect(chat.status, chat.text).toBe(201);
    runner.wake();
    await settled(t.pool, chat.json.id, "waiting");
    const first = turnRequest(`first ${m}`);
    expect(first.store).toBe(true);
    expect(first.previous_response_id).toBeUndefined();
    const [stored] = await assistantResponseIds(chat.json.id);
    expect(stored).toMatch(/^resp_/);

    await send(chat.json.id, `second ${m}`);
    runner.wake();
    await settled(t.pool, chat.json.id, "waiting");
    const second = turnRequest(`second ${m}`);
    expect(second.previous_response_id).toBe(stored);
    expect(second.store).toBe(true);
    const input = JSON.stringify(second.input);
    expect(input).toContain(`be brief ${m}`);
    expect(input).not.toContain(`first ${m}`);
    expect(input).not.toContain("answer");
  });

  it("replays the history, once, when the provider no longer has the stored response", async () => {
    const model = await openaiModel(true);
    const m = randomBytes(3).toString("hex");
    const { runner } = await testRunner({ secrets: t.secrets });
    const chat = await t.call("POST", base, {
      token: ownerToken,
      body: { content: text(`gone one ${m}`), model_config_id: model },
    });
    runner.wake();
    await settled(t.pool, chat.json.id, "waiting");
    const [stored] = await assistantResponseIds(chat.json.id);
    fake.forget(stored!);
    await send(chat.json.id, `gone two ${m}`);
    runner.wake();
    await settled(t.pool, chat.json.id, "waiting");
    // The chained call was refused (400, not recorded by the fake); the replay answered.
    const replay = turnRequest(`gone two ${m}`);
    expect(replay.previous_response_id).toBeUndefined();
    expect(JSON.stringify(replay.input)).toContain(`gone one ${m}`);
    const { rows } = await t.pool.query("SELECT status, last_error FROM chats WHERE id = $1", [
      chat.json.id,
    ]);
    expect(rows[0]).toEqual({ status: "waiting", last_error: null });
  });

  it("replays the history when storage is off, after an edit, on another provider, or when the last answer has no response id", async () => {
    const stored = await openaiModel(true);
    const { runner } = await testRunner({ secrets: t.secrets });
    const run = async (chatId: string) => {
      runner.wake();
      await settled(t.pool, chatId, "waiting");
    };
    const replayed = (marker: string, earlier: string) => {
      const body = turnRequest(marker);
      expect(body.previous_response_id, marker).toBeUndefined();
      expect(JSON.stringify(body.input), marker).toContain(earlier);
      return body;
    };

    // Storage off: nothing kept at the provider, every turn replays.
    const off = await openaiModel(false);
    const m1 = randomBytes(3).toString("hex");
    const c1 = await t.call("POST", base, {
      token: ownerToken,
      body: { content: text(`off one ${m1}`), model_config_id: off },
    });
    await run(c1.json.id);
    expect(turnRequest(`off one ${m1}`).store).toBe(false);
    await send(c1.json.id, `off two ${m1}`);
    await run(c1.json.id);
    expect(replayed(`off two ${m1}`, `off one ${m1}`).store).toBe(false);

    // An edit after the stored response: what the provider keeps is not the history any more.
    const m2 = randomBytes(3).toString("hex");
    const c2 = await t.call("POST", base, {
      token: ownerToken,
      body: { content: text(`edit one ${m2}`), model_config_id: stored },
    });
    await run(c2.json.id);
    const sent = await send(c2.json.id, `edit two ${m2}`);
    await run(c2.json.id);
    const edited = await t.call("PATCH", `${base}/${c2.json.id}/messages/${sent.message.id}`, {
      token: ownerToken,
      body: { content: text(`edit three ${m2}`) },
    });
    expect(edited.status, edited.text).toBe(200);
    await run(c2.json.id);
    replayed(`edit three ${m2}`, `edit one ${m2}`);

    // Another provider's response id means nothing here.
    const other = await openaiModel(true);
    const m3 = randomBytes(3).toString("hex");
    const c3 = await t.call("POST", base, {
      token: ownerToken,
      body: { content: text(`switch one ${m3}`), model_config_id: stored },
    });
    await run(c3.json.id);
    await send(c3.json.id, `switch two ${m3}`, { model_config_id: other });
    await run(c3.json.id);
    replayed(`switch two ${m3}`, `switch one ${m3}`);

    // The last answer came from a model without stored responses (the local echo model).
    const m4 = randomBytes(3).toString("hex");
    const c4 = await t.call("POST", base, {
      token: ownerToken,
      body: { content: text(`echo one ${m4}`) },
    });
    await run(c4.json.id);
    await send(c4.json.id, `echo two ${m4}`, { model_config_id: stored });
    await run(c4.json.id);
    replayed(`echo two ${m4}`, `echo one ${m4}`);
  });

  it("a context file the agent cleared after the stored response makes the next turn replay; the chained turn's record still lists the context files inside the stored response", async () => {
    const model = await openaiModel(true);
    const owner = await t.pool.query("SELECT user_id FROM api_keys WHERE id = $1", [
      ownerToken.split("-")[0],
    ]);
    const orgId = (
      await t.pool.query(
        "SELECT organization_id FROM organization_members WHERE user_id = $1 LIMIT 1",
        [owner.rows[0].user_id],
      )
    ).rows[0].organization_id;
    const ws = await gen.workspace(t.pool, {
      organizationId: orgId,
      ownerId: owner.rows[0].user_id,
    });
    const agent = (await gen.build(t.pool, ws.id)).agents[0]!;
    const agentCall = (method: string, path: string, body?: unknown) =>
      t.call(method, `/api/v2/workspaceagents/me/${path}`, {
        headers: { "coder-agent-token": agent.token },
        body,
      });
    expect((await agentCall("PUT", "context", { resources: [] })).status).toBe(200);
    const m = randomBytes(3).toString("hex");
    const chat = await t.call("POST", base, {
      token: ownerToken,
      body: { content: text(`ctx one ${m}`), model_config_id: model, workspace_id: ws.id },
    });
    expect(chat.status, chat.text).toBe(201);
    const added = await agentCall("POST", "chat-context", {
      chat_id: chat.json.id,
      files: [{ path: "RULES.md", content: `rules ${m}` }],
    });
    expect(added.status, added.text).toBe(200);
    // Started once the file is there: a runner running meanwhile could take the turn before it.
    const { runner } = await testRunner({ secrets: t.secrets });
    runner.wake();
    await settled(t.pool, chat.json.id, "waiting");
    expect(JSON.stringify(turnRequest(`ctx one ${m}`).input)).toContain(`rules ${m}`);

    // Chained: the file lives inside the stored response, and the record says so.
    await send(chat.json.id, `ctx two ${m}`);
    runner.wake();
    await settled(t.pool, chat.json.id, "waiting");
    const two = turnRequest(`ctx two ${m}`);
    expect(two.previous_response_id).toMatch(/^resp_/);
    expect(JSON.stringify(two.input)).not.toContain(`rules ${m}`);
    const shown = await t.call("GET", `${base}/${chat.json.id}`, { token: ownerToken });
    expect(
      shown.json.last_injected_context.context_files.map((f: { path: string }) => f.path),
    ).toEqual(["RULES.md"]);

    // Cleared: what OpenAI holds has the file; the next turn must not continue from it.
    const cleared = await t.call(
      "DELETE",
      `/api/v2/workspaceagents/me/chat-context?chat_id=${chat.json.id}`,
      { headers: { "coder-agent-token": agent.token } },
    );
    expect(cleared.status, cleared.text).toBe(200);
    await send(chat.json.id, `ctx three ${m}`);
    runner.wake();
    await settled(t.pool, chat.json.id, "waiting");
    const three = turnRequest(`ctx three ${m}`);
    expect(three.previous_response_id).toBeUndefined();
    const input = JSON.stringify(three.input);
    expect(input).toContain(`ctx one ${m}`);
    expect(input).not.toContain(`rules ${m}`);
  });
});
