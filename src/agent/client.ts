/*
 * The workspace agent's HTTP client: its routes under /api/v2/workspaceagents/me (docs/api.md
 * "Workspace context", "Workspace tools"), with the agent token from the workspace's environment.
 */

export interface AgentEndpoint {
  /** The pgchatd server, without a trailing slash. */
  url: string;
  token: string;
}

/** The agent's server and token, from the workspace's environment. */
export function agentEndpointFromEnv(env: NodeJS.ProcessEnv = process.env): AgentEndpoint {
  const url = env.PGCHATD_AGENT_URL;
  const token = env.PGCHATD_AGENT_TOKEN;
  if (!url || !token) {
    throw new Error(
      "PGCHATD_AGENT_URL and PGCHATD_AGENT_TOKEN must be set (the workspace agent's server and token)",
    );
  }
  return { url: url.replace(/\/+$/, ""), token };
}

/** An answer of the server that is not 2xx, with its status and message. */
export class AgentRequestError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** A call of one of the agent's routes (`me/<route>`); the server's error message on failure. */
export async function agentRequest<T = Record<string, unknown>>(
  endpoint: AgentEndpoint,
  method: "GET" | "POST" | "PUT" | "DELETE",
  route: string,
  body?: unknown,
  signal?: AbortSignal,
): Promise<T> {
  const res = await fetch(`${endpoint.url}/api/v2/workspaceagents/me/${route}`, {
    method,
    headers: { "coder-agent-token": endpoint.token, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
    ...(signal ? { signal } : {}),
  });
  const json = (await res.json().catch(() => ({}))) as { message?: string; detail?: string };
  if (!res.ok) {
    throw new AgentRequestError(
      res.status,
      `${json.message ?? `HTTP ${res.status}`}${json.detail ? ` (${json.detail})` : ""}`,
    );
  }
  return json as T;
}
