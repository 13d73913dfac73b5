import { beforeAll, describe, expect, it } from "vitest";
import { gen } from "../fixtures/index.ts";
import { testApp } from "../setup/app.ts";
import type { Member } from "../setup/chat_requests.ts";

/*
 * The inbox (docs/api.md "Notifications"): a user's notifications newest first, keyset pages, the
 * unread filter, and marking read. Rows are inserted as the housekeeping job writes them.
 */

let t: Awaited<ReturnType<typeof testApp>>;
let orgId: string;

beforeAll(async () => {
  t = await testApp();
  orgId = (await gen.organization(t.pool)).id;
});

const as = (who: Member, method: string, path: string) =>
  t.call(method, `/api/v2${path}`, { token: who.token });

/** `n` notifications for `who`, oldest first; returns their ids. */
async function notify(who: Member, n: number): Promise<number[]> {
  const { rows } = await t.pool.query(
    `INSERT INTO notifications (user_id, kind, title, body)
     SELECT $1, 'chats_auto_archived', 'Chats auto-archived ' || g, 'body ' || g
     FROM generate_series(1, $2::int) g ORDER BY g
     RETURNING id`,
    [who.id, n],
  );
  return rows.map((r) => Number(r.id));
}

describe("GET /api/v2/notifications", () => {
  it("lists the caller's notifications newest first, in keyset pages with has_more", async () => {
    const u = await gen.member(t.pool, { organizationIds: [orgId] });
    const other = await gen.member(t.pool, { organizationIds: [orgId] });
    const ids = await notify(u, 5);
    await notify(other, 2);
    const first = await as(u, "GET", "/notifications?limit=2");
    expect(first.status).toBe(200);
    expect(first.json.has_more).toBe(true);
    expect(first.json.notifications.map((n: { id: number }) => n.id)).toEqual([ids[4], ids[3]]);
    expect(first.json.notifications[0]).toEqual({
      id: ids[4],
      kind: "chats_auto_archived",
      title: "Chats auto-archived 5",
      body: "body 5",
      created_at: expect.stringMatching(/Z$/),
      read_at: null,
    });
    const rest = await as(u, "GET", `/notifications?limit=3&after_id=${ids[3]}`);
    expect(rest.json.notifications.map((n: { id: number }) => n.id)).toEqual([
      ids[2],
      ids[1],
      ids[0],
    ]);
    expect(rest.json.has_more).toBe(false);
  });

  it("marks one read, or all, and the unread filter leaves them out; another's is 404", async () => {
    const u = await gen.member(t.pool, { organizationIds: [orgId] });
    const other = await gen.member(t.pool, { organizationIds: [orgId] });
    const ids = await notify(u, 3);
    const [theirs] = await notify(other, 1);
    expect((await as(u, "PUT", `/notifications/${ids[1]}/read`)).status).toBe(204);
    // Again: still 204, and the first read time stays.
    const readAt = async () =>
      (await t.pool.query("SELECT read_at FROM notifications WHERE id = $1", [ids[1]])).rows[0]
        .read_at;
    const first = await readAt();
    expect((await as(u, "PUT", `/notifications/${ids[1]}/read`)).status).toBe(204);
    expect(await readAt()).toBe(first);
    const unread = await as(u, "GET", "/notifications?unread=true");
    expect(unread.json.notifications.map((n: { id: number }) => n.id)).toEqual([ids[2], ids[0]]);
    expect((await as(u, "PUT", `/notifications/${theirs}/read`)).status).toBe(404);
    expect((await as(u, "PUT", "/notifications/999999999/read")).status).toBe(404);
    expect((await as(u, "PUT", "/notifications/read-all")).status).toBe(204);
    expect((await as(u, "GET", "/notifications?unread=true")).json).toEqual({
      notifications: [],
      has_more: false,
    });
    const all = await as(u, "GET", "/notifications");
    expect(all.json.notifications.every((n: { read_at: string | null }) => n.read_at)).toBe(true);
    // The other user's stays unread.
    expect((await as(other, "GET", "/notifications?unread=true")).json.notifications).toHaveLength(
      1,
    );
  });

  it("answers bad parameters with 400 and no token with 401", async () => {
    const u = await gen.member(t.pool, { organizationIds: [orgId] });
    for (const q of ["limit=0", "limit=201", "after_id=0", "after_id=x", "unread=yes"]) {
      expect((await as(u, "GET", `/notifications?${q}`)).status, q).toBe(400);
    }
    for (const id of ["0", "x", "1e3", "99999999999999999999"]) {
      expect((await as(u, "PUT", `/notifications/${id}/read`)).status, id).toBe(400);
    }
    expect((await t.call("GET", "/api/v2/notifications")).status).toBe(401);
  });
});
