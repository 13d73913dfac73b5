import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from "vitest";
import { createPool } from "../../src/db/pool.ts";
import { saveChatRunToolStep } from "../../src/generated/chat_runs.ts";
import { compareCursors } from "../../src/watch/index.ts";
import { type PgchatdProcess, spawnPgchatd } from "../../support/spawn.ts";
import { gen } from "../fixtures/index.ts";
import { fakeOpenAI } from "../setup/fake_openai.ts";
import {
  chatState,
  eventually,
  messagesOf,
  type StoredMessage,
  settled,
  testRunner,
} from "../setup/runner.ts";
import { type TestServer, testServer } from "../setup/server.ts";
import { openSse } from "../setup/sse.ts";

/*
 * Workspace tools end to end (docs/api.md "Workspace tools"): a real `pgchatd agent` process on a
 * temporary workspace directory, a real server and runner, and the local echo model's `/run`.
 */

const base = "/api/experimental/chats";

let server: TestServer;
let orgId: string;
const agents: PgchatdProcess[] = [];
const dirs: string[] = [];

beforeAll(async () => {
  server = await testServer();
  orgId = (await gen.organization(server.pool)).id;
});

afterAll(async () => {
  await Promise.allSettled(agents.map((a) => a.stop(2_000)));
  await server?.close();
  await Promise.allSettled(dirs.map((d) => fs.rm(d, { recursive: true, force: true })));
});

async function call(
  method: string,
  url: string,
  token: string,
  body?: unknown,
  // biome-ignore lint/suspicious/noExplicitAny: a response body as the route sent it.
): Promise<{ status: number; json: any; text: string }> {
  const res = await fetch(`${server.url}${url}`, {
    method,
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {}
  return { status: res.status, json, text };
}

async function workspaceDir(files: Record<string, string> = {}): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "pgchatd-ws-"));
  dirs.push(dir);
  for (const [name, content] of Object.entries(files)) {
    await fs.mkdir(path.dirname(path.join(dir, name)), { recursive: true });
    await fs.writeFile(path.join(dir, name), content);
  }
  return dir;
}

function startAgent(token: string, dir: string): Promise<PgchatdProcess> {
  return spawnPgchatd("agent", {
    args: ["--dir", dir],
    env: {
      PATH: process.env.PATH ?? "",
      HOME: process.env.HOME ?? "/tmp",
      PGCHATD_AGENT_URL: server.url,
      PGCHATD_AGENT_TOKEN: token,
      LOG_LEVEL: "warn",
    },
    onSpawn: () => {},
  }).then((p) => {
    agents.push(p);
    return p;
  });
}

/**
 * A member with a workspace whose agent runs on a fresh directory, and a runner for this test
 * (`runner: false`: the test starts its own).
 */
async function setup(files: Record<string, string> = {}, opts: { runner?: boolean } = {}) {
  if (opts.runner !== false) await testRunner({ dbUrl: server.dbUrl, heartbeatMs: 100 });
  const me = await gen.member(server.pool, { organizationIds: [orgId] });
  const ws = await gen.workspace(server.pool, { organizationId: orgId, ownerId: me.id });
  const build = await gen.build(server.pool, ws.id);
  const dir = await workspaceDir(files);
  const agent = await startAgent(build.agents[0]!.token, dir);
  onTestFinished(() => agent.stop(2_000));
  return { me, ws, build, dir, agent, agentId: build.agents[0]!.id };
}

async function createChat(token: string, workspaceId: string | null, text: string, extra = {}) {
  const res = await call("POST", base, token, {
    content: [{ type: "text", text }],
    ...(workspaceId ? { workspace_id: workspaceId } : {}),
    ...extra,
  });
  expect(res.status, res.text).toBe(201);
  return res.json.id as string;
}

async function send(token: string, chatId: string, text: string) {
  const res = await call("POST", `${base}/${chatId}/messages`, token, {
    content: [{ type: "text", text }],
  });
  expect(res.status, res.text).toBe(200);
}

/** The agent's current session (its process registered it at start). */
async function sessionOf(agentId: string): Promise<string> {
  const { rows } = await server.pool.query<{ session_id: string }>(
    "SELECT session_id FROM workspace_agent_sessions WHERE agent_id = $1",
    [agentId],
  );
  return rows[0]!.session_id;
}

/** The tool results of a chat's history, in order. */
function results(messages: StoredMessage[]) {
  return messages
    .filter((m) => m.role === "tool")
    .flatMap((m) => m.content)
    .filter((p) => p.type === "tool-result");
}

const lastText = (messages: StoredMessage[]) =>
  messages
    .filter((m) => m.role === "assistant")
    .at(-1)!
    .content.filter((p) => p.type === "text")
    .map((p) => p.text)
    .join("");

describe("workspace tools through the agent", () => {
  it("runs execute in the workspace root, stores the result, and the model answers with it", async () => {
    const { me, ws, dir } = await setup({ "hello.txt": "hi there\n" });
    const chat = await createChat(
      me.token,
      ws.id,
      '/run execute {"command":"cat hello.txt; pwd; echo oops >&2; exit 3"}',
    );
    await settled(server.pool, chat, "waiting");
    const messages = await messagesOf(server.pool, chat);
    const [r] = results(messages);
    expect(r).toMatchObject({ tool_name: "execute" });
    expect(r!.is_error).toBe(false);
    const out = r!.result as { exit_code: number; stdout: string; stderr: string };
    expect(out.exit_code).toBe(3);
    expect(out.stdout).toBe(`hi there\n${await fs.realpath(dir)}\n`);
    expect(out.stderr).toBe("oops\n");
    expect(lastText(messages)).toMatch(/^tool execute returned \{.*"exit_code":3/);
  });

  it("runs a command in the background and reads its output with process_output", async () => {
    const { me, ws } = await setup();
    const chat = await createChat(
      me.token,
      ws.id,
      '/run execute {"command":"echo started; sleep 0.2; echo finished","background":true}',
    );
    await settled(server.pool, chat, "waiting");
    const started = results(await messagesOf(server.pool, chat))[0]!.result as {
      process_id: string;
    };
    expect(started.process_id).toMatch(/^proc_/);
    const done = await eventually(async () => {
      await send(me.token, chat, `/run process_output {"process_id":"${started.process_id}"}`);
      await settled(server.pool, chat, "waiting");
      const r = results(await messagesOf(server.pool, chat)).at(-1)!.result as {
        running: boolean;
        exit_code: number;
        stdout: string;
      };
      return r.running ? undefined : r;
    }, "the background command to finish");
    expect(done).toMatchObject({ exit_code: 0, stdout: "started\nfinished\n" });
  });

  it("reads, writes, edits and lists files under the workspace root", async () => {
    const { me, ws, dir } = await setup({ "notes/a.txt": "one\ntwo\nthree\nfour\n" });
    const chat = await createChat(
      me.token,
      ws.id,
      '/run read_file {"path":"notes/a.txt","offset":2,"limit":2}',
    );
    await settled(server.pool, chat, "waiting");
    expect(results(await messagesOf(server.pool, chat)).at(-1)!.result).toEqual({
      path: "notes/a.txt",
      content: "two\nthree\n",
      start_line: 2,
      end_line: 3,
      total_lines: 4,
      truncated: true,
    });

    await send(me.token, chat, '/run write_file {"path":"src/new.txt","content":"alpha beta\\n"}');
    await settled(server.pool, chat, "waiting");
    expect(results(await messagesOf(server.pool, chat)).at(-1)!.result).toEqual({
      path: "src/new.txt",
      bytes: 11,
      created: true,
    });
    expect(await fs.readFile(path.join(dir, "src/new.txt"), "utf8")).toBe("alpha beta\n");

    await send(
      me.token,
      chat,
      '/run edit_files {"edits":[{"path":"src/new.txt","old":"beta","new":"gamma"},{"path":"notes/a.txt","old":"four","new":"4"}]}',
    );
    await settled(server.pool, chat, "waiting");
    expect(results(await messagesOf(server.pool, chat)).at(-1)).toMatchObject({
      is_error: false,
      result: {
        edited: [
          { path: "src/new.txt", edits: 1 },
          { path: "notes/a.txt", edits: 1 },
        ],
      },
    });
    expect(await fs.readFile(path.join(dir, "src/new.txt"), "utf8")).toBe("alpha gamma\n");
    expect(await fs.readFile(path.join(dir, "notes/a.txt"), "utf8")).toBe("one\ntwo\nthree\n4\n");

    await send(me.token, chat, '/run list_directory {"path":"."}');
    await settled(server.pool, chat, "waiting");
    expect(results(await messagesOf(server.pool, chat)).at(-1)!.result).toEqual({
      path: ".",
      entries: [
        { name: "notes", type: "directory", size: null },
        { name: "src", type: "directory", size: null },
      ],
      truncated: false,
    });
  });

  it("changes nothing when an edit does not match exactly once, and says which", async () => {
    const { me, ws, dir } = await setup({ "a.txt": "x x\n", "b.txt": "keep\n" });
    const chat = await createChat(
      me.token,
      ws.id,
      '/run edit_files {"edits":[{"path":"b.txt","old":"keep","new":"changed"},{"path":"a.txt","old":"x","new":"y"}]}',
    );
    await settled(server.pool, chat, "waiting");
    expect(results(await messagesOf(server.pool, chat)).at(-1)).toMatchObject({
      is_error: true,
      result: {
        error: expect.stringMatching(/^edit 2 \(a\.txt\): old text occurs more than once/),
      },
    });
    expect(await fs.readFile(path.join(dir, "b.txt"), "utf8")).toBe("keep\n");

    await send(
      me.token,
      chat,
      '/run edit_files {"edits":[{"path":"a.txt","old":"zzz","new":"y"}]}',
    );
    await settled(server.pool, chat, "waiting");
    expect(results(await messagesOf(server.pool, chat)).at(-1)).toMatchObject({
      is_error: true,
      result: { error: expect.stringMatching(/old text not found/) },
    });
  });

  it("refuses paths that leave the workspace root, by .., by an absolute path or through a symlink", async () => {
    const outside = await workspaceDir({ "secret.txt": "do not read\n" });
    const { me, ws, dir } = await setup({ "in.txt": "inside\n" });
    await fs.symlink(outside, path.join(dir, "link"));
    await fs.symlink(path.join(outside, "missing.txt"), path.join(dir, "dangling"));
    const attempts = [
      `/run read_file {"path":"../${path.basename(outside)}/secret.txt"}`,
      `/run read_file {"path":${JSON.stringify(path.join(outside, "secret.txt"))}}`,
      '/run read_file {"path":"link/secret.txt"}',
      '/run write_file {"path":"link/planted.txt","content":"x"}',
      '/run write_file {"path":"dangling","content":"x"}',
      '/run list_directory {"path":"link"}',
      '/run edit_files {"edits":[{"path":"link/secret.txt","old":"do","new":"did"}]}',
    ];
    const chat = await createChat(me.token, ws.id, attempts[0]!);
    await settled(server.pool, chat, "waiting");
    for (const text of attempts.slice(1)) {
      await send(me.token, chat, text);
      await settled(server.pool, chat, "waiting");
    }
    const refused = results(await messagesOf(server.pool, chat));
    expect(refused).toHaveLength(attempts.length);
    for (const r of refused) {
      expect(r.is_error, JSON.stringify(r)).toBe(true);
      expect((r.result as { error: string }).error).toMatch(
        /outside the workspace root|symbolic link/,
      );
    }
    expect((await fs.readdir(outside)).sort()).toEqual(["secret.txt"]);
    expect(await fs.readFile(path.join(outside, "secret.txt"), "utf8")).toBe("do not read\n");
  });

  it("shows the model a precise schema error for bad arguments and records nothing for the agent", async () => {
    const { me, ws } = await setup();
    const chat = await createChat(me.token, ws.id, '/run read_file {"path":"a","limit":0}');
    await settled(server.pool, chat, "waiting");
    expect(results(await messagesOf(server.pool, chat))[0]).toMatchObject({
      is_error: true,
      result: { error: expect.stringMatching(/input schema of read_file: limit: .*>=1/) },
    });
    const calls = await server.pool.query("SELECT 1 FROM chat_tool_calls WHERE chat_id = $1", [
      chat,
    ]);
    expect(calls.rowCount).toBe(0);
  });

  it("reports a call its agent crashed in as interrupted after the restart, and never runs it again", async () => {
    const { me, ws, dir, agent, build } = await setup();
    const log = path.join(dir, "runs.log");
    const chat = await createChat(
      me.token,
      ws.id,
      `/run execute {"command":"echo $$ >> runs.log; sleep 30"}`,
    );
    await eventually(
      async () => (await fs.readFile(log, "utf8").catch(() => "")) || undefined,
      "the command to start",
    );
    agent.child.kill("SIGKILL");
    await agent.exited;
    // The crashed agent's command would run on: it is not the agent's any more.
    process.kill(Number((await fs.readFile(log, "utf8")).trim()), "SIGKILL");
    expect((await chatState(server.pool, chat)).status).toBe("running");

    await startAgent(build.agents[0]!.token, dir);
    await settled(server.pool, chat, "waiting");
    const [r] = results(await messagesOf(server.pool, chat));
    expect(r).toMatchObject({
      is_error: true,
      result: { error: expect.stringMatching(/^interrupted: the workspace agent restarted/) },
    });
    expect((await fs.readFile(log, "utf8")).trim().split("\n")).toHaveLength(1);
    const row = await server.pool.query("SELECT state FROM chat_tool_calls WHERE chat_id = $1", [
      chat,
    ]);
    expect(row.rows).toEqual([{ state: "interrupted" }]);
  });

  it("never lets an agent see or answer another workspace's calls", async () => {
    const a = await setup();
    const b = await setup({}, { runner: false });
    const spy = await openSse(
      `${server.url}/api/v2/workspaceagents/me/tool-calls/watch?session_id=${await sessionOf(b.agentId)}`,
      { "coder-agent-token": b.build.agents[0]!.token },
    );
    expect(spy.status).toBe(200);
    const chat = await createChat(
      a.me.token,
      a.ws.id,
      '/run write_file {"path":"which.txt","content":"A"}',
    );
    await settled(server.pool, chat, "waiting");
    expect(await fs.readFile(path.join(a.dir, "which.txt"), "utf8")).toBe("A");
    expect(await fs.readdir(b.dir)).toEqual([]);
    const { rows } = await server.pool.query<{ id: number }>(
      "SELECT id FROM chat_tool_calls WHERE chat_id = $1",
      [chat],
    );
    // B's token cannot start or answer A's call: it does not exist for B.
    const session = await sessionOf(b.agentId);
    const bodies = {
      start: { session_id: session },
      result: { session_id: session, result: "forged" },
      progress: { session_id: session, stdout: "forged" },
    };
    for (const [route, body] of Object.entries(bodies)) {
      const res = await fetch(
        `${server.url}/api/v2/workspaceagents/me/tool-calls/${rows[0]!.id}/${route}`,
        {
          method: "POST",
          headers: {
            "coder-agent-token": b.build.agents[0]!.token,
            "content-type": "application/json",
          },
          body: JSON.stringify(body),
        },
      );
      expect(res.status, route).toBe(404);
    }
    spy.close();
    expect(spy.events.filter((e) => e.event.startsWith("tool_call"))).toEqual([]);
  });

  it("answers built-in calls first and stores them, then waits for the client's call of the same step", async () => {
    const { me, ws, dir } = await setup();
    const lookup = { name: "lookup", description: "Looks up.", input_schema: { type: "object" } };
    const chat = await createChat(
      me.token,
      ws.id,
      '/run write_file {"path":"out.txt","content":"built-in"}\n/tool lookup {"q":"x"}',
      { unsafe_dynamic_tools: [lookup] },
    );
    await settled(server.pool, chat, "requires_action");
    expect(await fs.readFile(path.join(dir, "out.txt"), "utf8")).toBe("built-in");
    const before = await messagesOf(server.pool, chat);
    expect(results(before).map((r) => r.tool_name)).toEqual(["write_file"]);
    const pending = await call("GET", `${base}/${chat}`, me.token);
    expect(pending.status).toBe(200);
    const { rows } = await server.pool.query("SELECT tool_name FROM chat_pending_tool_calls($1)", [
      chat,
    ]);
    expect(rows).toEqual([{ tool_name: "lookup" }]);
    const lookupId = before
      .flatMap((m) => m.content)
      .find((p) => p.type === "tool-call" && p.tool_name === "lookup")!.tool_call_id;
    const answered = await call("POST", `${base}/${chat}/tool-results`, me.token, {
      results: [{ tool_call_id: lookupId, output: "found" }],
    });
    expect(answered.status, answered.text).toBe(200);
    await settled(server.pool, chat, "waiting");
    const after = await messagesOf(server.pool, chat);
    expect(results(after).map((r) => r.tool_name)).toEqual(["write_file", "lookup"]);
    // The model sees both results of its step.
    expect(lastText(after)).toBe(
      'tool write_file returned {"path":"out.txt","bytes":8,"created":true}\ntool lookup returned "found"',
    );
  });

  it("stops the command of a call whose turn is interrupted, and the history says interrupted", async () => {
    const { me, ws, dir } = await setup();
    const chat = await createChat(
      me.token,
      ws.id,
      `/run execute {"command":"echo $$ > pid; sleep 30"}`,
    );
    const pid = await eventually(
      async () =>
        Number(await fs.readFile(path.join(dir, "pid"), "utf8").catch(() => "")) || undefined,
      "the command to start",
    );
    const res = await call("POST", `${base}/${chat}/interrupt`, me.token);
    expect(res.status, res.text).toBe(200);
    await settled(server.pool, chat, "waiting");
    expect(results(await messagesOf(server.pool, chat))).toMatchObject([
      { tool_name: "execute", is_error: true, result: { error: "interrupted" } },
    ]);
    // Gone, or a zombie (killed, not reaped yet).
    await eventually(async () => {
      const stat = await fs.readFile(`/proc/${pid}/stat`, "utf8").catch(() => "");
      return stat === "" || /^\d+ \(.*\) Z /.test(stat) ? true : undefined;
    }, "the agent to kill the command");
  });

  it("streams a running command's output to the chat stream as tool-output parts", async () => {
    const { me, ws } = await setup();
    const chat = await createChat(me.token, ws.id, "hello");
    await settled(server.pool, chat, "waiting");
    const stream = await openSse(`${server.url}${base}/${chat}/stream`, {
      authorization: `Bearer ${me.token}`,
    });
    await send(
      me.token,
      chat,
      '/run execute {"command":"for i in 1 2 3; do echo line$i; sleep 0.4; done"}',
    );
    const parts = await stream.waitFor(
      2,
      (e) => e.event === "message_part" && JSON.parse(e.data).part.type === "tool-output",
    );
    const first = JSON.parse(parts[0]!.data);
    expect(first).toMatchObject({
      chat_id: chat,
      part: { type: "tool-output", stream: "stdout", text: expect.stringMatching(/^line1\n/) },
    });
    await settled(server.pool, chat, "waiting");
    stream.close();
  });

  it("ends a call the agent does not answer in time with an error result", async () => {
    const me = await gen.member(server.pool, { organizationIds: [orgId] });
    const ws = await gen.workspace(server.pool, { organizationId: orgId, ownerId: me.id });
    const build = await gen.build(server.pool, ws.id);
    const agentToken = build.agents[0]!.token;
    // An agent that is online (its stream is open) but never starts anything.
    const session = await fetch(`${server.url}/api/v2/workspaceagents/me/sessions`, {
      method: "POST",
      headers: { "coder-agent-token": agentToken },
    }).then((r) => r.json() as Promise<{ session_id: string }>);
    const silent = await openSse(
      `${server.url}/api/v2/workspaceagents/me/tool-calls/watch?session_id=${session.session_id}`,
      { "coder-agent-token": agentToken },
    );
    const runner = await testRunner({ dbUrl: server.dbUrl, toolAnswerMs: 300 });
    const chat = await createChat(me.token, ws.id, '/run read_file {"path":"a.txt"}');
    runner.runner.wake();
    const offered = await silent.next((e) => e.event === "tool_call");
    expect(JSON.parse(offered.data)).toMatchObject({ tool_name: "read_file", state: "pending" });
    await silent.next((e) => e.event === "tool_call_canceled");
    await settled(server.pool, chat, "waiting");
    expect(results(await messagesOf(server.pool, chat))).toMatchObject([
      {
        is_error: true,
        result: { error: "timed out: the workspace agent did not answer within 0.3 seconds" },
      },
    ]);
    silent.close();
  });

  it("keeps waiting for the agent's answer across a runner restart, and runs the call once", async () => {
    const { me, ws, dir } = await setup({}, { runner: false });
    const first = await testRunner({ dbUrl: server.dbUrl, heartbeatMs: 100 });
    const chat = await createChat(
      me.token,
      ws.id,
      // The command waits for the test's go: it is still running when the runner stops.
      `/run execute {"command":"echo run >> runs.log; while [ ! -f go ]; do sleep 0.05; done; echo done"}`,
    );
    first.runner.wake();
    await eventually(
      async () =>
        (await fs.readFile(path.join(dir, "runs.log"), "utf8").catch(() => "")) || undefined,
      "the command to start",
    );
    // Shutdown hands the chat back (pending); the agent's command runs on.
    await first.runner.stop();
    expect((await chatState(server.pool, chat)).status).toBe("pending");
    const second = await testRunner({ dbUrl: server.dbUrl, heartbeatMs: 100 });
    second.runner.wake();
    await fs.writeFile(path.join(dir, "go"), "");
    await settled(server.pool, chat, "waiting");
    const messages = await messagesOf(server.pool, chat);
    expect(results(messages)).toMatchObject([
      { tool_name: "execute", is_error: false, result: { exit_code: 0, stdout: "done\n" } },
    ]);
    expect(messages.filter((m) => m.role === "assistant")).toHaveLength(2);
    expect(await fs.readFile(path.join(dir, "runs.log"), "utf8")).toBe("run\n");
  });

  it("calls the model with the agent's answer when it lands between the next runner's claim and its reads", async () => {
    const { me, ws, dir } = await setup({}, { runner: false });
    const first = await testRunner({ dbUrl: server.dbUrl, heartbeatMs: 100 });
    const chat = await createChat(
      me.token,
      ws.id,
      `/run execute {"command":"while [ ! -f go ]; do sleep 0.05; done; echo done"}`,
    );
    first.runner.wake();
    await eventually(async () => {
      const { rows } = await server.pool.query(
        "SELECT 1 FROM chat_tool_calls WHERE chat_id = $1 AND state = 'running'",
        [chat],
      );
      return rows.length > 0 ? true : undefined;
    }, "the command to start");
    await first.runner.stop();
    // The next runner's read of the chat row waits until the agent has answered: whatever it reads
    // in parallel with that row must not predate the answer the row says is there.
    const pool = createPool({ connectionString: server.dbUrl, max: 4 });
    onTestFinished(() => pool.end());
    let gated = false;
    const gatedPool = Object.create(pool) as typeof pool;
    gatedPool.query = (async (...args: unknown[]) => {
      const first = args[0] as string | { text?: string };
      const text = typeof first === "string" ? first : first.text;
      if (!gated && text?.startsWith("-- name: GetChatForRunByID")) {
        gated = true;
        await fs.writeFile(path.join(dir, "go"), "");
        await eventually(async () => {
          const { rows } = await pool.query(
            "SELECT 1 FROM chat_tool_calls WHERE chat_id = $1 AND settled",
            [chat],
          );
          return rows.length > 0 ? true : undefined;
        }, "the agent's answer");
      }
      return (pool.query as (...a: unknown[]) => unknown)(...args);
    }) as typeof pool.query;
    const second = await testRunner({ dbUrl: server.dbUrl, heartbeatMs: 100, pool: gatedPool });
    second.runner.wake();
    await settled(server.pool, chat, "waiting");
    expect(gated).toBe(true);
    const messages = await messagesOf(server.pool, chat);
    expect(results(messages)).toMatchObject([{ is_error: false, result: { stdout: "done\n" } }]);
    expect(lastText(messages)).toMatch(/done/);
  });

  it("pushes the workspace's instruction files at start and again when they change", async () => {
    const { build, dir } = await setup({ "AGENTS.md": "Run the tests first." }, { runner: false });
    const agentId = build.agents[0]!.id;
    const pushed = async () => {
      const { rows } = await server.pool.query<{ source: string; body: string }>(
        "SELECT source, body FROM workspace_agent_context_resources WHERE agent_id = $1 ORDER BY source",
        [agentId],
      );
      return rows;
    };
    expect(await pushed()).toEqual([{ source: "AGENTS.md", body: "Run the tests first." }]);
    await fs.writeFile(path.join(dir, "AGENTS.md"), "Run the linter too.");
    await fs.mkdir(path.join(dir, ".agents/skills/release"), { recursive: true });
    await fs.writeFile(path.join(dir, ".agents/skills/release/SKILL.md"), "Tag, then publish.");
    await eventually(async () => {
      const rows = await pushed();
      return rows.length === 2 && rows[1]!.body === "Run the linter too." ? rows : undefined;
    }, "the changed files to be pushed");
    expect(await pushed()).toEqual([
      { source: ".agents/skills/release/SKILL.md", body: "Tag, then publish." },
      { source: "AGENTS.md", body: "Run the linter too." },
    ]);
  });
});

describe("which workspace tools a turn offers", () => {
  it("offers every workspace tool while the agent is online, and none once it is gone", async () => {
    const { me, ws, agent, agentId } = await setup();
    const chat = await createChat(me.token, ws.id, "/tools");
    await settled(server.pool, chat, "waiting");
    expect(lastText(await messagesOf(server.pool, chat))).toBe(
      "tools: edit_files, execute, list_directory, process_output, read_file, write_file",
    );
    await agent.stop(2_000);
    // Gone once the server noticed its stream close.
    await eventually(async () => {
      const { rows } = await server.pool.query(
        "SELECT stream_id FROM workspace_agent_sessions WHERE agent_id = $1",
        [agentId],
      );
      return rows[0]?.stream_id === null ? true : undefined;
    }, "the server to see the agent go");
    await send(me.token, chat, "/tools");
    await settled(server.pool, chat, "waiting");
    expect(lastText(await messagesOf(server.pool, chat))).toBe("tools: (none)");
    await send(me.token, chat, '/run execute {"command":"true"}');
    await settled(server.pool, chat, "waiting");
    expect(results(await messagesOf(server.pool, chat)).at(-1)).toMatchObject({
      is_error: true,
      result: { error: expect.stringMatching(/^The workspace agent is offline \(last seen/) },
    });
  });

  it("tells the model why it has no workspace tools when the workspace's agent is offline", async () => {
    const fake = await fakeOpenAI(() => ({ kind: "text", chunks: ["ok"] }));
    onTestFinished(() => fake.close());
    await testRunner({ dbUrl: server.dbUrl, heartbeatMs: 100 });
    const me = await gen.member(server.pool, { organizationIds: [orgId] });
    const ws = await gen.workspace(server.pool, { organizationId: orgId, ownerId: me.id });
    await gen.build(server.pool, ws.id);
    const provider = await gen.chatProvider(server.pool, { baseUrl: fake.url });
    const model = await gen.modelConfig(server.pool, { providerId: provider.id });
    const chat = await createChat(me.token, ws.id, "hello", { model_config_id: model.id });
    await settled(server.pool, chat, "waiting");
    const body = fake.requests.find((r) => r.lastUser === "hello")!.body;
    expect(body.tools ?? []).toEqual([]);
    const system = body.messages.filter((m: { role: string }) => m.role === "system");
    expect(system.map((m: { content: string }) => m.content)).toContainEqual(
      expect.stringMatching(
        /^The workspace agent is offline \(it has never connected\), so the workspace tools/,
      ),
    );
  });

  it("in plan mode offers exploring, writes only the chat's plan.md, and never the workspace", async () => {
    const { me, ws, dir } = await setup({ "README.md": "hello\n" });
    const chat = await createChat(me.token, ws.id, "/tools", { plan_mode: "plan" });
    await settled(server.pool, chat, "waiting");
    expect(lastText(await messagesOf(server.pool, chat))).toBe(
      "tools: ask_user_question, edit_files, execute, list_directory, process_output, propose_plan, read_file, write_file",
    );
    const steps = [
      '/run read_file {"path":"README.md"}',
      '/run execute {"command":"ls"}',
      '/run write_file {"path":"src/app.ts","content":"x"}',
      '/run edit_files {"edits":[{"path":"README.md","old":"hello","new":"bye"}]}',
      '/run write_file {"path":"plan.md","content":"# Plan\\n1. Do it\\n"}',
      '/run edit_files {"edits":[{"path":"./plan.md","old":"Do it","new":"Do it well"}]}',
      '/run read_file {"path":"plan.md"}',
    ];
    for (const text of steps) {
      await send(me.token, chat, text);
      await settled(server.pool, chat, "waiting");
    }
    const r = results(await messagesOf(server.pool, chat));
    expect(r[0]).toMatchObject({ is_error: false, result: { content: "hello\n" } });
    expect(r[1]).toMatchObject({ is_error: false, result: { stdout: "README.md\n" } });
    for (const refused of [r[2], r[3]]) {
      expect(refused).toMatchObject({
        is_error: true,
        result: { error: expect.stringMatching(/only writes the chat's plan file/) },
      });
    }
    expect(r[4]).toMatchObject({ is_error: false, result: { path: "plan.md" } });
    expect(r[5]).toMatchObject({
      is_error: false,
      result: { edited: [{ path: "plan.md", edits: 1 }] },
    });
    expect(r[6]).toMatchObject({ result: { content: "# Plan\n1. Do it well\n" } });
    expect((await fs.readdir(dir)).sort()).toEqual(["README.md"]);
    expect(await fs.readFile(path.join(dir, "README.md"), "utf8")).toBe("hello\n");
    // Each write is a new version of the chat's plan.md; the newest is what the model edited.
    const files = await call("GET", `${base}/${chat}`, me.token);
    const plans = files.json.files.filter((f: { name: string }) => f.name === "plan.md");
    expect(plans).toHaveLength(2);
    const newest = await fetch(`${server.url}${base}/files/${plans.at(-1).id}`, {
      headers: { authorization: `Bearer ${me.token}` },
    });
    expect(await newest.text()).toBe("# Plan\n1. Do it well\n");
  });
});

describe("the agent's stream", () => {
  /** A chat of `agentId`'s workspace, leased as a runner's claim leaves it, and a step recorder. */
  async function leasedChat(me: { id: string }, wsId: string) {
    const chat = await gen.chat(server.pool, {
      ownerId: me.id,
      organizationId: orgId,
      workspace_id: wsId,
    });
    const worker = crypto.randomUUID();
    const { rows } = await server.pool.query<{ started_at: string }>(
      `UPDATE chats SET status = 'running', worker_id = $2, started_at = now(), heartbeat_at = now()
       WHERE id = $1 RETURNING started_at::text`,
      [chat.id, worker],
    );
    return async (toolCallId: string) => {
      await saveChatRunToolStep(server.pool, {
        chat_id: chat.id,
        worker_id: worker,
        started_at: rows[0]!.started_at,
        model_config_id: chat.last_model_config_id,
        messages: [
          {
            role: "assistant",
            content: [
              {
                type: "tool-call",
                tool_call_id: toolCallId,
                tool_name: "list_directory",
                args: { path: "." },
              },
            ],
          },
        ],
        plan_file: null,
        tool_calls: [
          {
            tool_call_id: toolCallId,
            tool_name: "list_directory",
            args: { path: "." },
            timeout_ms: 60_000,
          },
        ],
      });
    };
  }

  it("resumes from Last-Event-ID with exactly the calls made while the agent was away", async () => {
    const me = await gen.member(server.pool, { organizationIds: [orgId] });
    const ws = await gen.workspace(server.pool, { organizationId: orgId, ownerId: me.id });
    const build = await gen.build(server.pool, ws.id);
    const token = build.agents[0]!.token;
    const headers = { "coder-agent-token": token };
    const { session_id } = (await (
      await fetch(`${server.url}/api/v2/workspaceagents/me/sessions`, { method: "POST", headers })
    ).json()) as { session_id: string };
    const watch = `${server.url}/api/v2/workspaceagents/me/tool-calls/watch?session_id=${session_id}`;
    const record = await leasedChat(me, ws.id);

    const first = await openSse(watch, headers);
    await record("call_before");
    const seen = await first.next((e) => e.event === "tool_call");
    expect(JSON.parse(seen.data)).toMatchObject({ tool_call_id: "call_before", state: "pending" });
    first.close();

    await record("call_while_away");
    // The resumed stream must send the call's event from the log (the backfill), not live: this
    // server must be past it before the stream registers. With no stream open it reads nothing,
    // and the next stream starts at the head, past it; with others open, it reads up to it.
    const { rows } = await server.pool.query<{ xid: string; id: number }>(
      "SELECT xid::text, id FROM chat_events ORDER BY chat_events.xid DESC, id DESC LIMIT 1",
    );
    const head = { xid: BigInt(rows[0]!.xid), id: rows[0]!.id };
    await eventually(() => {
      if (server.watch.hub.isEmpty()) return true;
      server.watch.tailer.wake(false);
      return compareCursors(server.watch.tailer.fetchedUntil, head) >= 0 ? true : undefined;
    }, "the server to be past the call's event");
    const again = await openSse(watch, { ...headers, "last-event-id": first.lastEventId() });
    const missed = await again.next((e) => e.event === "tool_call");
    expect(JSON.parse(missed.data)).toMatchObject({ tool_call_id: "call_while_away" });
    await record("call_live");
    const live = await again.next((e) => e.event === "tool_call");
    expect(JSON.parse(live.data)).toMatchObject({ tool_call_id: "call_live" });
    expect(again.events.filter((e) => e.event === "tool_call")).toHaveLength(2);
    again.close();

    // Without a cursor: every call still waiting to start, then live ones.
    const fresh = await openSse(watch, headers);
    const pending = await fresh.waitFor(3, (e) => e.event === "tool_call");
    expect(pending.map((e) => JSON.parse(e.data).tool_call_id)).toEqual([
      "call_before",
      "call_while_away",
      "call_live",
    ]);
    fresh.close();
  });

  it("refuses the stream of a session another agent process replaced", async () => {
    const me = await gen.member(server.pool, { organizationIds: [orgId] });
    const ws = await gen.workspace(server.pool, { organizationId: orgId, ownerId: me.id });
    const build = await gen.build(server.pool, ws.id);
    const headers = { "coder-agent-token": build.agents[0]!.token };
    const session = async () =>
      (
        (await (
          await fetch(`${server.url}/api/v2/workspaceagents/me/sessions`, {
            method: "POST",
            headers,
          })
        ).json()) as { session_id: string }
      ).session_id;
    const old = await session();
    const watch = (sid: string) =>
      `${server.url}/api/v2/workspaceagents/me/tool-calls/watch?session_id=${sid}`;
    const open = await openSse(watch(old), headers);
    expect(open.status).toBe(200);
    await session();
    const refused = await openSse(watch(old), headers);
    expect(refused.status).toBe(409);
    refused.close();
    open.close();
  });
});
