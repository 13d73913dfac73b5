import { execFile, spawn } from "node:child_process";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createEphemeralPublisher } from "../../src/watch/index.ts";
import { gen } from "../fixtures/index.ts";
import { chatState, eventually, messagesOf, settled, testRunner } from "../setup/runner.ts";
import { type TestServer, testServer } from "../setup/server.ts";

/*
 * `pgchatd login` and `pgchatd chats ...` (src/cli/chats.ts) as a user runs them: the real
 * binary in its own process, against a real server with pgchatd's runner answering.
 */

const run = promisify(execFile);
let server: TestServer;
let orgId: string;
let home: string;

beforeAll(async () => {
  server = await testServer();
  orgId = (await gen.organization(server.pool)).id;
  home = await fs.mkdtemp(path.join(os.tmpdir(), "pgchatd-cli-home-"));
  await testRunner({
    dbUrl: server.dbUrl,
    partFlushMs: 5,
    publish: createEphemeralPublisher(server.pool),
  });
});
afterAll(async () => {
  await server?.close();
  await fs.rm(home, { recursive: true, force: true });
});

/** The environment of a user's shell: nothing of this process's but PATH. */
function env(extra: Record<string, string> = {}) {
  return {
    PATH: process.env.PATH ?? "",
    HOME: home,
    XDG_CONFIG_HOME: path.join(home, ".config"),
    PGCHATD_DATA_DIR: path.join(home, "no-local-server"),
    ...extra,
  };
}

function pgchatd(args: string[], extra: Record<string, string>) {
  return run(process.execPath, [path.resolve("bin/pgchatd.js"), ...args], { env: env(extra) });
}

async function user() {
  const u = await gen.member(server.pool, { organizationIds: [orgId] });
  return { ...u, env: { PGCHATD_URL: server.url, PGCHATD_TOKEN: u.token } };
}

describe("pgchatd chats", () => {
  it("sends to a new chat and prints the answer as it streams", async () => {
    const u = await user();
    const { stdout, stderr } = await pgchatd(["chats", "send", "new", "hello", "there"], u.env);
    expect(stdout.trim()).toBe("echo: hello there");
    const chatId = /chat ([0-9a-f-]{36})/.exec(stderr)![1]!;
    const stored = await messagesOf(server.pool, chatId);
    expect(stored.map((m) => m.role)).toEqual(["user", "assistant"]);
  });

  it("sends to an existing chat, and lists and shows chats, as text and as JSON", async () => {
    const u = await user();
    const first = await pgchatd(["chats", "send", "new", "first"], u.env);
    const chatId = /chat ([0-9a-f-]{36})/.exec(first.stderr)![1]!;
    await settled(server.pool, chatId, "waiting");
    const second = await pgchatd(["chats", "send", chatId, "second"], u.env);
    expect(second.stdout.trim()).toBe("echo: second");

    const listed = JSON.parse((await pgchatd(["chats", "list", "--json"], u.env)).stdout);
    expect(listed.map((c: { id: string }) => c.id)).toEqual([chatId]);
    const human = (await pgchatd(["chats", "list"], u.env)).stdout;
    expect(human).toContain(chatId);
    const shown = (await pgchatd(["chats", "show", chatId], u.env)).stdout;
    expect(shown.indexOf("you: first")).toBeGreaterThan(-1);
    expect(shown.indexOf("assistant: echo: second")).toBeGreaterThan(shown.indexOf("you: first"));
    const json = JSON.parse((await pgchatd(["chats", "show", chatId, "--json"], u.env)).stdout);
    expect(json.chat.id).toBe(chatId);
    expect(json.messages).toHaveLength(4);
  });

  it("queues a message for a busy chat and prints its answer once its turn has run", async () => {
    const u = await user();
    const api = (method: string, route: string, body?: unknown) =>
      fetch(`${server.url}/api/experimental/chats${route}`, {
        method,
        headers: { authorization: `Bearer ${u.token}`, "content-type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    const busy = await api("POST", "", { content: [{ type: "text", text: "/sleep 60000" }] });
    const chatId = ((await busy.json()) as { id: string }).id;
    await eventually(
      async () => ((await chatState(server.pool, chatId)).status === "running" ? true : undefined),
      "the first turn to run",
    );
    const child = spawn(
      process.execPath,
      [path.resolve("bin/pgchatd.js"), "chats", "send", chatId, "after", "that"],
      { env: env(u.env) },
    );
    const out = { stdout: "", stderr: "" };
    child.stdout.on("data", (d) => {
      out.stdout += d;
    });
    child.stderr.on("data", (d) => {
      out.stderr += d;
    });
    const exited = new Promise<number | null>((resolve) => child.on("exit", resolve));
    await eventually(async () => (out.stderr.includes("queued") ? true : undefined), "queued");
    // The running turn ends (interrupted): the queue's head, ours, runs next.
    expect((await api("POST", `/${chatId}/interrupt`)).status).toBeLessThan(300);
    expect(await exited).toBe(0);
    expect(out.stdout.trim()).toBe("echo: after that");
  });

  it("pins, archives and unarchives, and finds chats by q and label", async () => {
    const u = await user();
    const a = await gen.chat(server.pool, {
      ownerId: u.id,
      organizationId: orgId,
      labels: { team: "core" },
    });
    const b = await gen.chat(server.pool, { ownerId: u.id, organizationId: orgId });
    await settled(server.pool, a.id, "waiting");
    await settled(server.pool, b.id, "waiting");
    expect((await pgchatd(["chats", "pin", b.id], u.env)).stdout.trim()).toBe(`pinned ${b.id}`);
    const ids = async (...args: string[]) =>
      JSON.parse((await pgchatd(["chats", "list", "--json", ...args], u.env)).stdout).map(
        (c: { id: string }) => c.id,
      );
    expect(await ids()).toEqual([b.id, a.id]);
    expect(await ids("--label", "team:core")).toEqual([a.id]);
    await pgchatd(["chats", "archive", a.id], u.env);
    expect(await ids()).toEqual([b.id]);
    expect(await ids("--q", "archived:true")).toEqual([a.id]);
    await pgchatd(["chats", "unarchive", a.id], u.env);
    expect(await ids("--q", "archived:false")).toContain(a.id);
  });

  it("interrupts the running turn on Ctrl-C and exits with 130", async () => {
    const u = await user();
    const child = spawn(
      process.execPath,
      [path.resolve("bin/pgchatd.js"), "chats", "send", "new", "/sleep 20000"],
      { env: env(u.env) },
    );
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => {
      stdout += d;
    });
    child.stderr.on("data", (d) => {
      stderr += d;
    });
    const exited = new Promise<number | null>((resolve) => child.on("exit", resolve));
    // Once part of the answer has printed, the turn is running.
    await eventually(async () => (stdout.length > 0 ? true : undefined), "the first streamed part");
    child.kill("SIGINT");
    expect(await exited).toBe(130);
    const chatId = /chat ([0-9a-f-]{36})/.exec(stderr)![1]!;
    const stopped = await settled(server.pool, chatId, "waiting");
    expect(stopped).toBeDefined();
    expect(stderr).toContain("interrupting");
  });

  it("fails with the server's message and exit code 1, and with advice when no server is known", async () => {
    const u = await user();
    await expect(
      pgchatd(["chats", "show", "8c0bd7c4-1f3e-4b7e-9f43-4f6c2a1d9e10"], u.env),
    ).rejects.toMatchObject({ code: 1, stderr: expect.stringContaining("Chat not found.") });
    await expect(pgchatd(["chats", "list"], {})).rejects.toMatchObject({
      code: 1,
      stderr: expect.stringContaining("pgchatd login"),
    });
  });
});

describe("the local server", () => {
  it("is used without login next to npm start: its address and the admin token it saved", async () => {
    const u = await user();
    const dataDir = path.join(home, "data");
    await fs.mkdir(dataDir, { recursive: true });
    await fs.writeFile(path.join(dataDir, "admin-token"), `${u.token}\n`, { mode: 0o600 });
    const port = new URL(server.url).port;
    const listed = await pgchatd(["chats", "list", "--json"], {
      PGCHATD_DATA_DIR: dataDir,
      HOST: "127.0.0.1",
      PORT: port,
    });
    expect(JSON.parse(listed.stdout)).toEqual([]);
  });
});

describe("pgchatd login", () => {
  it("checks the token, stores it readable by the user only, and the chats commands use it", async () => {
    const u = await user();
    await expect(
      pgchatd(["login", server.url, "--token", "wrong-token"], {}),
    ).rejects.toMatchObject({ code: 1 });
    const file = path.join(home, ".config", "pgchatd", "credentials.json");
    await expect(fs.stat(file)).rejects.toThrow();

    const { stdout } = await pgchatd(["login", server.url, "--token", u.token], {});
    expect(stdout).toContain("logged in");
    const stat = await fs.stat(file);
    expect(stat.mode & 0o777).toBe(0o600);
    expect((await fs.stat(path.dirname(file))).mode & 0o777).toBe(0o700);
    expect(JSON.parse(await fs.readFile(file, "utf8"))).toEqual({
      url: server.url,
      token: u.token,
    });

    const listed = await pgchatd(["chats", "list", "--json"], {});
    expect(JSON.parse(listed.stdout)).toEqual([]);
    expect((await pgchatd(["logout"], {})).stdout.trim()).toBe("logged out");
    await expect(fs.stat(file)).rejects.toThrow();
  });
});
