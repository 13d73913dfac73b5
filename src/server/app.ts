import { Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import { createMiddleware } from "hono/factory";
import { requireUser } from "./auth.ts";
import type { AppDeps, AppEnv } from "./env.ts";
import { ApiError, errorHandler, notFoundHandler } from "./errors.ts";
import { createMetrics, metricsMiddleware, routeLabel } from "./metrics.ts";
import { healthRoutes } from "./routes/health.ts";
import { organizationsRoutes } from "./routes/organizations.ts";
import { usersRoutes } from "./routes/users.ts";
import { workspacesRoutes } from "./routes/workspaces.ts";

/** JSON bodies are small; 1 MiB stops a runaway client before it is parsed into memory. */
export const jsonBodyLimitBytes = 1024 * 1024;

export type App = Hono<AppEnv>;

/** The HTTP app. Tests call `createApp({...}).request(...)`; serve.ts binds it to a port. */
export function createApp(deps: AppDeps): App {
  const metrics = createMetrics(deps.db);
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
  app.use(
    bodyLimit({
      maxSize: jsonBodyLimitBytes,
      onError: () => {
        throw new ApiError(413, `Request body exceeds ${jsonBodyLimitBytes} bytes.`);
      },
    }),
  );

  app.route("/", healthRoutes(metrics));

  const v2 = new Hono<AppEnv>();
  v2.use(requireUser);
  v2.route("/", usersRoutes);
  v2.route("/", organizationsRoutes);
  v2.route("/", workspacesRoutes);
  app.route("/api/v2", v2);

  app.notFound(notFoundHandler);
  app.onError(errorHandler(deps.logger));
  return app;
}
