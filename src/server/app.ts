import { Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import { createMiddleware } from "hono/factory";
import { requireAgent, requireUser } from "./auth.ts";
import type { AppDeps, AppEnv } from "./deps.ts";
import { errorHandler, notFoundHandler, tooLarge } from "./errors.ts";
import { createMetrics, metricsMiddleware, routeLabel } from "./metrics.ts";
import { openApiRoutes } from "./openapi.ts";
import { auditLogsRoutes } from "./routes/audit_logs.ts";
import { chatAiSdkRoutes } from "./routes/chat_ai_sdk.ts";
import { chatContextAgentRoutes, chatContextRoutes } from "./routes/chat_context.ts";
import { chatCostsRoutes } from "./routes/chat_costs.ts";
import {
  chatDiffStatusesAgentRoutes,
  chatDiffStatusesRoutes,
} from "./routes/chat_diff_statuses.ts";
import { chatEventsRoutes } from "./routes/chat_events.ts";
import { chatFilesRoutes, maxFileBytes } from "./routes/chat_files.ts";
import { chatHousekeepingRoutes } from "./routes/chat_housekeeping.ts";
import { chatMessagesRoutes } from "./routes/chat_messages.ts";
import {
  chatModelConfigsRoutes,
  chatModelsRoutes,
  chatProvidersRoutes,
} from "./routes/chat_models.ts";
import { chatQueueRoutes } from "./routes/chat_queue.ts";
import { chatTitlesRoutes } from "./routes/chat_titles.ts";
import { chatToolCallsAgentRoutes } from "./routes/chat_tool_calls.ts";
import { chatUsageLimitsRoutes } from "./routes/chat_usage_limits.ts";
import { chatsRoutes } from "./routes/chats.ts";
import { healthRoutes } from "./routes/health.ts";
import { notificationsRoutes } from "./routes/notifications.ts";
import { organizationsRoutes } from "./routes/organizations.ts";
import { telemetryRoutes } from "./routes/telemetry.ts";
import { usersRoutes } from "./routes/users.ts";
import { workspacesRoutes } from "./routes/workspaces.ts";
import { webRoutes } from "./web.ts";

/** JSON bodies are small; 1 MiB stops a runaway client before it is parsed into memory. */
export const jsonBodyLimitBytes = 1024 * 1024;

export type App = Hono<AppEnv>;

/** The HTTP app. Tests call `createApp({...}).request(...)`; serve.ts binds it to a port. */
export function createApp(deps: AppDeps): App {
  const metrics = createMetrics(deps.db, deps.watch, deps.runner, deps.reads);
  const app = new Hono<AppEnv>();

  app.use(
    createMiddleware<AppEnv>(async (c, next) => {
      c.set("deps", deps);
      const started = performance.now();
      await next();
      // Method, route pattern and status only: never headers or query strings, which may hold
      // credentials.
      deps.logger.info(
        {
          method: c.req.method,
          route: routeLabel(c),
          status: c.res.status,
          ms: Math.round((performance.now() - started) * 10) / 10,
        },
        "request",
      );
    }),
  );
  app.use(metricsMiddleware(metrics));
  if (deps.watch || deps.runner) {
    const { watch, runner } = deps;
    // A request that may have written has committed by now: deliver its events without waiting
    // for the NOTIFY round trip (in batched mode also schedule the one NOTIFY for other
    // replicas), and let this process's runner claim a chat it may have made pending. A request
    // that failed rolled its transaction back and wrote nothing.
    app.use(async (c, next) => {
      await next();
      if (c.req.method === "GET" || c.req.method === "HEAD" || c.res.status >= 400) return;
      watch?.poke();
      runner?.wake();
    });
  }
  const limit = (maxSize: number) =>
    bodyLimit({
      maxSize,
      onError: () => {
        throw tooLarge(`Request body exceeds ${maxSize} bytes.`);
      },
    });
  const jsonLimit = limit(jsonBodyLimitBytes);
  const fileLimit = limit(maxFileBytes);
  // One place decides each route's body limit: uploads may be 10 MiB, everything else is JSON.
  // No GET or HEAD route reads a body, and the limit's check for one would build a whole fetch
  // Request (headers, AbortController) from the Node request, kept for as long as a stream is open.
  app.use((c, next) =>
    c.req.method === "GET" || c.req.method === "HEAD"
      ? next()
      : c.req.method === "POST" && c.req.path === "/api/experimental/chats/files"
        ? fileLimit(c, next)
        : jsonLimit(c, next),
  );

  app.route("/", healthRoutes(metrics));
  // Public, like the docs: the document of this very app (src/server/openapi.ts).
  app.route("/", openApiRoutes(app));
  // The web app's page and files (web/): public, like the docs.
  app.route("/", webRoutes());

  // Agent routes first: they answer before the user routes' authentication below runs.
  const agents = new Hono<AppEnv>();
  agents.use(requireAgent);
  agents.route("/", chatContextAgentRoutes);
  agents.route("/", chatDiffStatusesAgentRoutes);
  agents.route("/", chatToolCallsAgentRoutes);
  app.route("/api/v2/workspaceagents", agents);

  const v2 = new Hono<AppEnv>();
  v2.use(requireUser);
  v2.route("/", usersRoutes);
  v2.route("/", organizationsRoutes);
  v2.route("/", workspacesRoutes);
  v2.route("/", notificationsRoutes);
  v2.route("/", telemetryRoutes);
  app.route("/api/v2", v2);

  const chats = new Hono<AppEnv>();
  chats.use(requireUser);
  // Before chatsRoutes, whose /:chat would otherwise take "files", "providers", "model-configs",
  // "usage-limits", "config", "ai-sdk", "cost", "models", "watch", "insights", "github-token" and "audit".
  chats.route("/files", chatFilesRoutes);
  chats.route("/providers", chatProvidersRoutes);
  chats.route("/model-configs", chatModelConfigsRoutes);
  chats.route("/usage-limits", chatUsageLimitsRoutes);
  chats.route("/config", chatHousekeepingRoutes);
  chats.route("/ai-sdk", chatAiSdkRoutes);
  chats.route("/", auditLogsRoutes);
  chats.route("/", chatCostsRoutes);
  chats.route("/", chatDiffStatusesRoutes);
  chats.route("/", chatModelsRoutes);
  chats.route("/", chatEventsRoutes);
  chats.route("/", chatMessagesRoutes);
  chats.route("/", chatQueueRoutes);
  chats.route("/", chatContextRoutes);
  chats.route("/", chatTitlesRoutes);
  chats.route("/", chatsRoutes);
  app.route("/api/experimental/chats", chats);

  app.notFound(notFoundHandler);
  app.onError(errorHandler(deps.logger));
  return app;
}
