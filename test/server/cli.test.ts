import { execFile } from "node:child_process";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { authenticateUser } from "../../src/server/auth.ts";
import { gen } from "../fixtures/index.ts";
import { emptyDatabase, newPool } from "../setup/db.ts";
import { testServer } from "../setup/server.ts";

const run = promisify(execFile);

function pgchatd(args: string[], env: Record<string, string>) {
  return run(process.execPath, [path.resolve("bin/pgchatd.js"), ...args], {
    env: { PATH: process.env.PATH ?? "", LOG_LEVEL: "warn", ...env },
  });
}

describe("pgchatd admin", () => {
  it("creates a user in the default organization and a key that authenticates as them", async () => {
    const db = await emptyDatabase();
    const env = { DATABASE_URL: db.url, PGCHATD_DATA_DIR: "/tmp/pgchatd-cli-unused" };
    await pgchatd(["migrate"], env);
    const created = await pgchatd(
      ["admin", "create-user", "dora", "--name", "Dora", "--owner"],
      env,
    );
    expect(JSON.parse(created.stdout)).toMatchObject({
      username: "dora",
      name: "Dora",
      roles: ["owner"],
    });

    const { stdout } = await pgchatd(["admin", "create-key", "dora", "--lifetime", "600"], env);
    const token = stdout.trim();
    const actor = await authenticateUser(newPool(db.url), token);
    expect(actor?.user).toMatchObject({ username: "dora", organization_ids: [expect.any(String)] });
  });

  it("fails with a message and exit code 1 for an unknown user or a taken username", async () => {
    const db = await emptyDatabase();
    const env = { DATABASE_URL: db.url, PGCHATD_DATA_DIR: "/tmp/pgchatd-cli-unused" };
    await expect(pgchatd(["admin", "create-key", "nobody"], env)).rejects.toMatchObject({
      code: 1,
      stderr: expect.stringContaining('user "nobody" does not exist'),
    });
    await expect(pgchatd(["admin", "create-user", "admin"], env)).rejects.toMatchObject({
      code: 1,
      stderr: expect.stringContaining("Username is already taken"),
    });
    await expect(
      pgchatd(["admin", "create-key", "admin", "--lifetime", "-5"], env),
    ).rejects.toMatchObject({
      code: 1,
    });
  });
});

describe("pgchatd admin housekeeping", () => {
  it("--once runs housekeeping now and prints what it did as JSON", async () => {
    const db = await emptyDatabase();
    const env = { DATABASE_URL: db.url, PGCHATD_DATA_DIR: "/tmp/pgchatd-cli-unused" };
    await pgchatd(["migrate"], env);
    const pool = newPool(db.url);
    await pool.query("UPDATE chat_housekeeping_config SET retention_days = 1");
    const org = await gen.organization(pool);
    const u = await gen.user(pool, { organizationIds: [org.id] });
    const chat = await gen.chat(pool, { ownerId: u.id, organizationId: org.id });
    await pool.query("SELECT chat_set_archived($1, $2, true, NULL)", [chat.id, u.id]);
    await pool.query(`ALTER DATABASE ${db.name} SET pgchatd.clock_now = '2099-01-01Z'`);
    const { stdout } = await pgchatd(["admin", "housekeeping", "--once"], env);
    expect(JSON.parse(stdout)).toMatchObject({ ran: true, purgedChats: 1, autoArchivedRoots: 0 });
    const left = await pool.query("SELECT 1 FROM chats WHERE id = $1", [chat.id]);
    expect(left.rowCount).toBe(0);
  });
});

describe("pgchatd chat context", () => {
  it("adds a directory's instruction files to the agent's chat and clears them, with the agent's URL, token and chat from the environment", async () => {
    const srv = await testServer();
    try {
      const org = await gen.organization(srv.pool);
      const u = await gen.user(srv.pool, { organizationIds: [org.id] });
      const ws = await gen.workspace(srv.pool, { organizationId: org.id, ownerId: u.id });
      const agent = (await gen.build(srv.pool, ws.id)).agents[0]!;
      const chat = await gen.chat(srv.pool, {
        ownerId: u.id,
        organizationId: org.id,
        workspace_id: ws.id,
      });
      const dir = await fs.mkdtemp(path.join(os.tmpdir(), "pgchatd-context-"));
      await fs.writeFile(path.join(dir, "AGENTS.md"), "Run the tests first.");
      await fs.writeFile(path.join(dir, "README.md"), "not an instruction file");
      const env = { PGCHATD_AGENT_URL: `${srv.url}/`, PGCHATD_AGENT_TOKEN: agent.token };

      const added = await pgchatd(["chat", "context", "add", dir], env);
      expect(added.stdout.trim()).toBe(`added 1 context file(s) to chat ${chat.id}`);
      const { rows } = await srv.pool.query(
        "SELECT content FROM chat_messages WHERE chat_id = $1 AND NOT deleted AND visibility = 'model'",
        [chat.id],
      );
      expect(rows.map((r) => r.content)).toEqual([
        [
          {
            type: "context-file",
            context_file_path: path.join(dir, "AGENTS.md"),
            context_file_content: "Run the tests first.",
          },
        ],
      ]);

      // With a second active chat the agent's chat is ambiguous: a command the agent runs for a
      // chat names it in PGCHATD_CHAT_ID, as --chat would.
      await gen.chat(srv.pool, { ownerId: u.id, organizationId: org.id, workspace_id: ws.id });
      const cleared = await pgchatd(["chat", "context", "clear"], {
        ...env,
        PGCHATD_CHAT_ID: chat.id,
      });
      expect(cleared.stdout.trim()).toBe(`removed 1 context file(s) from chat ${chat.id}`);
      await fs.rm(dir, { recursive: true, force: true });
    } finally {
      await srv.close();
    }
  });

  it("git-activity reports a branch and its remote for the agent's chat, which then shows them", async () => {
    const srv = await testServer();
    try {
      const org = await gen.organization(srv.pool);
      const u = await gen.user(srv.pool, { organizationIds: [org.id] });
      const ws = await gen.workspace(srv.pool, { organizationId: org.id, ownerId: u.id });
      const agent = (await gen.build(srv.pool, ws.id)).agents[0]!;
      const chat = await gen.chat(srv.pool, {
        ownerId: u.id,
        organizationId: org.id,
        workspace_id: ws.id,
      });
      const env = { PGCHATD_AGENT_URL: srv.url, PGCHATD_AGENT_TOKEN: agent.token };
      const remote = "git@github.com:acme/api.git";
      const out = await pgchatd(
        ["chat", "git-activity", "--branch", "fix/flaky", "--remote", remote],
        env,
      );
      expect(out.stdout.trim()).toBe(`chat ${chat.id}: ${remote} fix/flaky, marked for refresh`);
      const { rows } = await srv.pool.query(
        "SELECT git_branch, git_remote_origin FROM chat_diff_statuses WHERE chat_id = $1",
        [chat.id],
      );
      expect(rows).toEqual([{ git_branch: "fix/flaky", git_remote_origin: remote }]);
    } finally {
      await srv.close();
    }
  });

  it("fails with the server's message, or without the agent's environment", async () => {
    const srv = await testServer();
    try {
      const org = await gen.organization(srv.pool);
      const u = await gen.user(srv.pool, { organizationIds: [org.id] });
      const ws = await gen.workspace(srv.pool, { organizationId: org.id, ownerId: u.id });
      const agent = (await gen.build(srv.pool, ws.id)).agents[0]!;
      const env = { PGCHATD_AGENT_URL: srv.url, PGCHATD_AGENT_TOKEN: agent.token };
      await expect(pgchatd(["chat", "context", "clear"], env)).rejects.toMatchObject({
        code: 1,
        stderr: expect.stringContaining("The agent has no active chat."),
      });
      await expect(pgchatd(["chat", "context", "add", "/no/such/dir"], env)).rejects.toMatchObject({
        code: 1,
        stderr: expect.stringContaining("/no/such/dir: no such file or directory"),
      });
      await expect(pgchatd(["chat", "context", "clear"], {})).rejects.toMatchObject({
        code: 1,
        stderr: expect.stringContaining("PGCHATD_AGENT_URL and PGCHATD_AGENT_TOKEN must be set"),
      });
    } finally {
      await srv.close();
    }
  });
});
