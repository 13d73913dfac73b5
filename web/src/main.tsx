import { render } from "preact";
import { useCallback, useEffect, useMemo, useState } from "preact/hooks";
import { type Chat, type PgchatdClient, PgchatdError } from "../../packages/client/src/index.ts";
import { ChatView, Composer } from "./chat_view.tsx";
import { newer, sidebarOrder } from "./chats.ts";
import { clientFor, savedToken, signIn, signOut } from "./session.ts";
import { Sidebar } from "./sidebar.tsx";

const base = "/api/experimental/chats";

function App() {
  const [token, setToken] = useState(savedToken());
  const client = useMemo(() => (token ? clientFor(token) : null), [token]);
  if (!client) {
    return (
      <SignIn
        onSignedIn={(t) => {
          signIn(t);
          setToken(t);
        }}
      />
    );
  }
  return (
    <Workspace
      client={client}
      onSignOut={() => {
        signOut();
        setToken(null);
      }}
    />
  );
}

function SignIn({ onSignedIn }: { onSignedIn(token: string): void }) {
  const [value, setValue] = useState("");
  const [error, setError] = useState<string | null>(null);
  return (
    <form
      class="sign-in"
      onSubmit={async (e) => {
        e.preventDefault();
        try {
          await clientFor(value.trim()).GET("/api/v2/users/me");
          onSignedIn(value.trim());
        } catch (err) {
          setError(err instanceof PgchatdError ? err.body.message : String(err));
        }
      }}
    >
      <h1>pgchatd</h1>
      <label>
        API token
        <input
          type="password"
          autocomplete="off"
          value={value}
          onInput={(e) => setValue((e.target as HTMLInputElement).value)}
        />
      </label>
      <p class="hint">
        A local server prints its admin token at the first start and saves it in
        <code> .data/admin-token</code>.
      </p>
      {error ? <p class="failure">{error}</p> : null}
      <button type="submit">Sign in</button>
    </form>
  );
}

function Workspace({ client, onSignOut }: { client: PgchatdClient; onSignOut(): void }) {
  const [chats, setChats] = useState(new Map<string, Chat>());
  const [query, setQuery] = useState("");
  const [selected, setSelected] = useState<string | null>(
    new URLSearchParams(location.hash.slice(1)).get("chat"),
  );
  const [error, setError] = useState<string | null>(null);
  const [reloads, setReloads] = useState(0);
  const fail = useCallback((message: string) => setError(message), []);

  useEffect(() => {
    history.replaceState(null, "", selected ? `#chat=${selected}` : location.pathname);
  }, [selected]);

  // The list: every page of the query's root chats, then live updates from the watch stream.
  // A query other than the default list is read again when a chat changes.
  useEffect(() => {
    let closed = false;
    const watch = client.watch();
    let again: ReturnType<typeof setTimeout> | undefined;
    const load = async () => {
      const all = new Map<string, Chat>();
      for await (const page of client.chatPages({ limit: 200, ...(query ? { q: query } : {}) })) {
        for (const c of page) all.set(c.id, c);
      }
      if (!closed) setChats(all);
    };
    (async () => {
      await watch.opened;
      await load();
      for await (const ev of watch) {
        if (closed) break;
        if (ev.event === "resync" || query) {
          clearTimeout(again);
          again = setTimeout(() => load().catch((e: Error) => fail(e.message)), 200);
          continue;
        }
        if (ev.event === "notification" || !ev.data.chat) continue;
        const c = ev.data.chat;
        if (!("status" in c)) {
          // Deleted for good: only its identity is left.
          setChats((m) => {
            const next = new Map(m);
            next.delete(c.id);
            return next;
          });
          continue;
        }
        if (c.parent_chat_id) continue;
        setChats((m) => {
          if (!newer(m.get(c.id), c)) return m;
          const next = new Map(m);
          if (c.archived) next.delete(c.id);
          else next.set(c.id, c);
          return next;
        });
      }
    })().catch((err: Error) => {
      if (!closed) fail(err.message);
    });
    return () => {
      closed = true;
      clearTimeout(again);
      watch.close();
    };
  }, [client, query, reloads, fail]);

  const list = useMemo(() => [...chats.values()].sort(sidebarOrder), [chats]);
  const act = (p: Promise<unknown>) => p.catch((err: Error) => fail(err.message));
  const patch = (id: string, body: { pin_order?: number; archived?: boolean }) =>
    act(
      client
        .PATCH(`${base}/{chat}`, { params: { path: { chat: id } }, body })
        // A search's list is read again on the change; the default list follows the watch.
        .then(() => query && setReloads((r) => r + 1)),
    );

  return (
    <div class="workspace">
      <Sidebar
        chats={list}
        selected={selected}
        query={query}
        onQuery={setQuery}
        onSelect={setSelected}
        onPin={(id, order) => patch(id, { pin_order: order })}
        onArchive={(id, archived) => patch(id, { archived })}
      />
      <div class="main">
        <div class="topbar">
          {error ? (
            <p class="failure" role="alert">
              {error}{" "}
              <button type="button" onClick={() => setError(null)}>
                Dismiss
              </button>
            </p>
          ) : null}
          <button type="button" class="sign-out" onClick={onSignOut}>
            Sign out
          </button>
        </div>
        {selected ? (
          <ChatView
            key={selected}
            client={client}
            chatId={selected}
            chat={chats.get(selected)}
            onError={fail}
          />
        ) : (
          <main class="chat-view new-chat">
            <h1>New chat</h1>
            <Composer
              label="Start a chat"
              onSend={(text) =>
                act(
                  client
                    .POST(base, { body: { content: [{ type: "text", text }] } })
                    .then((chat) => {
                      setChats((m) => new Map(m).set(chat.id, chat));
                      setSelected(chat.id);
                    }),
                )
              }
            />
          </main>
        )}
      </div>
    </div>
  );
}

render(<App />, document.getElementById("app")!);
