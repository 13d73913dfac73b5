import { execFile } from "node:child_process";
import path from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { authenticateUser } from "../../src/server/auth.ts";
import { emptyDatabase, newPool } from "../setup/db.ts";

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
