/*
 * What publishing a turn's stream parts costs (docs/sql.md "In-flight output"): each part is one
 * statement that stores it in the unlogged chat_stream_parts and NOTIFYs it, against a bare
 * NOTIFY of the same payload (what a part cost before it was kept). Chats stream concurrently,
 * each publishing its parts one after another as a runner does; then the snapshot's read of a long
 * step. Prints numbers; never passes or fails.
 *
 *   npm run bench -- parts [chats]      50 chats streaming at once, 200 parts each
 */
import { randomUUID } from "node:crypto";
import { migrate } from "../src/db/migrate.ts";
import { createPool } from "../src/db/pool.ts";
import { listChatStreamPartsByChatID } from "../src/generated/chat_stream_parts.ts";
import { publishStreamEvent } from "../src/watch/index.ts";
import { withScratchDatabase } from "../support/scratch_db.ts";
import { seedOwner } from "../support/seed_chats.ts";
import { describeMachine, latencies, table } from "./measure.ts";
import { percentile } from "./stats.ts";

const partsPerChat = 200;
/** A 50 ms coalescing window of fast output: about 60 characters. */
const part = (i: number) => ({
  chat_id: "",
  part: { type: "text", text: `token ${i} `.repeat(6) },
});

export async function benchParts(chatsArg?: string) {
  const chats = chatsArg ? Number(chatsArg) : 50;
  console.log(describeMachine());
  await withScratchDatabase("pgchatd_bench_parts", async (url, where) => {
    console.log(`database: ${where}`);
    await migrate(url);
    const pool = createPool({ connectionString: url, max: 10 });
    try {
      const { org, owner } = await seedOwner(pool);
      const ids: { chatId: string; lease: { workerId: string; startedAt: string } }[] = [];
      for (let i = 0; i < chats; i++) {
        const { rows } = await pool.query<{ id: string }>(
          `SELECT chat_create($1, $2, NULL, NULL, NULL, 'api', NULL, NULL, '{}', NULL, NULL,
             '[{"type": "text", "text": "hi"}]', NULL) AS id`,
          [owner, org],
        );
        const workerId = randomUUID();
        const lease = await pool.query<{ started_at: string }>(
          `UPDATE chats SET status = 'running', worker_id = $2, started_at = now(),
             heartbeat_at = now() WHERE id = $1 RETURNING started_at::text`,
          [rows[0]!.id, workerId],
        );
        ids.push({
          chatId: rows[0]!.id,
          lease: { workerId, startedAt: lease.rows[0]!.started_at },
        });
      }
      const run = async (
        publishOne: (
          chatId: string,
          lease: (typeof ids)[number]["lease"],
          i: number,
        ) => Promise<unknown>,
      ) => {
        const each: number[] = [];
        const started = performance.now();
        await Promise.all(
          ids.map(async ({ chatId, lease }) => {
            for (let i = 0; i < partsPerChat; i++) {
              const t = performance.now();
              await publishOne(chatId, lease, i);
              each.push(performance.now() - t);
            }
          }),
        );
        const seconds = (performance.now() - started) / 1000;
        return {
          rate: each.length / seconds,
          p50: percentile(each, 50),
          p99: percentile(each, 99),
        };
      };
      const bare = await run((chatId, _lease, i) =>
        pool.query("SELECT pg_notify('chat_message_parts', $1)", [
          JSON.stringify({ o: "bench", c: chatId, u: owner, b: JSON.stringify(part(i)) }),
        ]),
      );
      const kept = await run((chatId, lease, i) =>
        publishStreamEvent(pool, chatId, "message_part", part(i), lease),
      );
      const size = await pool.query<{ rows: number; bytes: string }>(
        "SELECT count(*)::int AS rows, pg_size_pretty(pg_total_relation_size('chat_stream_parts')) AS bytes FROM chat_stream_parts",
      );
      console.log(
        `\n${chats} chats streaming at once, ${partsPerChat} parts each (${(chats * partsPerChat).toLocaleString("en")} parts), pool of 10:`,
      );
      console.log(
        table([
          ["publication", "parts/s", "p50 ms", "p99 ms"],
          ["NOTIFY only (before)", bare.rate.toFixed(0), bare.p50.toFixed(2), bare.p99.toFixed(2)],
          [
            "stored + NOTIFY (chat_stream_publish)",
            kept.rate.toFixed(0),
            kept.p50.toFixed(2),
            kept.p99.toFixed(2),
          ],
        ]),
      );
      console.log(
        `ratio stored/bare: ${(kept.rate / bare.rate).toFixed(2)}× the rate; table after: ${size.rows[0]!.rows.toLocaleString("en")} rows, ${size.rows[0]!.bytes}`,
      );
      const target = ids[0]!.chatId;
      const read = await latencies(
        () => listChatStreamPartsByChatID(pool, { chat_id: target }),
        200,
        20,
      );
      console.log(
        `snapshot read of a chat with ${partsPerChat} parts in flight (ListChatStreamPartsByChatID): p50 ${percentile(read, 50).toFixed(2)} ms, p99 ${percentile(read, 99).toFixed(2)} ms`,
      );
    } finally {
      await pool.end();
    }
  });
}
