import fc from "fast-check";
import { beforeAll, describe, expect, it } from "vitest";
import { searchKeys } from "../../src/server/search.ts";
import { gen } from "../fixtures/index.ts";
import { testApp } from "../setup/app.ts";

/*
 * GET /api/experimental/chats (docs/api.md "GET /", "The Chat object": list order, has_unread,
 * pins, "Search q"). Every test uses a fresh owner, so no test sees another one's chats.
 */

let t: Awaited<ReturnType<typeof testApp>>;
let orgId: string;

interface Owner {
  id: string;
  token: string;
}

/** The fields of a listed Chat the tests look at. */
interface ListedChat {
  id: string;
  parent_chat_id: string | null;
  root_chat_id: string | null;
  archived: boolean;
  pin_order: number;
  has_unread: boolean;
  children: ListedChat[];
}

type Params = Record<string, string | number | string[] | undefined>;

beforeAll(async () => {
  t = await testApp();
  orgId = (await gen.organization(t.pool)).id;
});

async function newOwner(): Promise<Owner> {
  const u = await gen.user(t.pool, { organizationIds: [orgId] });
  return { id: u.id, token: await gen.apiKey(t.pool, u.id) };
}

type ChatOpts = Omit<Parameters<typeof gen.chat>[1], "ownerId" | "organizationId">;

async function newChat(owner: Owner, opts: ChatOpts = {}) {
  return gen.chat(t.pool, { ownerId: owner.id, organizationId: orgId, ...opts });
}

function listPath(params: Params = {}): string {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value === undefined) continue;
    for (const v of Array.isArray(value) ? value : [value]) search.append(key, String(v));
  }
  const qs = search.toString();
  return `/api/experimental/chats${qs ? `?${qs}` : ""}`;
}

function list(owner: Owner, params: Params = {}) {
  return t.call("GET", listPath(params), { token: owner.token });
}

/** The listed chats; fails unless the answer is 200. */
async function listed(owner: Owner, params: Params = {}): Promise<ListedChat[]> {
  const res = await list(owner, params);
  expect(res.status, res.text).toBe(200);
  return res.json as ListedChat[];
}

async function listedIds(owner: Owner, params: Params = {}): Promise<string[]> {
  return (await listed(owner, params)).map((c) => c.id);
}

async function setUpdatedAt(chatId: string, at: string) {
  await t.pool.query("UPDATE chats SET updated_at = $2::timestamptz WHERE id = $1", [chatId, at]);
}

async function pin(chatId: string, position: number) {
  await t.pool.query("SELECT chat_pin($1, $2)", [chatId, position]);
}

async function archive(chatId: string, archived = true) {
  await t.pool.query("SELECT chat_archive($1, $2)", [chatId, archived]);
}

/** Ids sorted descending as Postgres orders uuids (lower-case hex compares like the bytes). */
const byIdDesc = (a: string, b: string) => (a < b ? 1 : a > b ? -1 : 0);

/** A small seeded PRNG (mulberry32), so a failing random layout can be reproduced. */
function prng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let x = s;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

describe("GET /api/experimental/chats: roots and children", () => {
  it("lists roots only, each embedding all its descendants newest first; a child's children is []", async () => {
    const o = await newOwner();
    const a = await newChat(o, { text: "root a" });
    const a1 = await newChat(o, { parent_chat_id: a.id, text: "child a1" });
    const a1a = await newChat(o, { parent_chat_id: a1.id, text: "grandchild a1a" });
    const a2 = await newChat(o, { parent_chat_id: a.id, text: "child a2" });
    const b = await newChat(o, { text: "root b" });
    const b1 = await newChat(o, { parent_chat_id: b.id, text: "child b1" });
    // Precondition of "newest first": the children were created in this order.
    expect(a1.created_at < a1a.created_at && a1a.created_at < a2.created_at).toBe(true);

    const chats = await listed(o);
    expect(chats.map((c) => c.id)).toEqual([b.id, a.id]);
    const [lb, la] = chats;
    expect(la!.children.map((c) => c.id)).toEqual([a2.id, a1a.id, a1.id]);
    expect(lb!.children.map((c) => c.id)).toEqual([b1.id]);
    for (const child of [...la!.children, ...lb!.children]) {
      expect(child.children).toEqual([]);
    }
    const grandchild = la!.children.find((c) => c.id === a1a.id)!;
    expect(grandchild.parent_chat_id).toBe(a1.id);
    expect(grandchild.root_chat_id).toBe(a.id);
  });

  it("embeds only children in the listed archive state", async () => {
    const o = await newOwner();
    const a = await newChat(o, { text: "root a" });
    const a1 = await newChat(o, { parent_chat_id: a.id });
    const a2 = await newChat(o, { parent_chat_id: a.id });
    const b = await newChat(o, { text: "root b" });
    const b1 = await newChat(o, { parent_chat_id: b.id });

    await archive(a2.id); // a child alone
    await archive(b.id); // a root: its family follows

    const active = await listed(o);
    expect(active.map((c) => c.id)).toEqual([a.id]);
    expect(active[0]!.children.map((c) => c.id)).toEqual([a1.id]);

    const archived = await listed(o, { q: "archived:true" });
    // The archived child a2 is not a root, and its root a is not archived: it is listed nowhere.
    expect(archived.map((c) => c.id)).toEqual([b.id]);
    expect(archived[0]!.archived).toBe(true);
    expect(archived[0]!.children.map((c) => [c.id, c.archived])).toEqual([[b1.id, true]]);
  });
});

describe("GET /api/experimental/chats: order", () => {
  it("lists pinned chats first in pin_order, then by updated_at, newest first, then by id descending", async () => {
    const o = await newOwner();
    const c: { id: string }[] = [];
    for (let i = 0; i < 6; i++) c.push(await newChat(o, { text: `chat ${i}` }));
    const [c0, c1, c2, c3, c4, c5] = c.map((x) => x.id) as [
      string,
      string,
      string,
      string,
      string,
      string,
    ];
    await pin(c3, 1);
    await pin(c5, 1); // an unpinned chat is appended whatever position is asked
    await pin(c1, 1);
    // Pinned chats stay first even when they are the least recently updated.
    await setUpdatedAt(c3, "2020-01-01T00:00:00Z");
    await setUpdatedAt(c5, "2020-01-02T00:00:00Z");
    await setUpdatedAt(c1, "2030-01-01T00:00:00Z");
    await setUpdatedAt(c0, "2025-01-01T10:00:00Z");
    await setUpdatedAt(c2, "2025-01-01T11:00:00Z");
    await setUpdatedAt(c4, "2025-01-01T10:00:00Z"); // ties with c0: id decides

    const tied = [c0, c4].sort(byIdDesc);
    const chats = await listed(o);
    expect(chats.map((x) => x.id)).toEqual([c3, c5, c1, c2, ...tied]);
    expect(chats.map((x) => x.pin_order)).toEqual([1, 2, 3, 0, 0, 0]);

    // Moving a pin renumbers the others densely, and the list follows.
    await pin(c1, 1);
    const moved = await listed(o);
    expect(moved.map((x) => [x.id, x.pin_order])).toEqual([
      [c1, 1],
      [c3, 2],
      [c5, 3],
      [c2, 0],
      [tied[0], 0],
      [tied[1], 0],
    ]);
  });

  it("lists unarchived roots by default and only archived roots with archived:true", async () => {
    const o = await newOwner();
    const kept = await newChat(o);
    const gone1 = await newChat(o);
    const gone2 = await newChat(o);
    await archive(gone1.id);
    await archive(gone2.id);
    await setUpdatedAt(gone1.id, "2031-01-01T00:00:00Z");
    await setUpdatedAt(gone2.id, "2029-01-01T00:00:00Z");

    expect(await listedIds(o)).toEqual([kept.id]);
    expect(await listedIds(o, { q: "archived:false" })).toEqual([kept.id]);
    expect(await listedIds(o, { q: "archived:true" })).toEqual([gone1.id, gone2.id]);
  });
});

describe("GET /api/experimental/chats: pagination", () => {
  it("pages 1,000 chats by after_id and by offset in exactly the list order, each chat once", async () => {
    const seed = Number(process.env.CHAT_LIST_SEED ?? Math.floor(Math.random() * 2 ** 31));
    const rand = prng(seed);
    const pick = <T>(xs: T[]) => xs[Math.floor(rand() * xs.length)]!;
    const why = `seed ${seed} (rerun with CHAT_LIST_SEED=${seed})`;

    const o = await newOwner();
    const created = await t.pool.query<{ id: string }>(
      `SELECT chat_create($1::uuid, $2::uuid, NULL::uuid, NULL::uuid, NULL::uuid,
         NULL::chat_client_type, NULL, NULL, NULL::jsonb, NULL::jsonb, NULL,
         jsonb_build_array(jsonb_build_object('type', 'text', 'text', 'chat ' || g)), NULL) AS id
       FROM generate_series(1, 1000) AS g`,
      [o.id, orgId],
    );
    const all = created.rows.map((r) => r.id);
    expect(all).toHaveLength(1000);

    // Random pins, then random moves among them.
    const pinned = new Set<string>();
    while (pinned.size < 15) {
      const id = pick(all);
      if (!pinned.has(id)) {
        pinned.add(id);
        await pin(id, 1 + Math.floor(rand() * 20));
      }
    }
    for (let i = 0; i < 10; i++) await pin(pick([...pinned]), 1 + Math.floor(rand() * 15));

    // Random updated_at for most chats, on whole hours so that many tie and id decides.
    const updatedIds: string[] = [];
    const updatedAts: string[] = [];
    for (const id of all) {
      if (rand() < 0.7) {
        updatedIds.push(id);
        const hour = Math.floor(rand() * 240);
        updatedAts.push(new Date(Date.UTC(2024, 0, 1) + hour * 3_600_000).toISOString());
      }
    }
    await t.pool.query(
      `UPDATE chats c SET updated_at = u.at
       FROM unnest($1::uuid[], $2::timestamptz[]) AS u (id, at) WHERE c.id = u.id`,
      [updatedIds, updatedAts],
    );

    // Archived roots and children are never listed as roots.
    const unpinned = all.filter((id) => !pinned.has(id));
    const archived = new Set<string>();
    while (archived.size < 10) archived.add(pick(unpinned));
    for (const id of archived) await archive(id);
    for (let i = 0; i < 5; i++) {
      await newChat(o, { parent_chat_id: pick(unpinned.filter((id) => !archived.has(id))) });
    }

    // The expected order, computed here from the rows.
    const rows = await t.pool.query<{ id: string; pin_order: number; updated_at: string }>(
      `SELECT id, pin_order, updated_at FROM chats
       WHERE owner_id = $1 AND parent_chat_id IS NULL AND NOT archived`,
      [o.id],
    );
    expect(rows.rows).toHaveLength(990);
    const pins = rows.rows.filter((r) => r.pin_order > 0).map((r) => r.pin_order);
    expect(pins.sort((a, b) => a - b)).toEqual(Array.from({ length: 15 }, (_, i) => i + 1));
    const expected = [...rows.rows]
      .sort((a, b) => {
        const ap = a.pin_order > 0;
        const bp = b.pin_order > 0;
        if (ap !== bp) return ap ? -1 : 1;
        if (a.pin_order !== b.pin_order) return a.pin_order - b.pin_order;
        if (a.updated_at !== b.updated_at) return a.updated_at < b.updated_at ? 1 : -1;
        return byIdDesc(a.id, b.id);
      })
      .map((r) => r.id);

    const limit = 37;
    const byCursor: string[] = [];
    const cursorPageSizes: number[] = [];
    let after: string | undefined;
    for (let page = 0; page < 100; page++) {
      const ids = await listedIds(o, { limit, after_id: after });
      cursorPageSizes.push(ids.length);
      if (ids.length === 0) break;
      byCursor.push(...ids);
      after = ids[ids.length - 1];
    }
    expect(byCursor, why).toEqual(expected);
    expect(new Set(byCursor).size).toBe(990);
    // 26 full pages, a last page of 28, then an empty one.
    expect(cursorPageSizes).toEqual([...Array<number>(26).fill(37), 28, 0]);

    const byOffset: string[] = [];
    for (let offset = 0; offset <= 1000 + limit; offset += limit) {
      const ids = await listedIds(o, { limit, offset });
      if (ids.length === 0) break;
      expect(ids.length).toBeLessThanOrEqual(limit);
      byOffset.push(...ids);
    }
    expect(byOffset, why).toEqual(expected);
  });

  it("continues after an archived cursor chat in the archived list, and after the last chat with []", async () => {
    const o = await newOwner();
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const c = await newChat(o);
      await archive(c.id);
      await setUpdatedAt(c.id, `2024-01-0${i + 1}T00:00:00Z`);
      ids.push(c.id);
    }
    const [x, y, z] = ids as [string, string, string];
    expect(await listedIds(o, { q: "archived:true", limit: 1, after_id: z })).toEqual([y]);
    expect(await listedIds(o, { q: "archived:true", after_id: y })).toEqual([x]);
    const last = await list(o, { q: "archived:true", after_id: x });
    expect(last.status).toBe(200);
    expect(last.json).toEqual([]);
  });

  it("rejects a bad after_id, limit or offset with 400", async () => {
    const o = await newOwner();
    await newChat(o);
    const other = await newOwner();
    const othersChat = await newChat(other);

    const bad: Params[] = [
      { after_id: othersChat.id }, // another user's chat
      { after_id: "00000000-0000-4000-8000-000000000000" }, // unknown
      { after_id: "not-a-uuid" },
      { after_id: "" },
      { limit: 0 },
      { limit: 201 },
      { limit: "abc" },
      { limit: 1.5 },
      { offset: -1 },
      { offset: "x" },
    ];
    for (const params of bad) {
      const res = await list(o, params);
      expect(res.status, JSON.stringify(params)).toBe(400);
      expect(res.json.message, JSON.stringify(params)).toEqual(expect.any(String));
    }
    // The edges of the ranges are fine.
    expect((await list(o, { limit: 1 })).status).toBe(200);
    expect((await list(o, { limit: 200 })).status).toBe(200);
    expect((await list(o, { offset: 0 })).status).toBe(200);
  });

  it("applies the default limit of 50", async () => {
    const o = await newOwner();
    await t.pool.query(
      `SELECT chat_create($1::uuid, $2::uuid, NULL::uuid, NULL::uuid, NULL::uuid,
         NULL::chat_client_type, NULL, NULL, NULL::jsonb, NULL::jsonb, NULL,
         '[{"type": "text", "text": "x"}]'::jsonb, NULL)
       FROM generate_series(1, 51)`,
      [o.id, orgId],
    );
    expect(await listedIds(o)).toHaveLength(50);
  });
});

describe("GET /api/experimental/chats: has_unread", () => {
  async function unread(o: Owner, chatId: string) {
    const chat = (await listed(o)).find((c) => c.id === chatId);
    expect(chat).toBeDefined();
    return chat!.has_unread;
  }

  it("is true exactly while a non-deleted assistant message is newer than the read cursor", async () => {
    const o = await newOwner();
    const chat = await newChat(o);
    expect(await unread(o, chat.id)).toBe(false); // only the first user message

    await gen.chatMessage(t.pool, chat.id, { role: "user" });
    expect(await unread(o, chat.id)).toBe(false); // user messages never count

    await gen.chatMessage(t.pool, chat.id, { role: "assistant" });
    expect(await unread(o, chat.id)).toBe(true);

    await t.pool.query("SELECT chat_mark_read($1)", [chat.id]);
    expect(await unread(o, chat.id)).toBe(false);

    await gen.chatMessage(t.pool, chat.id, { role: "user" });
    expect(await unread(o, chat.id)).toBe(false);

    const reply = await gen.chatMessage(t.pool, chat.id, { role: "assistant" });
    expect(await unread(o, chat.id)).toBe(true);
    await t.pool.query("UPDATE chat_messages SET deleted = true WHERE id = $1", [reply.id]);
    expect(await unread(o, chat.id)).toBe(false); // a deleted message does not count
  });

  it("filters by has_unread:true and has_unread:false", async () => {
    const o = await newOwner();
    const fresh = await newChat(o);
    const read = await newChat(o);
    const neverAnswered = await newChat(o);
    await gen.chatMessage(t.pool, fresh.id, { role: "assistant" });
    await gen.chatMessage(t.pool, read.id, { role: "assistant" });
    await t.pool.query("SELECT chat_mark_read($1)", [read.id]);

    expect(await listedIds(o, { q: "has_unread:true" })).toEqual([fresh.id]);
    expect((await listedIds(o, { q: "has_unread:false" })).sort()).toEqual(
      [read.id, neverAnswered.id].sort(),
    );
  });
});

describe("GET /api/experimental/chats: search q", () => {
  it("filters title: by case-insensitive substring, with % and _ taken literally", async () => {
    const o = await newOwner();
    const login = await newChat(o, { text: "Fix the Login bug" });
    const percent = await newChat(o, { text: "100% done" });
    const almost = await newChat(o, { text: "100x done" });
    const snake = await newChat(o, { text: "snake_case name" });
    const camel = await newChat(o, { text: "snakeXcase name" });
    const umlaut = await newChat(o, { text: "Ärger im Büro" });
    const sorted = (ids: string[]) => [...ids].sort();

    expect(await listedIds(o, { q: "title:login" })).toEqual([login.id]);
    expect(await listedIds(o, { q: "title:LOGIN" })).toEqual([login.id]);
    expect(await listedIds(o, { q: 'title:"the login"' })).toEqual([login.id]);
    expect(await listedIds(o, { q: "title:100%" })).toEqual([percent.id]);
    expect(await listedIds(o, { q: "title:%" })).toEqual([percent.id]);
    expect(await listedIds(o, { q: "title:e_c" })).toEqual([snake.id]);
    expect(await listedIds(o, { q: "title:_" })).toEqual([snake.id]);
    expect(sorted(await listedIds(o, { q: "title:done" }))).toEqual(
      sorted([percent.id, almost.id]),
    );
    expect(sorted(await listedIds(o, { q: "title:name" }))).toEqual(sorted([snake.id, camel.id]));
    expect(await listedIds(o, { q: 'title:"ärger im büro"' })).toEqual([umlaut.id]);
    expect(await listedIds(o, { q: "title:BÜRO" })).toEqual([umlaut.id]);
    expect(await listedIds(o, { q: "title:nothing-like-this" })).toEqual([]);
  });

  it("filters pr:, repo:, pr_title: and pr_status: by the chat's diff status", async () => {
    const o = await newOwner();
    const draft = await newChat(o, { text: "draft" });
    const open = await newChat(o, { text: "open" });
    const merged = await newChat(o, { text: "merged" });
    const closed = await newChat(o, { text: "closed" });
    await newChat(o, { text: "no diff status" }); // matches no pull-request filter
    await gen.diffStatus(t.pool, draft.id, {
      url: "https://github.com/acme/widgets/pull/41",
      pr_number: 41,
      pull_request_state: "open",
      pull_request_draft: true,
      pull_request_title: "Add Dark Mode",
      git_remote_origin: "git@github.com:acme/widgets.git",
    });
    await gen.diffStatus(t.pool, open.id, {
      url: "https://github.com/acme/widgets/pull/42",
      pr_number: 42,
      pull_request_state: "open",
      pull_request_draft: false,
      pull_request_title: "Fix login",
      git_remote_origin: "git@github.com:acme/widgets.git",
    });
    await gen.diffStatus(t.pool, merged.id, {
      // The repository only in the URL: the remote origin is unknown.
      url: "https://github.com/other/gadgets/pull/7",
      pr_number: 7,
      pull_request_state: "merged",
      pull_request_title: "Bump deps",
      git_remote_origin: "",
    });
    await gen.diffStatus(t.pool, closed.id, {
      url: null,
      pr_number: 8,
      pull_request_state: "closed",
      pull_request_draft: true, // a closed draft is closed, not a draft
      pull_request_title: "Dark experiments",
      git_remote_origin: "https://gitlab.example.com/team/tools.git",
    });
    const sorted = (ids: string[]) => [...ids].sort();

    expect(await listedIds(o, { q: "pr:42" })).toEqual([open.id]);
    expect(await listedIds(o, { q: "pr:7" })).toEqual([merged.id]);
    expect(await listedIds(o, { q: "pr:999" })).toEqual([]);

    expect(sorted(await listedIds(o, { q: "repo:acme/widgets" }))).toEqual(
      sorted([draft.id, open.id]),
    );
    expect(await listedIds(o, { q: "repo:other/gadgets" })).toEqual([merged.id]);
    expect(await listedIds(o, { q: "repo:team/tools" })).toEqual([closed.id]);

    expect(await listedIds(o, { q: 'pr_title:"dark mode"' })).toEqual([draft.id]);
    expect(sorted(await listedIds(o, { q: "pr_title:DARK" }))).toEqual(
      sorted([draft.id, closed.id]),
    );

    expect(await listedIds(o, { q: "pr_status:draft" })).toEqual([draft.id]);
    expect(await listedIds(o, { q: "pr_status:open" })).toEqual([open.id]);
    expect(await listedIds(o, { q: "pr_status:merged" })).toEqual([merged.id]);
    expect(await listedIds(o, { q: "pr_status:closed" })).toEqual([closed.id]);
  });

  it("filters diff_url: case-insensitively, also when the URL is on a child of the root", async () => {
    const o = await newOwner();
    const own = await newChat(o, { text: "own url" });
    const family = await newChat(o, { text: "family url" });
    const child = await newChat(o, { parent_chat_id: family.id });
    const grandchild = await newChat(o, { parent_chat_id: child.id });
    const other = await newChat(o, { text: "other url" });
    await gen.diffStatus(t.pool, own.id, { url: "https://github.com/acme/widgets/pull/1" });
    await gen.diffStatus(t.pool, grandchild.id, { url: "https://github.com/acme/widgets/pull/2" });
    await gen.diffStatus(t.pool, other.id, { url: "https://github.com/acme/widgets/pull/20" });

    expect(await listedIds(o, { q: "diff_url:HTTPS://GITHUB.COM/Acme/Widgets/pull/1" })).toEqual([
      own.id,
    ]);
    expect(await listedIds(o, { q: "diff_url:https://github.com/acme/widgets/pull/2" })).toEqual([
      family.id,
    ]);
    expect(await listedIds(o, { q: "diff_url:https://github.com/acme/widgets/pull/3" })).toEqual(
      [],
    );
  });

  it("finds a subagent's pull request on its root by pr:, repo:, pr_title: and pr_status:, with %, _ and \\ in them taken literally", async () => {
    const o = await newOwner();
    const family = await newChat(o, { text: "family" });
    const child = await newChat(o, { parent_chat_id: family.id });
    const wild = await newChat(o, { text: "wild" });
    const plain = await newChat(o, { text: "plain" });
    await gen.diffStatus(t.pool, child.id, {
      pr_number: 314,
      pull_request_state: "merged",
      pull_request_title: "Make 100% of_tests pass",
      git_remote_origin: "git@github.com:acme/rocket_ship.git",
      url: "https://github.com/acme/rocket_ship/pull/314",
    });
    await gen.diffStatus(t.pool, wild.id, {
      pr_number: 1,
      pull_request_state: "open",
      pull_request_title: "a\\b",
      git_remote_origin: "https://github.com/acme/rocketXship.git",
    });
    await gen.diffStatus(t.pool, plain.id, {
      pr_number: 2,
      pull_request_state: "open",
      pull_request_title: "Make 1000 ofXtests pass",
    });

    expect(await listedIds(o, { q: "pr:314" })).toEqual([family.id]);
    expect(await listedIds(o, { q: "repo:acme/rocket_ship" })).toEqual([family.id]);
    expect(await listedIds(o, { q: "repo:ROCKET_SHIP/pull" })).toEqual([family.id]);
    expect(await listedIds(o, { q: 'pr_title:"100% of_"' })).toEqual([family.id]);
    expect(await listedIds(o, { q: "pr_status:merged" })).toEqual([family.id]);
    expect(await listedIds(o, { q: "pr_title:%" })).toEqual([family.id]);
    expect(await listedIds(o, { q: "pr_title:a\\b" })).toEqual([wild.id]);
    expect(await listedIds(o, { q: "pr_title:ab" })).toEqual([]);
  });

  it("ANDs the terms of q", async () => {
    const o = await newOwner();
    const a = await newChat(o, { text: "login fix" });
    const b = await newChat(o, { text: "login other" });
    await newChat(o, { text: "unrelated" });
    await gen.diffStatus(t.pool, a.id, { pr_number: 42, pull_request_state: "open" });
    await gen.diffStatus(t.pool, b.id, { pr_number: 7, pull_request_state: "merged" });

    expect(await listedIds(o, { q: "title:login pr:42" })).toEqual([a.id]);
    expect(await listedIds(o, { q: "title:login   pr:7" })).toEqual([b.id]);
    expect(await listedIds(o, { q: "title:login pr_status:open pr:7" })).toEqual([]);
    expect(await listedIds(o, { q: "title:unrelated pr:42" })).toEqual([]);
    expect(await listedIds(o, { q: "TITLE:login Pr_Status:merged" })).toEqual([b.id]);
  });

  it("rejects a bare word and an unknown key with a 400 that names it", async () => {
    const o = await newOwner();
    const cases: [string, string][] = [
      ["hello", "hello"],
      ["title:x strayword", "strayword"],
      ["colour:red", "colour"],
      ["title:x Owner:me", "Owner"],
    ];
    for (const [q, named] of cases) {
      const res = await list(o, { q });
      expect(res.status, q).toBe(400);
      expect(res.json.message, q).toContain(named);
    }
  });

  it("rejects values outside a key's domain with 400", async () => {
    const o = await newOwner();
    for (const q of [
      "archived:maybe",
      "has_unread:yes",
      "pr:0",
      "pr:-1",
      "pr:abc",
      "pr_status:reopened",
      "diff_url:not-a-url",
      "diff_url:ftp://github.com/acme/widgets/pull/1",
      "title:",
      'title:"unterminated',
    ]) {
      const res = await list(o, { q });
      expect(res.status, q).toBe(400);
      expect(res.json.message, q).toEqual(expect.any(String));
    }
  });
});

describe("GET /api/experimental/chats: label filters", () => {
  it("ANDs repeated label=key:value filters and splits each at its first colon", async () => {
    const o = await newOwner();
    const ab = await newChat(o, { labels: { a: "1", b: "2" } });
    const a = await newChat(o, { labels: { a: "1" } });
    const b = await newChat(o, { labels: { b: "2", a: "9" } });
    const url = await newChat(o, { labels: { url: "http://x" } });
    await newChat(o, { labels: { url: "http" } });
    const sorted = (ids: string[]) => [...ids].sort();

    expect(await listedIds(o, { label: ["a:1", "b:2"] })).toEqual([ab.id]);
    expect(sorted(await listedIds(o, { label: "a:1" }))).toEqual(sorted([ab.id, a.id]));
    expect(sorted(await listedIds(o, { label: "b:2" }))).toEqual(sorted([ab.id, b.id]));
    expect(await listedIds(o, { label: "url:http://x" })).toEqual([url.id]);
    expect(await listedIds(o, { label: ["a:1", "b:3"] })).toEqual([]);
  });

  it("rejects an invalid label filter with 400", async () => {
    const o = await newOwner();
    for (const label of ["-bad:1", ":1", "nocolon", "a b:1", "a:", `${"k".repeat(65)}:1`]) {
      const res = await list(o, { label });
      expect(res.status, label).toBe(400);
      expect(res.json.message, label).toEqual(expect.any(String));
    }
  });
});

describe("GET /api/experimental/chats: visibility", () => {
  it("never lists another user's chats, whatever the filters", async () => {
    const me = await newOwner();
    const them = await newOwner();
    const mine = await newChat(me, { text: "shared words", labels: { team: "x" } });
    const theirs = await newChat(them, { text: "shared words", labels: { team: "x" } });
    const theirsArchived = await newChat(them, { text: "shared words" });
    await archive(theirsArchived.id);
    await gen.diffStatus(t.pool, theirs.id, { pr_number: 5, pull_request_state: "open" });

    expect(await listedIds(me)).toEqual([mine.id]);
    expect(await listedIds(me, { q: "title:shared" })).toEqual([mine.id]);
    expect(await listedIds(me, { label: "team:x" })).toEqual([mine.id]);
    expect(await listedIds(me, { q: "pr:5" })).toEqual([]);
    expect(await listedIds(me, { q: "archived:true" })).toEqual([]);
    expect(await listedIds(them, { q: "archived:true" })).toEqual([theirsArchived.id]);
  });

  it("requires authentication", async () => {
    expect((await t.call("GET", "/api/experimental/chats")).status).toBe(401);
  });
});

describe("GET /api/experimental/chats: hostile input", () => {
  const injections = [
    "'; DROP TABLE chats; --",
    '" OR 1=1 --',
    "' OR ''='",
    "Robert'); DROP TABLE users;--",
    "%",
    "_",
    "\\",
    "\\\\%",
    "\u0000",
    "a\u0000b",
    "$1",
    "::uuid",
    "\uD800",
    "😀",
    "é\u0301",
    "title:",
    ':"',
    "\t\n\r\v\f",
  ];

  /** Random text, biased towards what breaks parsers and SQL. */
  const text = fc.oneof(
    fc.string(),
    fc.string({ unit: "binary" }),
    fc.constantFrom(...injections),
    fc.string({ unit: fc.constantFrom(":", '"', " ", "\\", "%", "_", "'", "\u0000", "é", "😀") }),
  );
  /** A value the parsers accept: non-empty, at most 256 UTF-16 units, no NUL. */
  const acceptedValue = text
    .map((v) => v.replaceAll("\u0000", "").slice(0, 256))
    .filter((v) => v.length > 0);
  const quoted = (v: string) => `"${v.replace(/["\\]/g, (m) => `\\${m}`)}"`;

  async function someChats() {
    const o = await newOwner();
    const c = await newChat(o, { text: "some chat", labels: { a: "1" } });
    await newChat(o, { parent_chat_id: c.id });
    await gen.diffStatus(t.pool, c.id, {
      url: "https://github.com/acme/widgets/pull/1",
      pr_number: 1,
      pull_request_state: "open",
      pull_request_title: "A pull request",
      git_remote_origin: "git@github.com:acme/widgets.git",
    });
    return o;
  }

  it("answers any q and label with 200 or a 400 that has a message, never a 500", async () => {
    const o = await someChats();
    const key = fc.oneof(
      fc.constantFrom(...searchKeys),
      fc.constantFrom("TITLE", "Pr_Status", "x", "", "title "),
      fc.string(),
    );
    const term = fc
      .tuple(key, text, fc.boolean())
      .map(([k, v, isQuoted]) => (isQuoted ? `${k}:${quoted(v)}` : `${k}:${v}`));
    const q = fc.oneof(
      text,
      fc.array(term, { minLength: 1, maxLength: 4 }).map((ts) => ts.join(" ")),
    );
    const label = fc.oneof(
      text,
      fc
        .tuple(fc.oneof(fc.constantFrom("a", "team", "k.e/y-1"), text), text)
        .map(([k, v]) => `${k}:${v}`),
    );

    await fc.assert(
      fc.asyncProperty(
        fc.option(q, { nil: undefined }),
        fc.array(label, { maxLength: 3 }),
        async (qValue, labels) => {
          const res = await list(o, { q: qValue, label: labels });
          expect([200, 400], res.text).toContain(res.status);
          if (res.status === 400) {
            expect(typeof res.json?.message).toBe("string");
            expect(res.json.message.length).toBeGreaterThan(0);
          } else {
            expect(Array.isArray(res.json)).toBe(true);
          }
        },
      ),
      { numRuns: 150 },
    );
  });

  it("passes hostile but well-formed text filters and label values to SQL as data (200)", async () => {
    const o = await someChats();
    const textKey = fc.constantFrom("title", "repo", "pr_title");
    const q = fc
      .array(fc.tuple(textKey, acceptedValue), { minLength: 1, maxLength: 3 })
      // Each key at most once.
      .map((terms) => [...new Map(terms).entries()].map(([k, v]) => `${k}:${quoted(v)}`));
    const label = fc.tuple(fc.constantFrom("a", "team", "k.e/y-1"), acceptedValue);

    await fc.assert(
      fc.asyncProperty(q, fc.option(label, { nil: undefined }), async (terms, lbl) => {
        const res = await list(o, {
          q: [...terms, "archived:false"].join(" "),
          label: lbl ? `${lbl[0]}:${lbl[1]}` : undefined,
        });
        expect(res.status, res.text).toBe(200);
        expect(Array.isArray(res.json)).toBe(true);
      }),
      { numRuns: 100 },
    );
  });

  it("answers malformed percent-encoding in the query string with 200 or 400", async () => {
    const o = await newOwner();
    for (const qs of ["q=%", "q=%ZZ", "q=%FF%FE", "q=title:%00", "label=%E0%A4%A", "label=a:%C0"]) {
      const res = await t.call("GET", `/api/experimental/chats?${qs}`, { token: o.token });
      expect([200, 400], `${qs}: ${res.text}`).toContain(res.status);
    }
  });

  it("treats an SQL-injection-looking title filter as data", async () => {
    const o = await newOwner();
    const evil = await newChat(o, { text: "'; DROP TABLE chats; --" });
    await newChat(o, { text: "harmless" });

    const res = await list(o, { q: `title:"'; DROP TABLE chats; --"` });
    expect(res.status).toBe(200);
    expect(res.json.map((c: ListedChat) => c.id)).toEqual([evil.id]);
    const count = await t.pool.query<{ n: string }>(
      "SELECT count(*)::text AS n FROM chats WHERE owner_id = $1",
      [o.id],
    );
    expect(count.rows[0]!.n).toBe("2");
  });
});
