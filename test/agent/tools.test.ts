import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WorkspaceTools } from "../../src/agent/tools.ts";

/*
 * The workspace tools as the agent runs them (src/agent/tools.ts), on a real directory with real
 * processes: the limits of docs/api.md "Workspace tools" that the end-to-end tests do not reach.
 */

let root: string;
let tools: WorkspaceTools;
const ctx = () => ({
  chatId: "00000000-0000-4000-8000-000000000001",
  signal: new AbortController().signal,
});

beforeAll(async () => {
  root = await fs.realpath(await fs.mkdtemp(path.join(os.tmpdir(), "pgchatd-tools-")));
  tools = new WorkspaceTools(root);
});

afterAll(async () => {
  tools.close();
  await fs.rm(root, { recursive: true, force: true });
});

/** Running: it exists and is not a zombie (killed, waiting for a parent that may never reap it). */
const alive = async (pid: number) => {
  const stat = await fs.readFile(`/proc/${pid}/stat`, "utf8").catch(() => "");
  return stat !== "" && !/^\d+ \(.*\) Z /.test(stat);
};

describe("execute", () => {
  it("keeps the first and last halves of a long output and says how much was cut", async () => {
    const r = await tools.run("execute", { command: "seq 1 100000" }, ctx());
    const out = r.result as { stdout: string; truncated: boolean; exit_code: number };
    expect(out.exit_code).toBe(0);
    expect(out.truncated).toBe(true);
    expect(out.stdout.startsWith("1\n2\n3\n")).toBe(true);
    expect(out.stdout.endsWith("99999\n100000\n")).toBe(true);
    const cut = /\[… (\d+) characters cut …\]/.exec(out.stdout);
    expect(Number(cut![1])).toBe(588895 - 32 * 1024);
  });

  it("kills a command at its timeout with everything it started, and says it timed out", async () => {
    const r = await tools.run(
      "execute",
      { command: "sleep 30 & echo $! > bg.pid; sleep 30", timeout_ms: 300 },
      ctx(),
    );
    expect(r.result).toMatchObject({ timed_out: true, exit_code: null, signal: "SIGKILL" });
    const bg = Number(await fs.readFile(path.join(root, "bg.pid"), "utf8"));
    await expect.poll(() => alive(bg)).toBe(false);
  });

  it("kills a command whose call is canceled", async () => {
    const controller = new AbortController();
    const running = tools.run(
      "execute",
      { command: "echo $$ > fg.pid; sleep 30" },
      { chatId: "c", signal: controller.signal },
    );
    await expect
      .poll(
        async () => (await fs.readFile(path.join(root, "fg.pid"), "utf8").catch(() => "")) !== "",
      )
      .toBe(true);
    controller.abort();
    expect((await running).result).toMatchObject({ signal: "SIGKILL", timed_out: false });
  });

  it("passes the chat to the command and never a NUL character to the result", async () => {
    const r = await tools.run("execute", { command: 'printf "$PGCHATD_CHAT_ID\\0end"' }, ctx());
    expect((r.result as { stdout: string }).stdout).toBe(`${ctx().chatId}\uFFFDend`);
  });
});

describe("the file tools", () => {
  it("refuses a binary file, a directory to read and a missing file, as error results", async () => {
    await fs.writeFile(path.join(root, "blob.bin"), Buffer.from([0, 1, 2, 0]));
    await fs.mkdir(path.join(root, "dir"), { recursive: true });
    for (const [p, error] of [
      ["blob.bin", "blob.bin: a binary file"],
      ["dir", "dir: not a file"],
      ["nope.txt", expect.stringMatching(/^ENOENT: /)],
    ] as const) {
      const r = await tools.run("read_file", { path: p }, ctx());
      expect(r).toEqual({ result: { error }, is_error: true });
    }
  });

  it("validates every call's arguments itself, whatever it is sent", async () => {
    const r = await tools.run("write_file", { path: "a.txt", content: 5, extra: true }, ctx());
    expect(r.is_error).toBe(true);
    expect((r.result as { error: string }).error).toMatch(/^invalid arguments for write_file: /);
    expect(await tools.run("rm_rf", {}, ctx())).toEqual({
      result: { error: "there is no workspace tool named rm_rf" },
      is_error: true,
    });
  });
});
