import createFetchClient, {
  type Client,
  type FetchResponse,
  type MaybeOptionalInit,
} from "openapi-fetch";
import type {
  HttpMethod,
  MediaType,
  PathsWithMethod,
  RequiredKeysOf,
} from "openapi-typescript-helpers";
import { type ErrorBody, PgchatdError } from "./errors.ts";
import type { components, paths } from "./schema.ts";
import {
  type ChatStreamEvent,
  type EventStream,
  openStream,
  type StreamOptions,
  type WatchEvent,
} from "./streams.ts";

export { type ErrorBody, PgchatdError, type SpendLimit } from "./errors.ts";
export type { components, paths } from "./schema.ts";
export { SseDecoder } from "./sse.ts";
export type { ChatStreamEvent, EventStream, StreamOptions, WatchEvent } from "./streams.ts";

type Schemas = components["schemas"];
export type Chat = Schemas["Chat"];
export type ChatMessage = Schemas["ChatMessage"];
export type ChatQueuedMessage = Schemas["ChatQueuedMessage"];
export type ChatStatus = Schemas["ChatStatus"];
export type ChatError = Schemas["ChatError"];
export type Part = Schemas["Part"];

/** A message's text as users read it: its text parts, in order (tool calls and files left out). */
export function messageText(message: { content: { type: string; text?: string | undefined }[] }) {
  return message.content
    .filter((p) => p.type === "text")
    .map((p) => p.text ?? "")
    .join("");
}

export interface ClientOptions {
  /** Where pgchatd listens, e.g. http://localhost:3000. */
  baseUrl: string;
  /** An API token (`POST /api/v2/users/me/keys`, or the bootstrap token); sent as a Bearer token. */
  token?: string;
  /** Headers for every request. */
  headers?: Record<string, string>;
  /** A fetch implementation; the global one by default. */
  fetch?: typeof fetch;
}

/** The 2xx body of an operation; undefined for one that answers without a body (204). */
type Data<Op extends Record<string | number, unknown>, Init> = FetchResponse<
  Op,
  Init,
  MediaType
>["data"] extends infer D
  ? [Exclude<D, undefined>] extends [never]
    ? undefined
    : Exclude<D, undefined>
  : never;

/**
 * A call of one HTTP method: typed path, params and body as openapi-fetch takes them
 * (`{params: {path, query}, body}`); resolves to the response body, and rejects with a
 * PgchatdError for any status outside 2xx.
 */
type Call<M extends HttpMethod> = <
  P extends PathsWithMethod<paths, M>,
  I extends MaybeOptionalInit<paths[P], M>,
>(
  url: P,
  ...init: RequiredKeysOf<I> extends never ? [I?] : [I]
) => Promise<Data<paths[P][M] & Record<string | number, unknown>, I>>;

type ListQuery = NonNullable<paths["/api/experimental/chats"]["get"]["parameters"]["query"]>;

export interface PgchatdClient {
  /** The openapi-fetch client underneath: `{data, error, response}` instead of throwing. */
  api: Client<paths>;
  GET: Call<"get">;
  POST: Call<"post">;
  PUT: Call<"put">;
  PATCH: Call<"patch">;
  DELETE: Call<"delete">;
  /** The caller's root chats in list order, a page at a time (keyset `after_id`). */
  chatPages(query?: Omit<ListQuery, "after_id" | "offset">): AsyncGenerator<Chat[]>;
  /**
   * A chat's messages after `afterId` (0: from the first), oldest first, a page at a time: what a
   * poller reads to catch up (docs/api.md "Messages").
   */
  messagesAfter(chatId: string, afterId?: number, limit?: number): AsyncGenerator<ChatMessage[]>;
  /** A chat's history, newest first, a page at a time (`before_id`). */
  history(chatId: string, limit?: number): AsyncGenerator<ChatMessage[]>;
  /** The caller's chat events, live, resumed with Last-Event-ID across reconnects. */
  watch(options?: StreamOptions): EventStream<WatchEvent>;
  /** One chat: its snapshot, then live events, resumed with Last-Event-ID across reconnects. */
  chatStream(
    chatId: string,
    options?: StreamOptions & { afterId?: number },
  ): EventStream<ChatStreamEvent>;
}

const chatsPath = "/api/experimental/chats";

/** A client of one pgchatd server, authenticated by one token. */
export function createClient(options: ClientOptions): PgchatdClient {
  const baseUrl = options.baseUrl.replace(/\/+$/, "");
  const fetchImpl = options.fetch ?? globalThis.fetch.bind(globalThis);
  const headers: Record<string, string> = { ...options.headers };
  if (options.token) headers.authorization = `Bearer ${options.token}`;
  const api = createFetchClient<paths>({ baseUrl, headers, fetch: (req) => fetchImpl(req) });

  const call = <M extends HttpMethod>(method: Uppercase<M>): Call<M> =>
    (async (url: string, ...init: unknown[]) => {
      const fn = api[method as "GET"] as unknown as (
        url: string,
        ...init: unknown[]
      ) => Promise<{ data?: unknown; error?: unknown; response: Response }>;
      const res = await fn(url, ...init);
      if (res.error !== undefined || !res.response.ok) {
        throw new PgchatdError(
          res.response.status,
          errorBody(res.error, res.response),
          method,
          res.response.url ? new URL(res.response.url).pathname : url,
        );
      }
      return res.response.status === 204 ? undefined : res.data;
    }) as Call<M>;

  const client: PgchatdClient = {
    api,
    GET: call("GET"),
    POST: call("POST"),
    PUT: call("PUT"),
    PATCH: call("PATCH"),
    DELETE: call("DELETE"),

    async *chatPages(query = {}) {
      const limit = query.limit ?? 50;
      let after: string | undefined;
      for (;;) {
        const page = await client.GET(chatsPath, {
          params: { query: { ...query, limit, ...(after ? { after_id: after } : {}) } },
        });
        if (page.length > 0) yield page;
        if (page.length < limit) return;
        after = page[page.length - 1]!.id;
      }
    },

    async *messagesAfter(chatId, afterId = 0, limit = 50) {
      let after = afterId;
      for (;;) {
        const page = await client.GET(`${chatsPath}/{chat}/messages`, {
          params: { path: { chat: chatId }, query: { after_id: after, limit } },
        });
        if (page.messages.length > 0) yield page.messages;
        if (!page.has_more || page.messages.length === 0) return;
        after = page.messages[page.messages.length - 1]!.id;
      }
    },

    async *history(chatId, limit = 50) {
      let before: number | undefined;
      for (;;) {
        const page = await client.GET(`${chatsPath}/{chat}/messages`, {
          params: {
            path: { chat: chatId },
            query: { limit, ...(before !== undefined ? { before_id: before } : {}) },
          },
        });
        if (page.messages.length > 0) yield page.messages;
        if (!page.has_more || page.messages.length === 0) return;
        before = page.messages[page.messages.length - 1]!.id;
      }
    },

    watch(streamOptions) {
      return openStream<WatchEvent>(
        { url: `${baseUrl}${chatsPath}/watch`, headers, fetch: fetchImpl },
        streamOptions,
      );
    },

    chatStream(chatId, streamOptions = {}) {
      const { afterId, ...rest } = streamOptions;
      const query = afterId ? `?after_id=${afterId}` : "";
      return openStream<ChatStreamEvent>(
        {
          url: `${baseUrl}${chatsPath}/${encodeURIComponent(chatId)}/stream${query}`,
          headers,
          fetch: fetchImpl,
        },
        rest,
      );
    },
  };
  return client;
}

function errorBody(error: unknown, res: Response): ErrorBody {
  if (typeof error === "object" && error !== null && "message" in error) return error as ErrorBody;
  const text = typeof error === "string" ? error : "";
  return { message: text.slice(0, 500) || res.statusText || `HTTP ${res.status}` };
}
