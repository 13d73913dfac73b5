import { useEffect, useRef, useState } from "preact/hooks";
import {
  type Chat,
  type ChatMessage,
  type ChatQueuedMessage,
  messageText,
  type PgchatdClient,
} from "../../packages/client/src/index.ts";

const base = "/api/experimental/chats";
/** Messages per history page. */
const pageSize = 30;

interface ToolCall {
  tool_call_id: string;
  tool_name: string;
  args: unknown;
}

interface Props {
  client: PgchatdClient;
  chat: Chat | undefined;
  chatId: string;
  onError(message: string): void;
}

/**
 * One chat: its history (older pages on demand), then the stream: the running turn's output as it
 * is written, the queue, the calls waiting for an answer.
 */
export function ChatView({ client, chat, chatId, onError }: Props) {
  const [messages, setMessages] = useState<ChatMessage[]>([]);
  const [hasOlder, setHasOlder] = useState(false);
  const [status, setStatus] = useState<string>(chat?.status ?? "");
  const [inFlight, setInFlight] = useState("");
  const [queue, setQueue] = useState<ChatQueuedMessage[]>([]);
  const [calls, setCalls] = useState<ToolCall[]>([]);
  const [failure, setFailure] = useState<string | null>(null);
  const [generation, setGeneration] = useState(0);
  const bottom = useRef<HTMLDivElement>(null);

  // (Re)load: the newest page, then the stream from just after it. A history reset (an edit) or
  // a resync starts over.
  useEffect(() => {
    let closed = false;
    let stream: ReturnType<PgchatdClient["chatStream"]> | undefined;
    setMessages([]);
    setInFlight("");
    setCalls([]);
    setFailure(null);
    (async () => {
      const page = await client.GET(`${base}/{chat}/messages`, {
        params: { path: { chat: chatId }, query: { limit: pageSize } },
      });
      if (closed) return;
      const newestFirst = page.messages;
      setMessages([...newestFirst].reverse());
      setHasOlder(page.has_more);
      setQueue(page.queued_messages);
      stream = client.chatStream(chatId, { afterId: newestFirst[0]?.id ?? 0 });
      for await (const ev of stream) {
        if (closed) break;
        switch (ev.event) {
          case "status":
            setStatus(ev.data.status);
            if (ev.data.status !== "requires_action") setCalls([]);
            if (ev.data.status !== "error") setFailure(null);
            break;
          case "error":
            setFailure(`${ev.data.kind}: ${ev.data.message}`);
            break;
          case "message": {
            const m = ev.data;
            setMessages((ms) => (ms.some((x) => x.id === m.id) ? ms : [...ms, m]));
            if (m.role === "assistant") setInFlight("");
            break;
          }
          case "message_part":
            if (ev.data.part.type === "text") setInFlight((t) => t + (ev.data.part.text ?? ""));
            break;
          case "retry":
            setInFlight("");
            break;
          case "queue_update":
            setQueue(ev.data.queued_messages);
            break;
          case "action_required":
            setCalls(ev.data.tool_calls as ToolCall[]);
            break;
          case "history_reset":
          case "resync":
            setGeneration((g) => g + 1);
            return;
        }
      }
    })().catch((err: unknown) => {
      if (!closed) onError((err as Error).message);
    });
    return () => {
      closed = true;
      stream?.close();
    };
  }, [client, chatId, generation]);

  useEffect(() => {
    bottom.current?.scrollIntoView({ block: "end" });
  }, [messages.length, inFlight]);

  const act = (p: Promise<unknown>) => p.catch((err: unknown) => onError((err as Error).message));
  const path = { params: { path: { chat: chatId } } };

  async function loadOlder() {
    const oldest = messages[0]?.id;
    if (oldest === undefined) return;
    const page = await client.GET(`${base}/{chat}/messages`, {
      params: { path: { chat: chatId }, query: { limit: pageSize, before_id: oldest } },
    });
    setMessages((ms) => [...[...page.messages].reverse(), ...ms]);
    setHasOlder(page.has_more);
  }

  const busy = status === "pending" || status === "running";
  return (
    <main class="chat-view" data-status={status}>
      <header>
        <h1 data-testid="chat-title">{chat?.title || "New chat"}</h1>
        <span class={`status ${status}`} data-testid="chat-status">
          {status}
        </span>
        {busy ? (
          <button type="button" onClick={() => act(client.POST(`${base}/{chat}/interrupt`, path))}>
            Interrupt
          </button>
        ) : null}
      </header>
      <div class="messages" data-testid="messages">
        {hasOlder ? (
          <button type="button" class="older" onClick={() => act(loadOlder())}>
            Load older messages
          </button>
        ) : null}
        {messages.map((m) => (
          <Message
            key={m.id}
            message={m}
            onEdit={(text) =>
              act(
                client.PATCH(`${base}/{chat}/messages/{message}`, {
                  params: { path: { chat: chatId, message: m.id } },
                  body: { content: [{ type: "text", text }] },
                }),
              )
            }
          />
        ))}
        {inFlight ? (
          <div class="message assistant streaming" data-testid="in-flight">
            <span class="role">assistant</span>
            <p>{inFlight}</p>
          </div>
        ) : null}
        {failure ? <div class="failure">The turn failed: {failure}</div> : null}
        {calls.length > 0 ? (
          <ToolCalls
            calls={calls}
            onAnswer={(results) =>
              act(client.POST(`${base}/{chat}/tool-results`, { ...path, body: { results } }))
            }
          />
        ) : null}
        <div ref={bottom} />
      </div>
      {queue.length > 0 ? (
        <ul class="queue" data-testid="queue">
          {queue.map((q) => (
            <li key={q.id}>
              <span>{messageText(q)}</span>
              <button
                type="button"
                onClick={() =>
                  act(
                    client.POST(`${base}/{chat}/queue/{queued}/promote`, {
                      params: { path: { chat: chatId, queued: q.id } },
                    }),
                  )
                }
              >
                Send now
              </button>
              <button
                type="button"
                onClick={() =>
                  act(
                    client.DELETE(`${base}/{chat}/queue/{queued}`, {
                      params: { path: { chat: chatId, queued: q.id } },
                    }),
                  )
                }
              >
                Delete
              </button>
            </li>
          ))}
        </ul>
      ) : null}
      <Composer
        label={busy ? "Queue a message" : "Send a message"}
        onSend={(text) =>
          act(
            client.POST(`${base}/{chat}/messages`, {
              ...path,
              body: { content: [{ type: "text", text }] },
            }),
          )
        }
      />
    </main>
  );
}

function Message({ message, onEdit }: { message: ChatMessage; onEdit(text: string): void }) {
  const [editing, setEditing] = useState<string | null>(null);
  const text = messageText(message);
  const tools = message.content.filter((p) => p.type === "tool-call");
  return (
    <div class={`message ${message.role}`} data-testid="message" data-message-id={message.id}>
      <span class="role">{message.role === "user" ? "you" : message.role}</span>
      {editing !== null ? (
        <form
          onSubmit={(e) => {
            e.preventDefault();
            onEdit(editing);
            setEditing(null);
          }}
        >
          <textarea
            aria-label="Edit message"
            value={editing}
            onInput={(e) => setEditing((e.target as HTMLTextAreaElement).value)}
          />
          <button type="submit">Save</button>
          <button type="button" onClick={() => setEditing(null)}>
            Cancel
          </button>
        </form>
      ) : (
        <p>{text}</p>
      )}
      {tools.map((t) => (
        <code class="tool" key={t.tool_call_id}>
          {t.tool_name}({JSON.stringify(t.args)})
        </code>
      ))}
      {message.role === "user" && editing === null ? (
        <button type="button" class="edit" onClick={() => setEditing(text)}>
          Edit
        </button>
      ) : null}
    </div>
  );
}

function ToolCalls(props: {
  calls: ToolCall[];
  onAnswer(results: { tool_call_id: string; output: unknown }[]): void;
}) {
  const [answers, setAnswers] = useState<Record<string, string>>({});
  const [invalid, setInvalid] = useState<string | null>(null);
  return (
    <form
      class="tool-calls"
      data-testid="tool-calls"
      onSubmit={(e) => {
        e.preventDefault();
        try {
          props.onAnswer(
            props.calls.map((c) => ({
              tool_call_id: c.tool_call_id,
              output: JSON.parse(answers[c.tool_call_id] ?? "{}"),
            })),
          );
        } catch {
          setInvalid("Each answer must be JSON.");
        }
      }}
    >
      <p>The model is waiting for your tools:</p>
      {props.calls.map((c) => (
        <label key={c.tool_call_id}>
          <code>
            {c.tool_name}({JSON.stringify(c.args)})
          </code>
          <textarea
            aria-label={`Result of ${c.tool_name}`}
            placeholder="{}"
            value={answers[c.tool_call_id] ?? ""}
            onInput={(e) =>
              setAnswers({ ...answers, [c.tool_call_id]: (e.target as HTMLTextAreaElement).value })
            }
          />
        </label>
      ))}
      {invalid ? <p class="failure">{invalid}</p> : null}
      <button type="submit">Send results</button>
    </form>
  );
}

export function Composer(props: { label: string; onSend(text: string): void }) {
  const [text, setText] = useState("");
  return (
    <form
      class="composer"
      onSubmit={(e) => {
        e.preventDefault();
        if (!text.trim()) return;
        props.onSend(text);
        setText("");
      }}
    >
      <textarea
        aria-label={props.label}
        placeholder={props.label}
        value={text}
        onInput={(e) => setText((e.target as HTMLTextAreaElement).value)}
        onKeyDown={(e) => {
          if (e.key === "Enter" && !e.shiftKey) {
            e.preventDefault();
            (e.currentTarget.form as HTMLFormElement).requestSubmit();
          }
        }}
      />
      <button type="submit">Send</button>
    </form>
  );
}
