import http from "node:http";
import type { AddressInfo } from "node:net";

/*
 * An OpenAI-compatible chat completions server on loopback, for tests of the real provider code
 * paths (the AI SDK's openai-compatible provider speaking HTTP). `respond` decides each answer
 * from the request; every request is recorded.
 */

export interface FakeRequest {
  /** The request's path and query: a provider's base_url may carry a marker of its own. */
  url: string;
  headers: http.IncomingHttpHeaders;
  // biome-ignore lint/suspicious/noExplicitAny: the request body as the SDK sent it.
  body: any;
  /** The text of the last user message. */
  lastUser: string;
  /** Resolves when the connection of this request's response closes (answered, cut or cancelled). */
  closed: Promise<void>;
}

export type FakeAnswer =
  | {
      kind: "text";
      chunks: string[];
      usage?: Usage;
      delayMs?: number;
      /** Streams the chunks before `at`, then waits for `until` (a turn caught mid-stream). */
      pause?: { at: number; until: Promise<unknown> };
      /** Streams the chunks before `cut`, then destroys the socket (a connection lost mid-stream). */
      cut?: number;
    }
  /** Accepts the request and sends nothing, not even headers, until `until` (then a socket reset). */
  | { kind: "silent"; until: Promise<unknown> }
  | { kind: "tool"; name: string; args: unknown; id?: string }
  | { kind: "status"; status: number; body: unknown; headers?: Record<string, string> };

interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  cached_tokens?: number;
}

export interface FakeOpenAI {
  /** Base URL for a provider's base_url (ends in /v1). */
  url: string;
  requests: FakeRequest[];
  close(): Promise<void>;
}

function lastUserText(body: { messages?: { role: string; content: unknown }[] }): string {
  const m = [...(body.messages ?? [])].reverse().find((x) => x.role === "user");
  if (!m) return "";
  if (typeof m.content === "string") return m.content;
  return (m.content as { type: string; text?: string }[])
    .map((p) => (p.type === "text" ? (p.text ?? "") : ""))
    .join("");
}

const chunk = (delta: object, finish: string | null = null) => ({
  id: "chatcmpl-fake",
  object: "chat.completion.chunk",
  created: 1,
  model: "fake-model",
  choices: [{ index: 0, delta, finish_reason: finish }],
});

export async function fakeOpenAI(respond: (req: FakeRequest) => FakeAnswer): Promise<FakeOpenAI> {
  const requests: FakeRequest[] = [];
  const server = http.createServer((req, res) => {
    let raw = "";
    req.on("data", (d) => {
      raw += d;
    });
    req.on("end", async () => {
      const body = raw ? JSON.parse(raw) : {};
      const request: FakeRequest = {
        url: req.url ?? "",
        headers: req.headers,
        body,
        lastUser: lastUserText(body),
        closed: new Promise((closed) => res.once("close", () => closed())),
      };
      requests.push(request);
      const answer = respond(request);
      if (answer.kind === "silent") {
        await answer.until;
        res.socket?.destroy();
        return;
      }
      if (answer.kind === "status") {
        res.writeHead(answer.status, { "content-type": "application/json", ...answer.headers });
        res.end(JSON.stringify(answer.body));
        return;
      }
      const usage =
        answer.kind === "text" && answer.usage
          ? {
              prompt_tokens: answer.usage.prompt_tokens,
              completion_tokens: answer.usage.completion_tokens,
              total_tokens: answer.usage.prompt_tokens + answer.usage.completion_tokens,
              prompt_tokens_details: { cached_tokens: answer.usage.cached_tokens ?? 0 },
            }
          : { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 };
      if (!body.stream) {
        const message =
          answer.kind === "text"
            ? { role: "assistant", content: answer.chunks.join("") }
            : {
                role: "assistant",
                content: null,
                tool_calls: [
                  {
                    id: answer.id ?? "call_fake",
                    type: "function",
                    function: { name: answer.name, arguments: JSON.stringify(answer.args) },
                  },
                ],
              };
        res.writeHead(200, { "content-type": "application/json" });
        res.end(
          JSON.stringify({
            id: "chatcmpl-fake",
            object: "chat.completion",
            created: 1,
            model: "fake-model",
            choices: [
              { index: 0, message, finish_reason: answer.kind === "text" ? "stop" : "tool_calls" },
            ],
            usage,
          }),
        );
        return;
      }
      res.writeHead(200, { "content-type": "text/event-stream" });
      const send = (data: unknown) => res.write(`data: ${JSON.stringify(data)}\n\n`);
      if (answer.kind === "text") {
        send(chunk({ role: "assistant", content: "" }));
        for (const [i, c] of answer.chunks.entries()) {
          if (answer.delayMs) await new Promise((r) => setTimeout(r, answer.delayMs));
          if (answer.pause?.at === i) await answer.pause.until;
          if (answer.cut === i) {
            // What was sent reaches the client first: an SSE comment's callback says it is out.
            await new Promise((sent) => res.write(": cut\n\n", sent));
            res.socket?.destroy();
            return;
          }
          if (res.destroyed) return;
          send(chunk({ content: c }));
        }
        send(chunk({}, "stop"));
      } else {
        const args = JSON.stringify(answer.args);
        const id = answer.id ?? "call_fake";
        send(
          chunk({
            role: "assistant",
            tool_calls: [
              { index: 0, id, type: "function", function: { name: answer.name, arguments: "" } },
            ],
          }),
        );
        send(chunk({ tool_calls: [{ index: 0, function: { arguments: args.slice(0, 3) } }] }));
        send(chunk({ tool_calls: [{ index: 0, function: { arguments: args.slice(3) } }] }));
        send(chunk({}, "tool_calls"));
      }
      send({
        id: "chatcmpl-fake",
        object: "chat.completion.chunk",
        created: 1,
        model: "fake-model",
        choices: [],
        usage,
      });
      res.write("data: [DONE]\n\n");
      res.end();
    });
  });
  server.listen(0, "127.0.0.1");
  await new Promise<void>((ok) => server.once("listening", ok));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/v1`,
    requests,
    close: () =>
      new Promise<void>((ok) => {
        server.closeAllConnections();
        server.close(() => ok());
      }),
  };
}
