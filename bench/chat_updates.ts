/*
 * What an UPDATE of chat rows costs when the chats carry client-declared tools, by size of the
 * tools. Prints numbers; never passes or fails.
 *
 *   npm run bench -- chat_updates          1,000 chats per size
 *   npm run bench -- chat_updates 5000     5,000 chats per size
 *
 * Database: a scratch database on DATABASE_URL's server when set, else an embedded cluster in a
 * temporary directory; removed afterwards.
 *
 * For each size (no tools; ~100 KiB; ~250 KiB, near the 256 KiB a chat may declare) N chats are created
 * through chat_create with that many bytes of dynamic tools (JSON as stored), claimed by one
 * worker, and then, 5 times each:
 *   - heartbeat: the runner's heartbeat with N turns: its chat_runners row
 *                (UpsertChatRunnerHeartbeat) and the read of its N turns' state
 *                (ListChatRunStatesByWorkerID); it writes no chat row;
 *   - status:    a status change of all N (running <-> waiting), the kind of update every turn
 *                makes (claim, finish) and that moves version and writes change events.
 * Printed: the median time per statement, per chat, and the ratio to the chats without tools.
 * Before chats__track_changes compared columns one by one (and the dynamic tools' CHECK became a
 * trigger on assignment), every one of these updates read the tools out of TOAST.
 */
import { randomUUID } from "node:crypto";
import { migrate } from "../src/db/migrate.ts";
import { createPool } from "../src/db/pool.ts";
import { upsertChatRunnerHeartbeat } from "../src/generated/chat_runners.ts";
import { listChatRunStatesByWorkerID } from "../src/generated/chat_runs.ts";
import { withScratchDatabase } from "../support/scratch_db.ts";
import { seedOwner } from "../support/seed_chats.ts";
import { describeMachine, table } from "./measure.ts";
import { median } from "./stats.ts";

const rounds = 5;
/** Target sizes of the tools' JSON; the table prints what was stored. */
const sizes = [0, 100 * 1024, 250 * 1024];

/** Tools of about `bytes` of stored JSON (never more): 100 tools with long descriptions. */
function tools(bytes: number) {
  if (bytes === 0) return [];
  const count = 100;
  // A tool's JSON as jsonb prints it, without its description: {"name": "tool_00", ...}.
  const overhead = 120;
  const description = Math.max(0, Math.floor(bytes / count) - overhead);
  return Array.from({ length: count }, (_, i) => ({
    name: `tool_${String(i).padStart(2, "0")}`,
    // Varied text, so compression does not shrink it to nothing (real schemas compress ~3x).
    description: Array.from({ length: Math.ceil(description / 33) }, (_, k) =>
      `${(i * 7919 + k * 104729).toString(36)} lorem ipsum dolor sit `.slice(0, 33),
    )
      .join("")
      .slice(0, description),
    input_schema: { type: "object", properties: { q: { type: "string" } } },
  }));
}

export async function benchChatUpdates(chatsArg?: string) {
  const chats = chatsArg ? Number(chatsArg) : 1000;
  console.log(describeMachine());
  await withScratchDatabase("pgchatd_bench_updates", async (url, where) => {
    console.log(`database: ${where}`);
    await migrate(url);
    const pool = createPool({ connectionString: url, max: 4 });
    try {
      const { org, owner } = await seedOwner(pool);
      const results: { stored: number; heartbeat: number; status: number }[] = [];
      for (const size of sizes) {
        const payload = JSON.stringify(tools(size));
        const worker = randomUUID();
        const { rows } = await pool.query<{ id: string }>(
          `SELECT chat_create($1, $2, NULL, NULL, NULL, 'api', NULL, NULL, '{}', $3::jsonb, NULL,
             '[{"type": "text", "text": "hi"}]', NULL) AS id
           FROM generate_series(1, $4)`,
          [owner, org, payload, chats],
        );
        const ids = rows.map((r) => r.id);
        await pool.query(
          `UPDATE chats SET status = 'running', worker_id = $2, started_at = now(), heartbeat_at = now()
           WHERE id = ANY($1::uuid[])`,
          [ids, worker],
        );
        const { rows: stored } = await pool.query<{ text: number }>(
          "SELECT octet_length(dynamic_tools::text) AS text FROM chats WHERE id = $1",
          [ids[0]],
        );
        await pool.query("VACUUM ANALYZE chats");
        const time = async (fn: () => Promise<unknown>) => {
          const t = performance.now();
          await fn();
          return performance.now() - t;
        };
        const heartbeats: number[] = [];
        const statuses: number[] = [];
        for (let r = 0; r < rounds; r++) {
          heartbeats.push(
            await time(async () => {
              await upsertChatRunnerHeartbeat(pool, {
                id: worker,
                hostname: "bench",
                pid: process.pid,
                capacity: chats,
                free_slots: 0,
                heartbeat_seconds: 15,
              });
              await listChatRunStatesByWorkerID(pool, { worker_id: worker, chat_ids: ids });
            }),
          );
          statuses.push(
            await time(() =>
              pool.query(
                `UPDATE chats SET status = CASE WHEN status = 'running' THEN 'waiting'::chat_status
                   ELSE 'running' END WHERE id = ANY($1::uuid[])`,
                [ids],
              ),
            ),
          );
        }
        results.push({
          stored: stored[0]!.text,
          heartbeat: median(heartbeats),
          status: median(statuses),
        });
      }
      const base = results[0]!;
      const per = (msTotal: number) => `${((msTotal / chats) * 1000).toFixed(1)} µs`;
      console.log(
        `\n${chats.toLocaleString("en")} chats per size; median of ${rounds} statements, each updating all of them`,
      );
      console.log(
        table(
          [
            [
              "dynamic tools (JSON)",
              "heartbeat",
              "per chat",
              "× none",
              "status change",
              "per chat",
              "× none",
            ],
            ...results.map((r) => [
              r.stored < 10 ? "none" : `${(r.stored / 1024).toFixed(0)} KiB`,
              `${r.heartbeat.toFixed(1)} ms`,
              per(r.heartbeat),
              `${(r.heartbeat / base.heartbeat).toFixed(2)}×`,
              `${r.status.toFixed(1)} ms`,
              per(r.status),
              `${(r.status / base.status).toFixed(2)}×`,
            ]),
          ],
          [0],
        ),
      );
    } finally {
      await pool.end();
    }
  });
}
