import { WorkspaceAgent } from "../agent/agent.ts";
import type { AgentEndpoint } from "../agent/client.ts";
import type { Logger } from "../log.ts";

/*
 * The workspace agent's composition root: `pgchatd agent` and the tests that run one build it
 * here. It needs no database: it talks to pgchatd over HTTP with its agent token.
 */

export interface RunningAgent {
  agent: WorkspaceAgent;
  close(): Promise<void>;
}

/** Starts an agent for the workspace at `root`; resolves once its stream is open. */
export async function startAgent(
  endpoint: AgentEndpoint,
  root: string,
  logger: Logger,
): Promise<RunningAgent> {
  const agent = new WorkspaceAgent({ endpoint, root, logger });
  await agent.start();
  await Promise.race([agent.connected, agent.fatal]);
  return { agent, close: () => agent.stop() };
}
