import fs from "node:fs";
import path from "node:path";
import { type Browser, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createEphemeralPublisher } from "../../src/watch/index.ts";
import { buildWeb } from "../../web/build.ts";
import { gen } from "../fixtures/index.ts";
import { chatState, eventually, testRunner } from "../setup/runner.ts";
import { type TestServer, testServer } from "../setup/server.ts";

/*
 * The web app (web/, served at `/`) end to end in headless Chromium (Debian's `chromium`, driven
 * by playwright-core; .ci/run installs it): sign in, chat, watch the answer stream, pin and drag,
 * archive, answer a tool call, reload mid-turn. PGCHATD_SCREENSHOTS=<dir> saves the main screens
 * there (docs/screenshots is made so).
 */

const chromiumPath = process.env.PGCHATD_CHROMIUM ?? "/usr/bin/chromium";
const haveChromium = fs.existsSync(chromiumPath);
if (!haveChromium) {
  console.warn(
    `test/browser: SKIPPED, no Chromium at ${chromiumPath} (apt-get install -y chromium, or set PGCHATD_CHROMIUM)`,
  );
}
const screenshots = process.env.PGCHATD_SCREENSHOTS;

let browser: Browser | undefined;
let server: TestServer;
let orgId: string;

beforeAll(async () => {
  if (!haveChromium) return;
  await buildWeb();
  server = await testServer();
  orgId = (await gen.organization(server.pool)).id;
  await testRunner({
    dbUrl: server.dbUrl,
    partFlushMs: 5,
    publish: createEphemeralPublisher(server.pool),
  });
  browser = await chromium.launch({ executablePath: chromiumPath });
});
afterAll(async () => {
  await browser?.close();
  await server?.close();
});

async function signedIn() {
  const u = await gen.member(server.pool, { organizationIds: [orgId] });
  const context = await browser!.newContext({ viewport: { width: 1200, height: 760 } });
  const page = await context.newPage();
  await page.goto(server.url);
  await page.getByLabel("API token").fill(u.token);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("button", { name: "New chat" }).waitFor();
  return { u, page };
}

async function snap(page: Page, name: string) {
  if (!screenshots) return;
  fs.mkdirSync(screenshots, { recursive: true });
  await page.screenshot({ path: path.join(screenshots, `${name}.png`) });
}

const item = (page: Page, title: string) =>
  page.getByTestId("chat-item").filter({ has: page.locator(".title", { hasText: title }) });

async function startChat(page: Page, text: string) {
  await page.getByRole("button", { name: "New chat" }).click();
  await page.getByLabel("Start a chat").fill(text);
  await page.getByLabel("Start a chat").press("Enter");
  await page.getByTestId("chat-status").waitFor();
}

describe.skipIf(!haveChromium)("the web app in headless Chromium", () => {
  it("starts a chat and shows the answer as it streams, and after a reload mid-turn the turn goes on", async () => {
    const { page } = await signedIn();
    await startChat(page, "hello from the browser");
    const messages = page.getByTestId("messages");
    await expect
      .poll(() => messages.getByTestId("message").allInnerTexts(), { timeout: 15_000 })
      .toEqual([
        expect.stringContaining("hello from the browser"),
        expect.stringContaining("echo: hello from the browser"),
      ]);
    // The sidebar shows it, live, with the title the runner gave it.
    await expect.poll(() => item(page, "hello from the browser").count()).toBe(1);

    // A slow answer (a part every 6 s for a minute, so the reload lands mid-turn however busy
    // the machine): its parts appear as they stream; after a reload the page shows the turn's
    // output so far, then the parts still to come; interrupted, the turn keeps what it wrote.
    await page.getByLabel("Send a message").fill("/sleep 60000");
    await page.getByLabel("Send a message").press("Enter");
    const inFlight = page.getByTestId("in-flight");
    await inFlight.waitFor({ timeout: 15_000 });
    const before = await inFlight.innerText();
    await snap(page, "chat-streaming");
    await page.reload();
    await inFlight.waitFor({ timeout: 15_000 });
    const reloaded = await inFlight.innerText();
    expect(reloaded.length).toBeGreaterThanOrEqual(before.length);
    await expect
      .poll(async () => (await inFlight.innerText()).length)
      .toBeGreaterThan(reloaded.length);
    const streamed = await inFlight.innerText();
    await page.getByRole("button", { name: "Interrupt" }).click();
    await expect.poll(() => inFlight.count()).toBe(0);
    const kept = await messages.getByTestId("message").last().innerText();
    expect(kept).toContain(streamed.replace(/^assistant\s*/, ""));
    await page.context().close();
  });

  it("pins two chats, reorders them by dragging, and archives one", async () => {
    const { page } = await signedIn();
    await startChat(page, "first chat");
    await startChat(page, "second chat");
    for (const title of ["first chat", "second chat"]) {
      await item(page, title).hover();
      await item(page, title).getByRole("button", { name: "Pin" }).click();
      await expect
        .poll(() => page.getByTestId("pinned").getByText(title, { exact: true }).count())
        .toBe(1);
    }
    const pinned = () => page.getByTestId("pinned").locator(".title").allInnerTexts();
    await expect.poll(pinned).toEqual(["first chat", "second chat"]);
    await item(page, "second chat").dragTo(item(page, "first chat"));
    await expect.poll(pinned).toEqual(["second chat", "first chat"]);
    await snap(page, "sidebar-pinned");

    await item(page, "first chat").hover();
    await item(page, "first chat").getByRole("button", { name: "Archive" }).click();
    await expect.poll(pinned).toEqual(["second chat"]);
    await page.getByLabel("Search chats").fill("archived:true");
    await page.getByLabel("Search chats").press("Enter");
    await expect
      .poll(() => page.getByTestId("chats").locator(".title").allInnerTexts())
      .toEqual(["first chat"]);
    await page.context().close();
  });

  it("answers a client tool call, and the turn goes on", async () => {
    const { u, page } = await signedIn();
    const res = await fetch(`${server.url}/api/experimental/chats`, {
      method: "POST",
      headers: { authorization: `Bearer ${u.token}`, "content-type": "application/json" },
      body: JSON.stringify({
        content: [{ type: "text", text: '/tool get_weather {"city": "Paris"}' }],
        unsafe_dynamic_tools: [
          { name: "get_weather", description: "the weather", input_schema: { type: "object" } },
        ],
      }),
    });
    const chatId = ((await res.json()) as { id: string }).id;
    await eventually(
      async () =>
        (await chatState(server.pool, chatId)).status === "requires_action" ? true : undefined,
      "the chat to wait for the tool's result",
    );
    await item(page, "/tool get_weather").locator(".open").click();
    await page.getByLabel("Result of get_weather").fill('{"celsius": 21}');
    await snap(page, "tool-call");
    await page.getByRole("button", { name: "Send results" }).click();
    await expect
      .poll(() => page.getByTestId("chat-status").innerText(), { timeout: 15_000 })
      .toBe("waiting");
    await expect.poll(() => page.getByTestId("tool-calls").count()).toBe(0);
    const stored = await server.pool.query(
      "SELECT count(*)::int AS n FROM chat_messages WHERE chat_id = $1 AND role = 'tool'",
      [chatId],
    );
    expect(stored.rows[0].n).toBe(1);
    await page.context().close();
  });

  it("queues while a turn runs, deletes from the queue, interrupts, and edits a message", async () => {
    const { page } = await signedIn();
    await startChat(page, "/sleep 30000");
    await page.getByTestId("in-flight").waitFor({ timeout: 15_000 });
    const composer = page.getByLabel("Queue a message");
    for (const text of ["queued one", "queued two"]) {
      await composer.fill(text);
      await composer.press("Enter");
    }
    const queue = () => page.getByTestId("queue").locator("span").allInnerTexts();
    await expect.poll(queue).toEqual(["queued one", "queued two"]);
    await page
      .getByTestId("queue")
      .locator("li", { hasText: "queued two" })
      .getByRole("button", { name: "Delete" })
      .click();
    await expect.poll(queue).toEqual(["queued one"]);
    await page.getByRole("button", { name: "Interrupt" }).click();
    // The interrupted turn keeps what it wrote; the queue's head runs next.
    const messages = page.getByTestId("messages").getByTestId("message");
    await expect
      .poll(() => messages.last().innerText(), { timeout: 15_000 })
      .toContain("echo: queued one");
    await expect.poll(() => page.getByTestId("queue").count()).toBe(0);

    const mine = messages.filter({ hasText: "queued one" }).first();
    await mine.getByRole("button", { name: "Edit" }).click();
    await page.getByLabel("Edit message").fill("edited instead");
    await page.getByRole("button", { name: "Save" }).click();
    await expect
      .poll(() => messages.allInnerTexts(), { timeout: 15_000 })
      .toEqual([
        expect.stringContaining("/sleep 30000"),
        expect.any(String),
        expect.stringContaining("edited instead"),
        expect.stringContaining("echo: edited instead"),
      ]);
    await page.context().close();
  });

  it("pages older messages, marks a chat answered elsewhere unread, and moves a queued message first", async () => {
    const { u, page } = await signedIn();
    // A long history, stored behind the API (the app shows the newest page first).
    const long = await gen.chat(server.pool, {
      ownerId: u.id,
      organizationId: orgId,
      text: "long",
    });
    await eventually(
      async () => ((await chatState(server.pool, long.id)).status === "waiting" ? true : undefined),
      "the long chat's first turn",
    );
    for (let i = 0; i < 40; i++) await gen.chatMessage(server.pool, long.id, { text: `old ${i}` });
    await page.reload();
    await item(page, "long").locator(".open").click();
    const messages = page.getByTestId("messages").getByTestId("message");
    await expect.poll(() => messages.count()).toBe(30);
    await page.getByRole("button", { name: "Load older messages" }).click();
    await expect.poll(() => messages.count()).toBe(42);
    await expect(messages.first().innerText()).resolves.toContain("long");
    await expect
      .poll(() => page.getByRole("button", { name: "Load older messages" }).count())
      .toBe(0);

    // Answered while another chat is open: its dot turns on, live.
    await gen.chat(server.pool, {
      ownerId: u.id,
      organizationId: orgId,
      text: "other",
    });
    await expect
      .poll(() => item(page, "other").locator(".dot.unread").count(), { timeout: 15_000 })
      .toBe(1);

    await startChat(page, "/sleep 30000");
    await page.getByTestId("in-flight").waitFor({ timeout: 15_000 });
    const composer = page.getByLabel("Queue a message");
    for (const text of ["later a", "later b"]) {
      await composer.fill(text);
      await composer.press("Enter");
    }
    const queue = () => page.getByTestId("queue").locator("span").allInnerTexts();
    await expect.poll(queue).toEqual(["later a", "later b"]);
    await page
      .getByTestId("queue")
      .locator("li", { hasText: "later b" })
      .getByRole("button", { name: "Send now" })
      .click();
    await expect.poll(queue).toEqual(["later b", "later a"]);
    await page.getByRole("button", { name: "Interrupt" }).click();
    await page.context().close();
  });
});
