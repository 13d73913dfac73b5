import { execFile } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, expect, it } from "vitest";
import { gen } from "../fixtures/index.ts";
import { type TestServer, testServer } from "../setup/server.ts";

/*
 * packages/client as a user installs it: built by its own `build` (tsc), imported by its name
 * from a plain Node process, with no TypeScript or test tooling in between.
 */

const run = promisify(execFile);
const root = path.resolve(import.meta.dirname, "../..");
const pkgDir = path.join(root, "packages/client");
let server: TestServer;

beforeAll(async () => {
  server = await testServer();
});
afterAll(() => server?.close());

it("builds to ESM with types, and works imported by its package name from plain Node", async () => {
  const pkg = JSON.parse(fs.readFileSync(path.join(pkgDir, "package.json"), "utf8"));
  expect(pkg.type).toBe("module");
  await run(path.join(root, "node_modules/.bin/tsc"), ["-p", path.join(pkgDir, "tsconfig.json")]);
  for (const target of Object.values(pkg.exports["."]) as string[]) {
    expect(fs.existsSync(path.join(pkgDir, target)), target).toBe(true);
  }

  const org = await gen.organization(server.pool);
  const u = await gen.member(server.pool, { organizationIds: [org.id] });
  const script = `
    import { createClient, PgchatdError } from "@pgchatd/client";
    const client = createClient({ baseUrl: process.env.URL, token: process.env.TOKEN });
    const me = await client.GET("/api/v2/users/me");
    const chat = await client.POST("/api/experimental/chats", {
      body: { content: [{ type: "text", text: "from plain node" }] },
    });
    const refused = await createClient({ baseUrl: process.env.URL, token: "nope" })
      .GET("/api/v2/users/me")
      .catch((err) => err);
    console.log(JSON.stringify({
      me: me.id,
      chat: chat.status,
      refused: refused instanceof PgchatdError ? refused.status : String(refused),
    }));
  `;
  const { stdout } = await run(process.execPath, ["--input-type=module", "-e", script], {
    cwd: root,
    env: { ...process.env, URL: server.url, TOKEN: u.token },
  });
  expect(JSON.parse(stdout)).toEqual({ me: u.id, chat: "pending", refused: 401 });
});
