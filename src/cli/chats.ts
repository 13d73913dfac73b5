import readline from "node:readline/promises";
import type { Command } from "commander";
import {
  type Chat,
  type ChatStreamEvent,
  createClient,
  messageText,
  type PgchatdClient,
} from "../../packages/client/src/index.ts";
import {
  credentialsPath,
  removeCredentials,
  resolveCredentials,
  saveCredentials,
} from "./credentials.ts";

/*
 * `pgchatd login|logout` and `pgchatd chats ...`: the chats of the signed-in user, through the
 * HTTP API and its typed client (packages/client), so they work against any pgchatd server with
 * the same token as the API. Human output by default, `--json` for scripts.
 */

const chats = "/api/experimental/chats";
const terminal = new Set(["waiting", "completed", "error", "requires_action", "paused"]);

interface Global {
  url?: string;
  token?: string;
  json?: boolean;
}

async function clientOf(opts: Global): Promise<PgchatdClient> {
  const creds = await resolveCredentials(opts);
  return createClient({ baseUrl: creds.url, token: creds.token });
}

const when = (iso: string) => iso.slice(0, 16).replace("T", " ");

function printChats(list: Chat[]) {
  for (const c of list) {
    const pin = c.pin_order > 0 ? `📌${c.pin_order}` : "  ";
    const unread = c.has_unread ? "•" : " ";
    console.log(
      `${pin.padEnd(4)} ${unread} ${c.status.padEnd(15)} ${when(c.updated_at)}  ${c.id}  ${c.title}`,
    );
  }
}

async function list(opts: Global & { q?: string; label: string[]; limit?: string; all?: boolean }) {
  const client = await clientOf(opts);
  const query = {
    ...(opts.q ? { q: opts.q } : {}),
    ...(opts.label.length > 0 ? { label: opts.label } : {}),
    limit: Math.min(Number(opts.limit ?? 50), 200),
  };
  const out: Chat[] = [];
  for await (const page of client.chatPages(query)) {
    out.push(...page);
    if (!opts.all) break;
  }
  if (opts.json) console.log(JSON.stringify(out, null, 2));
  else if (out.length === 0) console.log("no chats");
  else printChats(out);
}

async function show(id: string, opts: Global & { limit?: string }) {
  const client = await clientOf(opts);
  const chat = await client.GET(`${chats}/{chat}`, { params: { path: { chat: id } } });
  const page = await client.GET(`${chats}/{chat}/messages`, {
    params: { path: { chat: id }, query: { limit: Math.min(Number(opts.limit ?? 50), 200) } },
  });
  if (opts.json) {
    console.log(JSON.stringify({ chat, ...page }, null, 2));
    return;
  }
  console.log(`${chat.title}  (${chat.status})  ${chat.id}`);
  if (page.has_more) console.log("… older messages left out (--limit)");
  for (const m of [...page.messages].reverse()) {
    console.log(`\n${m.role === "user" ? "you" : m.role}: ${messageText(m)}`);
  }
  for (const q of page.queued_messages) console.log(`\n(queued) you: ${messageText(q)}`);
}

/**
 * Sends `text` (to a new chat for "new") and streams the answer to stdout as it arrives. Ctrl-C
 * interrupts the turn on the server, then exits.
 */
async function send(target: string, words: string[], opts: Global) {
  const client = await clientOf(opts);
  const text = words.join(" ");
  const content = [{ type: "text" as const, text }];
  let chatId: string;
  /** Our user message once it is in the history (a queued one gets an id when promoted). */
  let mine: number | undefined;
  let queuedId: number | undefined;
  if (target === "new") {
    const chat = await client.POST(chats, { body: { content } });
    chatId = chat.id;
    if (!opts.json) console.error(`chat ${chat.id}`);
  } else {
    chatId = target;
    const sent = await client.POST(`${chats}/{chat}/messages`, {
      params: { path: { chat: chatId } },
      body: { content },
    });
    mine = sent.message?.id;
    queuedId = sent.queued_message?.id;
    if (sent.queued && !opts.json) {
      console.error("queued: the chat is busy; it is sent when the running turn ends");
    }
  }

  const stream = client.chatStream(chatId, mine ? { afterId: mine - 1 } : {});
  let interrupted = false;
  const onSigint = () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    if (!opts.json) process.stderr.write("\ninterrupting…\n");
    client
      .POST(`${chats}/{chat}/interrupt`, { params: { path: { chat: chatId } } })
      .catch((err: unknown) => console.error(`pgchatd: ${(err as Error).message}`))
      .finally(() => stream.close());
  };
  process.on("SIGINT", onSigint);
  let answered = false;
  /** The chat's status as last seen: a snapshot sends it before the messages. */
  let status = "";
  let printedParts = false;
  let failed = false;
  try {
    for await (const ev of stream) {
      if (opts.json) console.log(JSON.stringify(ev));
      const done = follow(ev);
      if (done) break;
    }
  } finally {
    process.off("SIGINT", onSigint);
    stream.close();
  }
  if (!opts.json && printedParts) process.stdout.write("\n");
  if (interrupted) process.exitCode = 130;
  else if (failed) process.exitCode = 1;

  /** Applies one event; true once our turn is over. */
  function follow(ev: ChatStreamEvent): boolean {
    switch (ev.event) {
      case "queue_update":
        if (queuedId !== undefined && !ev.data.queued_messages.some((q) => q.id === queuedId)) {
          // Promoted: the next user message in the history is ours.
          queuedId = undefined;
        }
        return false;
      case "message":
        if (ev.data.role === "user" && mine === undefined) {
          // A new chat's first message; or ours, promoted from the queue (possibly before the
          // stream opened, so its queue_update may come after it).
          if (queuedId === undefined || messageText(ev.data) === text) {
            mine = ev.data.id;
            queuedId = undefined;
          }
        } else if (ev.data.role === "assistant" && mine !== undefined && ev.data.id > mine) {
          answered = true;
          // Streamed already, part by part; a message that came whole (answered before the
          // stream opened) is printed whole.
          if (!opts.json && !printedParts) {
            const t = messageText(ev.data);
            if (t) process.stdout.write(t);
            printedParts = t.length > 0;
          }
          // Answered before the stream opened: the snapshot's status came first, and no other
          // follows.
          return terminal.has(status);
        }
        return false;
      case "message_part":
        if (mine !== undefined && ev.data.part.type === "text" && !opts.json) {
          process.stdout.write(ev.data.part.text ?? "");
          printedParts = true;
        }
        return false;
      case "error":
        failed = true;
        if (!opts.json) console.error(`\nthe turn failed: ${ev.data.kind}: ${ev.data.message}`);
        return answered || mine !== undefined;
      case "action_required":
        if (!opts.json) {
          const names = ev.data.tool_calls.map((c) => c.tool_name).join(", ");
          console.error(`\nthe model called client tools (${names}): answer them through the API`);
        }
        return true;
      case "status":
        status = ev.data.status;
        if (ev.data.status === "error" && mine !== undefined) failed = true;
        return (
          terminal.has(ev.data.status) &&
          (answered || (failed && mine !== undefined) || interrupted)
        );
      default:
        return false;
    }
  }
}

async function watch(opts: Global) {
  const client = await clientOf(opts);
  const stream = client.watch();
  process.once("SIGINT", () => stream.close());
  await stream.opened;
  if (!opts.json) console.error("watching your chats (Ctrl-C to stop)");
  for await (const ev of stream) {
    if (opts.json) {
      console.log(JSON.stringify(ev));
      continue;
    }
    const time = new Date().toTimeString().slice(0, 8);
    if (ev.event === "notification") {
      console.log(`${time}  notification  ${ev.data.notification.title}`);
    } else if (ev.event === "resync") {
      console.log(`${time}  resync: list your chats again`);
    } else {
      const c = ev.data.chat;
      const status = c && "status" in c ? c.status : "";
      console.log(
        `${time}  ${ev.event.padEnd(18)} ${c?.id ?? ""}  ${status.padEnd(15)} ${c?.title ?? ""}`,
      );
    }
  }
}

async function patch(
  id: string,
  body: { archived?: boolean; pin_order?: number },
  done: string,
  opts: Global,
) {
  const client = await clientOf(opts);
  await client.PATCH(`${chats}/{chat}`, { params: { path: { chat: id } }, body });
  if (opts.json) console.log(JSON.stringify({ id, ...body }));
  else console.log(`${done} ${id}`);
}

async function login(url: string | undefined, opts: { token?: string }) {
  const base = url ?? process.env.PGCHATD_URL ?? "http://127.0.0.1:3000";
  let token = opts.token ?? process.env.PGCHATD_TOKEN;
  if (!token) {
    const rl = readline.createInterface({ input: process.stdin, output: process.stderr });
    token = (await rl.question(`API token for ${base}: `)).trim();
    rl.close();
  }
  const client = createClient({ baseUrl: base, token });
  const me = await client.GET("/api/v2/users/me");
  await saveCredentials(base, token);
  console.log(`logged in to ${base} as ${me.username} (saved to ${credentialsPath()}, mode 0600)`);
}

const collect = (v: string, acc: string[]) => [...acc, v];

/** Adds `login`, `logout` and `chats` to the program (src/cli.ts). */
export function addChatCommands(program: Command) {
  program
    .command("login [url]")
    .description("store a server URL and API token for the chats commands (mode 0600)")
    .option("--token <token>", "the API token (default: $PGCHATD_TOKEN, else asked for)")
    .action(login);
  program
    .command("logout")
    .description("forget the stored URL and token")
    .action(async () => {
      console.log((await removeCredentials()) ? "logged out" : "not logged in");
    });

  const group = program
    .command("chats")
    .description(
      "your chats (the server and token: --url/--token, $PGCHATD_URL/$PGCHATD_TOKEN, pgchatd login, or this checkout's npm start)",
    )
    .option("--url <url>", "the pgchatd server")
    .option("--token <token>", "an API token")
    .option("--json", "JSON output for scripts");
  const g = (cmd: Command) => cmd.optsWithGlobals() as Global;

  group
    .command("list")
    .description("your root chats: pinned first, then the most recently updated")
    .option("--q <query>", 'search, e.g. "title:fix archived:true has_unread:true"')
    .option("--label <key:value>", "only chats with this label (repeatable)", collect, [])
    .option("--limit <n>", "chats per page (1-200)", "50")
    .option("--all", "every page, not just the first")
    .action((_opts, cmd: Command) => list(g(cmd) as Parameters<typeof list>[0]));
  group
    .command("show <id>")
    .description("a chat and its latest messages")
    .option("--limit <n>", "messages (1-200)", "50")
    .action((id: string, _opts, cmd: Command) => show(id, g(cmd)));
  group
    .command("send <chat> <text...>")
    .description('send a message ("new" for a new chat) and stream the answer; Ctrl-C interrupts')
    .action((chat: string, text: string[], _opts, cmd: Command) => send(chat, text, g(cmd)));
  group
    .command("watch")
    .description("live events of your chats")
    .action((_opts, cmd: Command) => watch(g(cmd)));
  group
    .command("archive <id>")
    .description("archive a chat and its subagent chats")
    .action((id: string, _o, cmd: Command) => patch(id, { archived: true }, "archived", g(cmd)));
  group
    .command("unarchive <id>")
    .description("restore an archived chat")
    .action((id: string, _o, cmd: Command) => patch(id, { archived: false }, "unarchived", g(cmd)));
  group
    .command("pin <id>")
    .description("pin a chat (last, or at --order)")
    .option("--order <n>", "its place among the pinned chats, from 1")
    .action(async (id: string, o: { order?: string }, cmd: Command) => {
      // Without --order a chat already pinned stays where it is; any positive order appends an
      // unpinned one (docs/api.md "PATCH /{chat}").
      const order = o.order !== undefined ? Number(o.order) : 1;
      if (!Number.isInteger(order) || order < 1) throw new Error("--order must be 1 or more");
      if (o.order === undefined) {
        const client = await clientOf(g(cmd));
        const chat = await client.GET(`${chats}/{chat}`, { params: { path: { chat: id } } });
        if (chat.pin_order > 0) {
          console.log(`already pinned ${id} (at ${chat.pin_order})`);
          return;
        }
      }
      await patch(id, { pin_order: order }, "pinned", g(cmd));
    });
  group
    .command("unpin <id>")
    .description("unpin a chat")
    .action((id: string, _o, cmd: Command) => patch(id, { pin_order: 0 }, "unpinned", g(cmd)));
}
