import http from "node:http";
import type { AddressInfo } from "node:net";

/*
 * OpenAI's Responses API on loopback (POST /responses, streamed as server-sent events), for tests
 * of the real `openai` provider code path. Every request is recorded; each response gets the next
 * id (resp_1, resp_2, …) and answers with `reply(request)`. A request that continues a response
 * this server never made (previous_response_id unknown) is answered 400, as OpenAI does.
 */

export interface FakeResponsesRequest {
  // biome-ignore lint/suspicious/noExplicitAny: the request body as the SDK sent it.
  body: any;
  /** The id this request's response got. */
  responseId: string;
}

export interface FakeResponses {
  /** Base URL for a provider's base_url (ends in /v1). */
  url: string;
  requests: FakeResponsesRequest[];
  /** Drops a stored response, as OpenAI does after 30 days: continuing it is then a 400. */
  forget(responseId: string): void;
  close(): Promise<void>;
}

const event = (e: object) => `data: ${JSON.stringify(e)}\n\n`;

export async function fakeOpenAIResponses(
  reply: (req: FakeResponsesRequest) => string,
): Promise<FakeResponses> {
  const requests: FakeResponsesRequest[] = [];
  const made = new Set<string>();
  const server = http.createServer((req, res) => {
    let raw = "";
    req.on("data", (d) => {
      raw += d;
    });
    req.on("end", () => {
      const body = raw ? JSON.parse(raw) : {};
      const previous = body.previous_response_id as string | undefined;
      if (previous && !made.has(previous)) {
        res.writeHead(400, { "content-type": "application/json" });
        res.end(
          JSON.stringify({
            error: { message: `Previous response with id '${previous}' not found.` },
          }),
        );
        return;
      }
      const responseId = `resp_${requests.length + 1}`;
      const request = { body, responseId };
      requests.push(request);
      // A response that is not stored cannot be continued.
      if (body.store !== false) made.add(responseId);
      const text = reply(request);
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write(
        event({
          type: "response.created",
          response: { id: responseId, created_at: 1, model: body.model },
        }),
      );
      const item = { type: "message", id: `msg_${responseId}` };
      res.write(event({ type: "response.output_item.added", output_index: 0, item }));
      res.write(event({ type: "response.output_text.delta", item_id: item.id, delta: text }));
      res.write(event({ type: "response.output_item.done", output_index: 0, item }));
      res.write(
        event({
          type: "response.completed",
          response: {
            usage: {
              input_tokens: 5,
              input_tokens_details: { cached_tokens: 0 },
              output_tokens: 2,
              output_tokens_details: { reasoning_tokens: 0 },
            },
          },
        }),
      );
      res.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/v1`,
    requests,
    forget: (id) => {
      made.delete(id);
    },
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
