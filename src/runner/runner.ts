import type { EventEmitter } from "node:events";
import os from "node:os";
import type pg from "pg";
import { channels } from "../db/channels.ts";
import { createListener, type Listener } from "../db/listen.ts";
import type { Pool, PoolQueryable } from "../db/pool.ts";
import { isDatabaseUnreachable } from "../db/unreachable.ts";
import { upsertChatRunnerHeartbeat } from "../generated/chat_runners.ts";
import {
  claimPendingChats,
  listChatRunStatesByWorkerID,
  releaseChatRunsByWorkerID,
  releaseOrphanedChatRunsByWorkerID,
} from "../generated/chat_runs.ts";
import type { Logger } from "../log.ts";
import type { Models } from "../models/providers.ts";
import { limits } from "../tools/workspace.ts";
import type { Publish } from "./parts.ts";
import { runRecoveryPass } from "./recovery.ts";
import {
  type Lease,
  type RetryPolicy,
  runTurn,
  type StopReason,
  type TurnOutcome,
} from "./turn.ts";
import { ToolWaker } from "./workspace_tools.ts";

/*
 * The chat runner (docs/operations.md "The runner"): registers itself in chat_runners, claims
 * pending chats, runs their turns, renews all its leases with one narrow row per heartbeat
 * interval, recovers what crashed runners left behind, and hands its chats back on shutdown. Any
 * number of runners (in `pgchatd serve` processes or alone as `pgchatd runner`) share one
 * database; the lease rules in SQL keep them apart, and a chat that becomes pending wakes one of
 * them (chat_runner_choose, docs/operations.md "Scaling").
 */

export interface RunnerOptions {
  /**
   * This runner's id (chat_runners.id, chats.worker_id); random when absent. A process that sets
   * it on its pool's sessions too (PoolOptions.runnerId) is chosen first for the chats its own
   * writes make pending, without a NOTIFY: it wakes this runner after them.
   */
  workerId?: string | undefined;
  pool: Pool;
  /** For the LISTEN connection (wake-ups and stop signals) when `listener` is absent. */
  databaseUrl: string;
  /**
   * The process's LISTEN connection, shared with its change streams (src/watch): one connection
   * per process, so a commit's NOTIFY wakes one backend and one socket here, not two. The runner
   * adds its channels and leaves it open on stop; absent, it opens and closes its own.
   */
  listener?: Listener | undefined;
  logger: Logger;
  models: Models;
  /** Where streamed parts and retry announcements go; absent, they are not published. */
  publish?: Publish | undefined;
  /**
   * Called after each of this runner's commits that wrote change events: the local watch reads
   * them now, and in batched mode one NOTIFY tells the other processes (src/watch poke).
   */
  afterWrite?: (() => void) | undefined;
  /** Turns this process runs at once (PGCHATD_RUNNER_CONCURRENCY). */
  concurrency?: number;
  /** Chats one claim takes at most. */
  claimBatch?: number;
  /**
   * Looks for pending chats this often even without a wake-up: a chosen runner that died before
   * it claimed, a lost NOTIFY, every runner busy when the chat became pending. Bounds how long a
   * chat waits for a free slot somewhere.
   */
  pollMs?: number;
  /** Renews this runner's row (all its leases), and runs the recovery pass, this often. */
  heartbeatMs?: number;
  /** A runner whose row was not renewed for this long died: recovery hands its chats back. */
  staleAfterMs?: number;
  /** A chat waiting this long for client tool results fails (docs/api.md: 5 minutes). */
  toolResultsTimeoutMs?: number;
  retry?: Partial<RetryPolicy>;
  /** A model call silent for this long (before its response or mid-stream) is a timeout. */
  chunkTimeoutMs?: number;
  partFlushMs?: number;
  maxSteps?: number;
  /**
   * How long a workspace tool call waits for the agent's answer: a command its own time limit
   * plus toolAnswerGraceMs, anything else toolAnswerMs (docs/api.md "Workspace tools").
   */
  toolAnswerMs?: number;
  toolAnswerGraceMs?: number;
}

export interface RunnerStats {
  /** Turns by how they ended. */
  turns: Record<TurnOutcome, number>;
  /** SQL statements this runner sent (claims, heartbeats, recovery, turns, follow-ups). */
  statements: number;
  /** The same, by generated query name (ClaimPendingChats, FinishChatRun, ...). */
  statementsByQuery: Record<string, number>;
  claims: number;
  /** Claims that found nothing: woken for a chat another runner took, or a poll of an idle system. */
  emptyClaims: number;
  heartbeats: number;
  /** Times this runner found itself presumed dead (its row reaped) and registered again. */
  reregistrations: number;
  /** Chats whose recovery raised (each logged with its error; the pass went on). */
  recoveryFailures: number;
}

const defaults = {
  concurrency: 32,
  // One claim statement fills up to this many slots; larger batches hold more row locks at once.
  claimBatch: 50,
  pollMs: 1_000,
  // The reference system heartbeats every 30 s; 15 s with a 60 s staleness window tolerates three
  // missed heartbeats (a GC pause, a slow database) before another runner takes a turn over.
  heartbeatMs: 15_000,
  staleAfterMs: 60_000,
  toolResultsTimeoutMs: 5 * 60_000,
  // 1 s, 2 s, 4 s (jittered, or what Retry-After asks), then the turn fails.
  retry: { retries: 3, baseDelayMs: 1_000, maxDelayMs: 30_000 },
  // A provider that stops sending (mid-stream, or before its response) would hold the turn, and
  // the chat in `running`, until a human interrupts it. Reasoning models can think for a minute
  // before the first token; two minutes of silence is dead.
  chunkTimeoutMs: 120_000,
  // About 20 parts per second per chat: smooth for readers, few NOTIFYs for the database.
  partFlushMs: 50,
  // A coding turn reads, edits and runs tests for dozens of steps; a model stuck in a loop of
  // calls stops here (its last calls are answered with the limit, and the turn ends).
  maxSteps: 50,
  toolAnswerMs: limits.answerMs,
  toolAnswerGraceMs: limits.answerGraceMs,
} as const;

interface Run {
  lease: Lease;
  controller: AbortController;
  done: Promise<void>;
  /** Woken when the workspace agent answers one of the turn's calls. */
  waker: ToolWaker;
}

export class Runner {
  readonly workerId: string;
  readonly stats: RunnerStats = {
    turns: {
      completed: 0,
      requires_action: 0,
      error: 0,
      interrupted: 0,
      discarded: 0,
      lost: 0,
      shutdown: 0,
    },
    statements: 0,
    statementsByQuery: {},
    claims: 0,
    emptyClaims: 0,
    heartbeats: 0,
    reregistrations: 0,
    recoveryFailures: 0,
  };

  private readonly opts: Required<
    Omit<RunnerOptions, "publish" | "afterWrite" | "retry" | "workerId">
  > & {
    publish: Publish | undefined;
    afterWrite: () => void;
    retry: RetryPolicy;
  };
  private readonly log: Logger;
  /** The pool, counting statements (RunnerStats.statements). */
  private readonly db: PoolQueryable;
  private readonly runs = new Map<string, Run>();
  /**
   * Set when this runner may hold leases that no turn of it runs: a turn or a claim failed because
   * the database could not be reached. Its own heartbeat renews such a lease, so no recovery pass
   * would ever release it and the chat would stay running forever: the next tick releases it
   * (releaseOrphans).
   */
  private mayHoldOrphans = false;
  /** Summaries and titles of finished turns. */
  private readonly followUps = new Set<Promise<void>>();
  private readonly followUpAbort = new AbortController();
  /** The LISTEN connection this runner opened itself (closed on stop); unset when shared. */
  private listener: Listener | undefined;
  private readonly unlisten: (() => void)[] = [];
  private timers: NodeJS.Timeout[] = [];
  private claiming: Promise<void> | undefined;
  private claimAgain = false;
  private stopping = false;
  private maintenance: Promise<void> | undefined;
  /** The free slots this runner's row shows, as its last claim or heartbeat wrote them. */
  private reportedFree: number | undefined;
  /** The tail of this runner's writes of its own row (writingRow). */
  private rowWrites: Promise<void> = Promise.resolve();
  /** chat_runners.started_at of this runner's registration; another one means it was reaped. */
  private registeredAt: string | undefined;

  constructor(options: RunnerOptions) {
    this.workerId = options.workerId ?? crypto.randomUUID();
    this.opts = {
      ...defaults,
      ...options,
      publish: options.publish,
      afterWrite: options.afterWrite ?? (() => {}),
      retry: { ...defaults.retry, ...options.retry },
    } as typeof this.opts;
    this.log = options.logger.child({ component: "runner", worker: this.workerId });
    const pool = options.pool;
    this.db = {
      query: ((...args: Parameters<pg.Pool["query"]>) => {
        this.stats.statements++;
        const first = args[0] as unknown as string | { text?: string } | undefined;
        const text = typeof first === "string" ? first : first?.text;
        const name = (text && /^-- name: (\w+)/.exec(text)?.[1]) ?? "other";
        this.stats.statementsByQuery[name] = (this.stats.statementsByQuery[name] ?? 0) + 1;
        return (pool.query as (...a: unknown[]) => unknown)(...args);
      }) as PoolQueryable["query"],
    };
  }

  /** Turns running now. */
  get active(): number {
    return this.runs.size;
  }

  async start(): Promise<void> {
    const shared = this.opts.listener;
    const listener = shared ?? createListener(this.opts.databaseUrl, "pgchatd-runner");
    // biome-ignore lint/suspicious/noExplicitAny: the handlers below take each event's own arguments
    const on = (emitter: EventEmitter<any>, name: string, fn: (...args: any[]) => void) => {
      emitter.on(name, fn);
      this.unlisten.push(() => emitter.off(name, fn));
    };
    // A shared listener's errors are logged by its owner.
    if (!shared) {
      on(listener.events, "error", (err: Error) =>
        this.log.error({ err }, "runner LISTEN connection failed"),
      );
    }
    // After a reconnect: a stop signal or new work may have been missed meanwhile.
    on(listener.events, "connected", () => {
      this.wake();
      this.tick().catch(() => {});
    });
    // Addressed to one runner (chat_runner_choose), or to all ("": no runner was registered).
    on(listener.notifications, channels.pending, (payload: string) => {
      if (payload === "" || payload === this.workerId) this.wake();
    });
    // Every runner hears every stop signal; the one running the chat checks its lease first (the
    // signal may be about a run this runner has already replaced with a new claim).
    on(listener.notifications, channels.runner, (payload: string) => {
      // "tool:<chat id>": the workspace agent answered a call the chat's turn waits for.
      if (payload.startsWith("tool:")) {
        this.runs.get(payload.slice(5))?.waker.wake();
        return;
      }
      const chatId = payload;
      const run = this.runs.get(chatId);
      if (run) {
        this.checkRuns([run]).catch((err) =>
          this.log.warn({ err, chat: chatId }, "checking a turn failed"),
        );
      }
    });
    try {
      await listener.connect();
      await listener.listenTo(channels.runner, channels.pending);
      await this.register();
    } catch (err) {
      this.stopListening();
      if (!shared) await listener.close();
      throw err;
    }
    this.listener = shared ? undefined : listener;

    const every = (ms: number, fn: () => void) => {
      const t = setInterval(fn, ms);
      t.unref();
      this.timers.push(t);
    };
    every(this.opts.pollMs, () => this.wake());
    every(this.opts.heartbeatMs, () => {
      this.tick().catch((err) => this.log.warn({ err }, "heartbeat or recovery failed"));
    });
    this.log.info({ concurrency: this.opts.concurrency }, "runner started");
    this.wake();
  }

  /** There may be pending chats: claim as many as there are free slots (soon, coalesced). */
  wake(): void {
    if (this.stopping) return;
    if (this.claiming) {
      this.claimAgain = true;
      return;
    }
    this.claiming = this.claimLoop()
      .catch((err) => {
        // The claim may have committed and only its answer been lost.
        if (isDatabaseUnreachable(err)) this.mayHoldOrphans = true;
        this.log.warn({ err }, "claiming chats failed");
      })
      .finally(() => {
        this.claiming = undefined;
        if (this.claimAgain) {
          this.claimAgain = false;
          this.wake();
        }
      });
  }

  /**
   * Heartbeat, then the recovery pass: what the timer runs every heartbeatMs. Exposed so tests
   * and a reconnecting LISTEN connection need not wait for the timer.
   */
  tick(): Promise<void> {
    // Once stopping, its row is about to go (or gone): a heartbeat would register it again.
    if (this.stopping) return this.maintenance ?? Promise.resolve();
    this.maintenance ??= (async () => {
      await this.heartbeat();
      await this.releaseOrphans();
      await this.recover();
    })().finally(() => {
      this.maintenance = undefined;
    });
    return this.maintenance;
  }

  /** Resolves once no turn and no follow-up is running (tests, benchmarks). */
  async idle(): Promise<void> {
    for (;;) {
      const pending = [...[...this.runs.values()].map((r) => r.done), ...this.followUps];
      if (this.claiming) pending.push(this.claiming);
      if (pending.length === 0) return;
      await Promise.allSettled(pending);
    }
  }

  /**
   * Shutdown: no new claims, running turns stop without writing, and this runner's leases are
   * released in one statement (running chats go back to pending for another runner).
   */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    for (const t of this.timers) clearInterval(t);
    await this.claiming;
    // No free slot from now on: chats that become pending while the turns stop wake another runner.
    await this.writingRow(() => this.upsertRow(0)).catch((err) =>
      this.log.warn({ err }, "reporting no free slots at shutdown failed"),
    );
    for (const run of this.runs.values()) run.controller.abort("shutdown" satisfies StopReason);
    this.followUpAbort.abort();
    await Promise.allSettled([...[...this.runs.values()].map((r) => r.done), ...this.followUps]);
    await this.maintenance?.catch(() => {});
    try {
      const released = await releaseChatRunsByWorkerID(this.db, { worker_id: this.workerId });
      if (released.released) {
        this.opts.afterWrite();
        this.log.info({ released: released.released }, "released leases");
      }
    } finally {
      this.stopListening();
      await this.listener?.close().catch(() => {});
      this.log.info({ stats: this.stats }, "runner stopped");
    }
  }

  /** Removes this runner's handlers from the listener (a shared one lives on). */
  private stopListening(): void {
    for (const off of this.unlisten.splice(0)) off();
  }

  private async claimLoop(): Promise<void> {
    while (!this.stopping) {
      if (this.opts.concurrency - this.runs.size <= 0) return;
      let batch = 0;
      const claimed = await this.writingRow(async () => {
        const free = this.opts.concurrency - this.runs.size;
        batch = Math.min(free, this.opts.claimBatch);
        const rows = await claimPendingChats(this.db, {
          worker_id: this.workerId,
          free_slots: free,
          batch_size: batch,
        });
        this.reportedFree = Math.max(free - rows.length, 0);
        // Before the next write of the row queue: releaseOrphans, one of them, must see these
        // turns running, or it would give back the leases just claimed.
        for (const row of rows) this.startRun({ chatId: row.id!, startedAt: row.started_at! });
        return rows;
      });
      this.stats.claims++;
      if (claimed.length === 0) this.stats.emptyClaims++;
      if (claimed.length > 0) this.opts.afterWrite();
      if (claimed.length < batch) return;
    }
  }

  private startRun(lease: Lease): void {
    // A chat this runner claims again (an edit made it pending mid-turn) replaces the old run,
    // whose lease is gone.
    this.runs.get(lease.chatId)?.controller.abort("lost" satisfies StopReason);
    const controller = new AbortController();
    const run: Run = { lease, controller, done: Promise.resolve(), waker: new ToolWaker() };
    this.runs.set(lease.chatId, run);
    run.done = (async () => {
      let outcome: TurnOutcome = "lost";
      try {
        const result = await runTurn(
          {
            db: this.db,
            models: this.opts.models,
            publish: this.opts.publish,
            afterWrite: this.opts.afterWrite,
            pendingAgain: () => this.wake(),
            logger: this.log,
            workerId: this.workerId,
            retry: this.opts.retry,
            chunkTimeoutMs: this.opts.chunkTimeoutMs,
            partFlushMs: this.opts.partFlushMs,
            maxSteps: this.opts.maxSteps,
            toolWait: { answerMs: this.opts.toolAnswerMs, graceMs: this.opts.toolAnswerGraceMs },
          },
          lease,
          controller.signal,
          run.waker,
        );
        outcome = result.outcome;
        if (result.followUp) this.trackFollowUp(result.followUp(this.followUpAbort.signal));
      } catch (err) {
        // The database failed the turn and then its end in error (runTurn). When it could not be
        // reached, the lease is released once it is back (releaseOrphans) and the turn runs again
        // from the stored history; any other failure keeps the lease until this runner stops.
        if (isDatabaseUnreachable(err)) this.mayHoldOrphans = true;
        this.log.error({ err, chat: lease.chatId }, "turn failed");
      } finally {
        this.stats.turns[outcome]++;
        if (this.runs.get(lease.chatId) === run) this.runs.delete(lease.chatId);
        // The slot is free again. A runner whose row said it had none may have been passed over
        // by chats that became pending meanwhile (chat_runner_choose wakes nobody then): it looks
        // now, and its claim reports the slot. One that still showed free slots was chosen for any
        // such chat (or another runner was), so it need not ask after every turn.
        if (this.reportedFree === 0) this.wake();
      }
    })();
  }

  private trackFollowUp(p: Promise<void>): void {
    const tracked = p.catch((err) => this.log.warn({ err }, "turn follow-up failed"));
    this.followUps.add(tracked);
    tracked.finally(() => this.followUps.delete(tracked));
  }

  /**
   * Registers this runner, or renews its row: one narrow row per interval renews every lease it
   * holds, and reports its free slots to the chooser of the runner a pending chat wakes.
   */
  private async register(): Promise<void> {
    const row = await this.writingRow(() =>
      this.upsertRow(Math.max(this.opts.concurrency - this.runs.size, 0)),
    );
    if (this.registeredAt !== undefined && row.started_at !== this.registeredAt) {
      // Silent for longer than the staleness window (a stopped VM, a long pause): recovery handed
      // its chats to others and reaped its row. Its turns find their leases gone and stop.
      this.stats.reregistrations++;
      this.log.warn("this runner was presumed dead and its chats handed back; registered again");
    }
    this.registeredAt = row.started_at;
  }

  private async upsertRow(freeSlots: number) {
    const row = await upsertChatRunnerHeartbeat(this.db, {
      id: this.workerId,
      hostname: os.hostname(),
      pid: process.pid,
      capacity: this.opts.concurrency,
      free_slots: freeSlots,
      heartbeat_seconds: this.opts.heartbeatMs / 1000,
    });
    this.reportedFree = freeSlots;
    return row;
  }

  /**
   * Runs the writes of this runner's row one at a time, each counting its free slots when it
   * runs: a heartbeat computed before a claim and committed after it would report the slots the
   * claim just took as free, and the chooser would wake a full runner until the next heartbeat.
   */
  private writingRow<T>(write: () => Promise<T>): Promise<T> {
    const result = this.rowWrites.then(write);
    this.rowWrites = result.then(
      () => {},
      () => {},
    );
    return result;
  }

  /** The runner's row, then a look at every running turn (two statements, one of them a read). */
  private async heartbeat(): Promise<void> {
    await this.register();
    this.stats.heartbeats++;
    const runs = [...this.runs.values()];
    if (runs.length > 0) await this.checkRuns(runs);
  }

  /**
   * Stops the turns of `runs` whose chat moved on: gone or claimed again (lost), or no longer
   * running (interrupt: the turn ends and chat_run_finish sorts it out). Catches a stop signal
   * that was missed.
   */
  private async checkRuns(runs: Run[]): Promise<void> {
    const rows = await listChatRunStatesByWorkerID(this.db, {
      worker_id: this.workerId,
      chat_ids: runs.map((r) => r.lease.chatId),
    });
    const held = new Map(rows.map((r) => [r.id, r]));
    for (const run of runs) {
      if (this.runs.get(run.lease.chatId) !== run) continue;
      const row = held.get(run.lease.chatId);
      if (!row || row.started_at !== run.lease.startedAt) {
        run.controller.abort("lost" satisfies StopReason);
      } else if (row.status !== "running" || row.archived) {
        run.controller.abort("interrupt" satisfies StopReason);
      }
    }
  }

  /**
   * Gives back the leases this runner holds without a turn running them (mayHoldOrphans): the
   * chats go back to pending, and a runner (often this one) claims them again.
   */
  private async releaseOrphans(): Promise<void> {
    if (!this.mayHoldOrphans) return;
    this.mayHoldOrphans = false;
    let released: number;
    try {
      // In the row queue, after any claim whose turns are not registered yet (claimLoop).
      const row = await this.writingRow(() => {
        // Read in the queue: a claim ahead of this call registers its turns when it runs.
        const leases = [...this.runs.values()].map((run) => run.lease);
        return releaseOrphanedChatRunsByWorkerID(this.db, {
          worker_id: this.workerId,
          running: leases.map((lease) => lease.chatId),
          running_started_at: leases.map((lease) => lease.startedAt),
        });
      });
      released = row.released ?? 0;
      // A chat another transaction held was skipped, not waited for: the next heartbeat tries it.
      if ((row.skipped ?? 0) > 0) this.mayHoldOrphans = true;
    } catch (err) {
      // Tried again at the next heartbeat; the recovery pass after it runs either way.
      this.mayHoldOrphans = true;
      this.log.warn({ err }, "giving back orphaned leases failed");
      return;
    }
    if (released === 0) return;
    this.opts.afterWrite();
    this.log.warn({ released }, "released the leases of turns lost while the database was away");
    this.wake();
  }

  private async recover(): Promise<void> {
    const pass = await runRecoveryPass(this.db, {
      staleAfterMs: this.opts.staleAfterMs,
      toolResultsTimeoutMs: this.opts.toolResultsTimeoutMs,
    });
    for (const f of pass.failed) {
      this.stats.recoveryFailures++;
      this.log.warn({ err: f.err, chat: f.chat_id }, "recovering a chat failed");
    }
    for (const id of pass.reaped) this.log.info({ runner: id }, "removed a dead runner's row");
    if (pass.recovered.length === 0) return;
    this.opts.afterWrite();
    for (const r of pass.recovered)
      this.log.info({ chat: r.chat_id, action: r.action }, "recovered a chat");
    this.wake();
  }
}
