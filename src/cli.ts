import fs from "node:fs/promises";
import path from "node:path";
import cliProgress from "cli-progress";
import { Command, InvalidArgumentError } from "commander";
import { agentEndpointFromEnv, agentRequest } from "./agent/client.ts";
import { instructionFileNames, maxResourceChars } from "./agent/context.ts";
import { addChatCommands } from "./cli/chats.ts";
import { type Config, loadConfig } from "./config.ts";
import { openDatabase } from "./db/index.ts";
import { migrate } from "./db/migrate.ts";
import { insertAPIKey } from "./generated/api_keys.ts";
import { getOrganizationByName } from "./generated/organizations.ts";
import { getUserByUsername, insertUser } from "./generated/users.ts";
import { type HousekeepingProgress, runHousekeeping } from "./jobs/housekeeping.ts";
import { generateToken } from "./lib/tokens.ts";
import { createLogger, type Logger } from "./log.ts";
import { toApiError } from "./server/errors.ts";

/*
 * The process starters (server, runner, agent) are imported when their command runs: they load
 * the HTTP app, the model SDKs and the runner, which `pgchatd chats ...` and the admin commands
 * do not need (`chats list` starts about a fifth faster without them).
 */

/** Where the generated admin token is written (mode 0600) on first start. */
export function adminTokenPath(config: Config) {
  return path.join(config.dataDir, "admin-token");
}

async function serveCommand() {
  const config = loadConfig();
  const logger = createLogger(config.logLevel);
  const { startServer } = await import("./processes/serve.ts");
  const server = await startServer(config, logger);
  const boot = server.database.bootstrapped;
  // Plain stdout, never the logger: the token must not end up in log storage.
  if (boot?.generated) {
    const file = adminTokenPath(config);
    await fs.mkdir(config.dataDir, { recursive: true });
    await fs.writeFile(file, `${boot.token}\n`, { mode: 0o600 });
    console.log(`Admin API token (shown once; also saved to ${file}):\n  ${boot.token}`);
    console.log(`Try: curl -H "Authorization: Bearer ${boot.token}" ${server.url}/api/v2/users/me`);
  } else if (boot) {
    console.log("Admin user created with the token from PGCHATD_BOOTSTRAP_TOKEN.");
  }
  // Printed last: scripts (and tests) wait for this line.
  console.log(`pgchatd is listening on ${server.url}`);
  exitOnSignal(logger, () => server.close());
}

/** On the first SIGINT or SIGTERM: `close`, then exit 0 (1 when closing failed). */
function exitOnSignal(logger: Logger, close: () => Promise<void>) {
  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, "shutting down");
    close().then(
      () => process.exit(0),
      (err) => {
        logger.error({ err }, "shutdown failed");
        process.exit(1);
      },
    );
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
}

/** `pgchatd runner`: a runner without an HTTP server, for scaling turns apart from requests. */
async function runnerCommand() {
  const config = loadConfig();
  const logger = createLogger(config.logLevel);
  const { startRunner } = await import("./processes/runner.ts");
  const { runner, close } = await startRunner(config, logger);
  // Printed last: scripts (and tests) wait for this line.
  console.log(`pgchatd runner ${runner.workerId} is running`);
  exitOnSignal(logger, close);
}

/** `pgchatd agent`: inside a workspace, runs the model's workspace tool calls (docs/operations.md). */
async function agentCommand(opts: { dir: string }) {
  const endpoint = agentEndpointFromEnv();
  const logger = createLogger(process.env.LOG_LEVEL ?? "info");
  const { startAgent } = await import("./processes/agent.ts");
  const { agent, close } = await startAgent(endpoint, opts.dir, logger);
  // Printed last: scripts (and tests) wait for this line.
  console.log(`pgchatd agent is running in ${path.resolve(opts.dir)}`);
  exitOnSignal(logger, close);
  agent.fatal.catch((err: Error) => {
    console.error(`pgchatd: ${err.message}`);
    close().finally(() => process.exit(1));
  });
}

async function migrateCommand() {
  const config = loadConfig();
  const logger = createLogger(config.logLevel);
  if (config.databaseUrl) {
    await migrate(config.databaseUrl, { log: (m) => logger.info(m) });
  } else {
    // The embedded cluster is started, migrated by openDatabase, and stopped again.
    const db = await withDatabase(config, logger);
    await db.close();
  }
  logger.info("database is up to date");
}

function withDatabase(config: Config, logger: Logger) {
  return openDatabase({
    databaseUrl: config.databaseUrl,
    dataDir: config.dataDir,
    bootstrapToken: config.bootstrapToken,
    poolMax: 2,
    logger,
  });
}

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError("must be a positive integer");
  return n;
}

/** `pgchatd admin housekeeping --once`: one run now; JSON of what it did on stdout. */
/**
 * A run's progress on stderr when it is a terminal (cli-progress): a bar over the owners to
 * auto-archive, then a count per kind of row deleted. A large backlog takes minutes.
 */
function housekeepingProgress() {
  let bar: cliProgress.SingleBar | undefined;
  let phase = "";
  const stop = () => {
    bar?.stop();
    bar = undefined;
  };
  const update = (p: HousekeepingProgress) => {
    if (!process.stderr.isTTY) return;
    if (p.phase !== phase) {
      stop();
      phase = p.phase;
      bar = new cliProgress.SingleBar(
        {
          format:
            p.total === undefined
              ? `housekeeping: ${p.phase} deleted {value}`
              : `housekeeping: ${p.phase} [{bar}] {value}/{total} owners`,
          hideCursor: true,
          stream: process.stderr,
        },
        cliProgress.Presets.shades_classic,
      );
      bar.start(p.total ?? 0, p.done);
    }
    bar?.update(p.done);
  };
  return { update, stop };
}

async function housekeepingCommand() {
  const config = loadConfig();
  const logger = createLogger("warn");
  const db = await withDatabase(config, logger);
  try {
    const progress = housekeepingProgress();
    const result = await runHousekeeping({
      pool: db.pool,
      logger,
      auditRetentionDays: config.auditRetentionDays,
      progress: progress.update,
    }).finally(progress.stop);
    console.log(JSON.stringify(result));
    if (!result.ran) console.error("pgchatd: another process is running housekeeping; try later");
  } finally {
    await db.close();
  }
}

/** `pgchatd admin telemetry`: the snapshot GET /api/v2/telemetry/snapshot serves, on stdout. */
async function telemetryCommand(opts: { since?: string }) {
  const { buildTelemetrySnapshot, defaultTelemetryWindowMs } = await import(
    "./server/telemetry.ts"
  );
  const until = new Date();
  const since = opts.since
    ? new Date(opts.since)
    : new Date(until.getTime() - defaultTelemetryWindowMs);
  if (Number.isNaN(since.getTime()) || since.getTime() > until.getTime()) {
    throw new InvalidArgumentError("--since must be a time in the past (RFC 3339)");
  }
  const config = loadConfig();
  const logger = createLogger("warn");
  const db = await withDatabase(config, logger);
  try {
    console.log(JSON.stringify(await buildTelemetrySnapshot(db.pool, { since, until }), null, 2));
  } finally {
    await db.close();
  }
}

async function createUserCommand(
  username: string,
  opts: { name?: string; email?: string; owner?: boolean; org: string[] },
) {
  const config = loadConfig();
  const logger = createLogger("warn");
  const db = await withDatabase(config, logger);
  try {
    const orgIds: string[] = [];
    for (const name of opts.org.length > 0 ? opts.org : ["default"]) {
      const org = await getOrganizationByName(db.pool, { name });
      if (!org) throw new Error(`organization "${name}" does not exist`);
      orgIds.push(org.id);
    }
    const user = await insertUser(db.pool, {
      username,
      name: opts.name ?? "",
      email: opts.email ?? null,
      roles: opts.owner ? ["owner"] : ["member"],
      chat_spend_limit_micros: null,
      organization_ids: orgIds,
    });
    console.log(JSON.stringify(user, null, 2));
  } finally {
    await db.close();
  }
}

async function createKeyCommand(username: string, opts: { lifetime?: number }) {
  const config = loadConfig();
  const logger = createLogger("warn");
  const db = await withDatabase(config, logger);
  try {
    const user = await getUserByUsername(db.pool, { username });
    if (!user) throw new Error(`user "${username}" does not exist`);
    const token = generateToken();
    await insertAPIKey(db.pool, {
      id: token.id,
      user_id: user.id,
      hashed_secret: token.hashedSecret,
      lifetime_seconds: opts.lifetime ?? 30 * 24 * 3600,
    });
    console.log(token.token);
  } finally {
    await db.close();
  }
}

/** The server refuses larger context files (src/server/routes/chat_context.ts). */
const maxContextFileChars = maxResourceChars;

/** The files to add: each path as given, or a directory's instruction files. */
async function contextFilesOf(paths: string[]): Promise<{ path: string; content: string }[]> {
  const files: string[] = [];
  for (const p of paths.length > 0 ? paths : ["."]) {
    const abs = path.resolve(p);
    const stat = await fs.stat(abs).catch(() => null);
    if (!stat) throw new Error(`${p}: no such file or directory`);
    if (!stat.isDirectory()) {
      files.push(abs);
      continue;
    }
    const found = [];
    for (const name of instructionFileNames) {
      const f = path.join(abs, name);
      if ((await fs.stat(f).catch(() => null))?.isFile()) found.push(f);
    }
    if (found.length === 0) {
      throw new Error(`${p}: no instruction file (${instructionFileNames.join(", ")}) in it`);
    }
    files.push(...found);
  }
  return Promise.all(
    files.map(async (f) => {
      const content = await fs.readFile(f, "utf8");
      if (content.length > maxContextFileChars) {
        throw new Error(`${f}: larger than ${maxContextFileChars} characters`);
      }
      return { path: f, content };
    }),
  );
}

/** The chat a `pgchatd chat` command acts on: --chat, else the command's own chat (a command the
 * agent runs for a chat has PGCHATD_CHAT_ID), else the server picks the agent's one active chat. */
function chatOption(opts: { chat?: string }): string | undefined {
  return opts.chat ?? (process.env.PGCHATD_CHAT_ID || undefined);
}

async function chatContextAddCommand(paths: string[], opts: { chat?: string }) {
  const files = await contextFilesOf(paths);
  const chatId = chatOption(opts);
  const r = await agentRequest(agentEndpointFromEnv(), "POST", "chat-context", {
    ...(chatId ? { chat_id: chatId } : {}),
    files,
  });
  console.log(`added ${r.added} context file(s) to chat ${r.chat_id}`);
}

async function chatContextClearCommand(opts: { chat?: string }) {
  const chatId = chatOption(opts);
  const query = chatId ? `?chat_id=${encodeURIComponent(chatId)}` : "";
  const r = await agentRequest(agentEndpointFromEnv(), "DELETE", `chat-context${query}`);
  console.log(`removed ${r.removed} context file(s) from chat ${r.chat_id}`);
}

/** `pgchatd chat git-activity`: what a git hook (post-checkout, pre-push) reports. */
async function chatGitActivityCommand(opts: {
  chat?: string;
  branch: string;
  remote: string;
  url?: string;
}) {
  const chatId = chatOption(opts);
  const r = await agentRequest(agentEndpointFromEnv(), "POST", "git-activity", {
    ...(chatId ? { chat_id: chatId } : {}),
    branch: opts.branch,
    remote_origin: opts.remote,
    ...(opts.url ? { url: opts.url } : {}),
  });
  console.log(`chat ${r.chat_id}: ${r.git_remote_origin} ${r.git_branch}, marked for refresh`);
}

export function buildCli(): Command {
  const program = new Command()
    .name("pgchatd")
    .description("Postgres-first backend for AI-agent chats")
    .showHelpAfterError();
  program
    .command("serve", { isDefault: true })
    .description("run the HTTP server")
    .action(serveCommand);
  program
    .command("runner")
    .description("run chat turns only (no HTTP server); any number may share one database")
    .action(runnerCommand);
  program
    .command("agent")
    .description(
      "inside a workspace: run the model's workspace tool calls (PGCHATD_AGENT_URL, PGCHATD_AGENT_TOKEN)",
    )
    .option("--dir <path>", "the workspace root the tools work under", ".")
    .action(agentCommand);
  program
    .command("migrate")
    .description("apply migrations and routines, then exit")
    .action(migrateCommand);
  const chat = program
    .command("chat")
    .description(
      "inside a workspace: the chats of its agent (PGCHATD_AGENT_URL, PGCHATD_AGENT_TOKEN)",
    );
  const context = chat.command("context").description("context files the model reads");
  context
    .command("add [paths...]")
    .description(
      `add files to the agent's chat (a directory: its ${instructionFileNames.join(", ")}; default: the current directory)`,
    )
    .option("--chat <id>", "the chat (default: $PGCHATD_CHAT_ID, else the agent's one active chat)")
    .action(chatContextAddCommand);
  context
    .command("clear")
    .description("remove the context files from the agent's chat")
    .option("--chat <id>", "the chat (default: $PGCHATD_CHAT_ID, else the agent's one active chat)")
    .action(chatContextClearCommand);
  chat
    .command("git-activity")
    .description("report a branch pushed or checked out, so the chat shows its pull request")
    .requiredOption("--branch <name>", "the branch (e.g. $(git rev-parse --abbrev-ref HEAD))")
    .requiredOption("--remote <url>", "its remote (e.g. $(git remote get-url origin))")
    .option("--url <url>", "the pull request's URL, when known")
    .option("--chat <id>", "the chat (default: $PGCHATD_CHAT_ID, else the agent's one active chat)")
    .action(chatGitActivityCommand);
  addChatCommands(program);
  const admin = program.command("admin").description("administration");
  admin
    .command("create-user <username>")
    .description("create a user (member of the default organization unless --org is given)")
    .option("--name <name>", "display name")
    .option("--email <email>", "email address")
    .option("--owner", "give the site role owner")
    .option(
      "--org <name>",
      "organization to join (repeatable)",
      (v: string, acc: string[]) => [...acc, v],
      [],
    )
    .action(createUserCommand);
  admin
    .command("housekeeping")
    .description("auto-archive idle chats and apply the retention now, then print what it did")
    .requiredOption("--once", "run once and exit (the runner processes run it every 10 minutes)")
    .action(housekeepingCommand);
  admin
    .command("telemetry")
    .description("print the telemetry snapshot (no personal data) as JSON; nothing is sent")
    .option("--since <time>", "start of the window, RFC 3339 (default: a day ago)")
    .action(telemetryCommand);
  admin
    .command("create-key <username>")
    .description("create an API key for a user and print it")
    .option("--lifetime <seconds>", "key lifetime in seconds (default 30 days)", positiveInt)
    .action(createKeyCommand);
  return program;
}

export async function main(argv: string[]) {
  try {
    await buildCli().parseAsync(argv);
  } catch (err) {
    const apiError = toApiError(err);
    console.error(
      `pgchatd: ${apiError ? apiError.message : err instanceof Error ? err.message : String(err)}`,
    );
    process.exit(1);
  }
}

if (import.meta.url === `file://${process.argv[1]}` || process.argv[1]?.endsWith("src/cli.ts")) {
  await main(process.argv);
}
