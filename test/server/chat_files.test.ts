import contentDisposition from "content-disposition";
import { beforeAll, describe, expect, it } from "vitest";
import { gen } from "../fixtures/index.ts";
import { testApp } from "../setup/app.ts";

/*
 * POST /api/experimental/chats/files and GET /files/{file} (docs/api.md "Chats"), and the link
 * a chat's file parts make (GET /{chat} lists `files`).
 */

let t: Awaited<ReturnType<typeof testApp>>;
let orgId: string;

interface Member {
  id: string;
  token: string;
}

const maxFileBytes = 10 * 1024 * 1024;

/** Minimal byte strings that start with each allowed type's magic number. */
const samples = {
  "image/png": Uint8Array.from([
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
  ]),
  "image/jpeg": Uint8Array.from([0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, 0x4a, 0x46, 0x49, 0x46, 0x00]),
  "image/gif": Uint8Array.from([...Buffer.from("GIF89a"), 0x01, 0x00, 0x01, 0x00, 0x00, 0x00]),
  "image/webp": Uint8Array.from([
    ...Buffer.from("RIFF"),
    0x1a,
    0x00,
    0x00,
    0x00,
    ...Buffer.from("WEBPVP8 "),
    0x0e,
    0x00,
    0x00,
    0x00,
  ]),
  "text/plain": new TextEncoder().encode("héllo, wörld\n\ttabs and\r\nnewlines are text\n"),
} as const;

beforeAll(async () => {
  t = await testApp();
  orgId = (await gen.organization(t.pool)).id;
});

const newMember = (organizationIds = [orgId]): Promise<Member> =>
  gen.member(t.pool, { organizationIds });

async function upload(
  who: Member,
  body: Uint8Array,
  opts: { type?: string | null; filename?: string; query?: string } = {},
) {
  const headers: Record<string, string> = {};
  if (opts.type !== null) headers["content-type"] = opts.type ?? "text/plain";
  if (opts.filename !== undefined)
    headers["content-disposition"] = contentDisposition(opts.filename);
  return t.call("POST", `/api/experimental/chats/files${opts.query ?? ""}`, {
    token: who.token,
    body,
    headers,
  });
}

async function download(who: Member, fileId: string) {
  const res = await t.app.request(`/api/experimental/chats/files/${fileId}`, {
    headers: { authorization: `Bearer ${who.token}` },
  });
  return {
    status: res.status,
    headers: res.headers,
    bytes: new Uint8Array(await res.arrayBuffer()),
  };
}

/** Uploads and asserts 201 {id}; returns the id. */
async function uploaded(who: Member, body: Uint8Array, type: string, filename = "f.bin") {
  const res = await upload(who, body, { type, filename });
  expect(res.status, res.text).toBe(201);
  expect(res.json).toEqual({ id: expect.stringMatching(/^[0-9a-f-]{36}$/) });
  return res.json.id as string;
}

describe("POST /files and GET /files/{file}: round trip", () => {
  for (const [type, bytes] of Object.entries(samples)) {
    it(`stores ${type} and serves the same bytes with private immutable, nosniff headers`, async () => {
      const me = await newMember();
      const name = `sample.${type.split("/")[1]}`;
      const id = await uploaded(me, bytes, type, name);

      const res = await download(me, id);
      expect(res.status).toBe(200);
      expect(Buffer.from(res.bytes).equals(Buffer.from(bytes))).toBe(true);
      expect(res.headers.get("content-type")).toBe(
        type === "text/plain" ? "text/plain; charset=utf-8" : type,
      );
      const cache = res.headers.get("cache-control") ?? "";
      expect(cache).toContain("private");
      expect(cache).toContain("immutable");
      expect(res.headers.get("x-content-type-options")).toBe("nosniff");
      const disposition = res.headers.get("content-disposition") ?? "";
      expect(disposition).toContain(name);
      expect(contentDisposition.parse(disposition).parameters.filename).toBe(name);
    });
  }

  it("accepts a text/plain Content-Type with a charset parameter", async () => {
    const me = await newMember();
    const id = await uploaded(me, samples["text/plain"], "text/plain; charset=utf-8", "a.txt");
    expect((await download(me, id)).headers.get("content-type")).toBe("text/plain; charset=utf-8");
  });

  it("stores the file in the organization named by ?organization= when the user is a member", async () => {
    const second = await gen.organization(t.pool);
    const me = await newMember([orgId, second.id]);
    const res = await upload(me, samples["image/png"], {
      type: "image/png",
      filename: "x.png",
      query: `?organization=${second.id}`,
    });
    expect(res.status, res.text).toBe(201);
    const row = await t.pool.query<{ organization_id: string }>(
      "SELECT organization_id FROM chat_files WHERE id = $1",
      [res.json.id],
    );
    expect(row.rows[0]!.organization_id).toBe(second.id);
  });
});

describe("POST /files: what is rejected", () => {
  it("rejects a Content-Type outside the allowlist (400)", async () => {
    const me = await newMember();
    for (const type of ["application/pdf", "text/html", "image/svg+xml", "application/json"]) {
      const res = await upload(me, new TextEncoder().encode("just text"), { type, filename: "a" });
      expect(res.status, type).toBe(400);
      expect(res.json.message, type).toEqual(expect.any(String));
    }
    expect((await upload(me, samples["text/plain"], { type: null })).status).toBe(400);
  });

  it("rejects content whose sniffed type differs from the declared one (400)", async () => {
    const me = await newMember();
    const cases: [string, Uint8Array][] = [
      ["image/png", new TextEncoder().encode("not a png at all")],
      ["text/plain", samples["image/png"]],
      ["image/jpeg", samples["image/png"]],
      ["image/webp", samples["image/gif"]],
      ["text/plain", Uint8Array.from([0x00, 0x01, 0x02, 0xff, 0xfe, 0x7f])], // binary junk
      ["text/plain", Uint8Array.from([0x68, 0x69, 0xc3])], // truncated UTF-8
      ["text/plain", new TextEncoder().encode("nul\u0000inside")],
    ];
    for (const [type, body] of cases) {
      const res = await upload(me, body, { type, filename: "x" });
      expect(res.status, `${type} ${Buffer.from(body).toString("hex")}`).toBe(400);
    }
    const count = await t.pool.query("SELECT 1 FROM chat_files WHERE owner_id = $1", [me.id]);
    expect(count.rowCount).toBe(0);
  });

  it("rejects an empty body (400)", async () => {
    const me = await newMember();
    const res = await upload(me, new Uint8Array(0), { type: "text/plain", filename: "e.txt" });
    expect(res.status).toBe(400);
  });

  it("accepts exactly 10 MiB and answers 413 above it", async () => {
    const me = await newMember();
    const atLimit = new Uint8Array(maxFileBytes).fill(0x61);
    const ok = await upload(me, atLimit, { type: "text/plain", filename: "big.txt" });
    expect(ok.status, ok.text).toBe(201);

    const over = new Uint8Array(maxFileBytes + 1).fill(0x61);
    const res = await upload(me, over, { type: "text/plain", filename: "bigger.txt" });
    expect(res.status).toBe(413);
    expect(res.json.message).toEqual(expect.any(String));
  });

  it("limits the file name to 255 UTF-8 bytes, counting bytes rather than characters", async () => {
    const me = await newMember();
    const tooLong = "é".repeat(128); // 128 characters, 256 bytes
    expect(Buffer.byteLength(tooLong)).toBe(256);
    const res = await upload(me, samples["text/plain"], { type: "text/plain", filename: tooLong });
    expect(res.status).toBe(400);

    const justFits = `${"é".repeat(127)}a`; // 255 bytes
    expect(Buffer.byteLength(justFits)).toBe(255);
    const id = await uploaded(me, samples["text/plain"], "text/plain", justFits);
    const got = await download(me, id);
    expect(
      contentDisposition.parse(got.headers.get("content-disposition")!).parameters.filename,
    ).toBe(justFits);
  });

  it("forbids uploading into an organization the user is not a member of (403)", async () => {
    const me = await newMember();
    const foreign = await gen.organization(t.pool);
    const res = await upload(me, samples["image/png"], {
      type: "image/png",
      filename: "x.png",
      query: `?organization=${foreign.id}`,
    });
    expect(res.status).toBe(403);
    const bad = await upload(me, samples["image/png"], {
      type: "image/png",
      filename: "x.png",
      query: "?organization=nope",
    });
    expect(bad.status).toBe(400);
  });

  it("requires authentication (401)", async () => {
    const res = await t.app.request("/api/experimental/chats/files", {
      method: "POST",
      headers: { "content-type": "text/plain" },
      body: samples["text/plain"],
    });
    expect(res.status).toBe(401);
  });
});

describe("GET /files/{file}: who may read", () => {
  it("rejects a file id that is not a uuid (400)", async () => {
    const me = await newMember();
    expect((await download(me, "not-a-uuid")).status).toBe(400);
  });

  it("answers 404 for another user's file, the same as for an unknown id", async () => {
    const owner = await newMember();
    const other = await newMember();
    const id = await uploaded(owner, samples["image/gif"], "image/gif", "g.gif");

    const theirs = await t.call("GET", `/api/experimental/chats/files/${id}`, {
      token: other.token,
    });
    const unknown = await t.call(
      "GET",
      "/api/experimental/chats/files/00000000-0000-4000-8000-000000000000",
      { token: other.token },
    );
    expect(theirs.status).toBe(404);
    expect(unknown.status).toBe(404);
    expect(theirs.json).toEqual(unknown.json);
    expect((await download(owner, id)).status).toBe(200);
  });
});

describe("file parts of a new chat", () => {
  it("links an uploaded file to the chat, so GET /{chat} lists it in files", async () => {
    const me = await newMember();
    const id = await uploaded(me, samples["image/png"], "image/png", "shot.png");
    const created = await t.call("POST", "/api/experimental/chats", {
      token: me.token,
      body: {
        content: [
          { type: "text", text: "what is in this picture?" },
          { type: "file", file_id: id },
        ],
      },
    });
    expect(created.status, created.text).toBe(201);
    const expectedFile = {
      id,
      name: "shot.png",
      mimetype: "image/png",
      size: samples["image/png"].length,
      created_at: expect.any(String),
    };
    expect(created.json.files).toEqual([expectedFile]);

    const got = await t.call("GET", `/api/experimental/chats/${created.json.id}`, {
      token: me.token,
    });
    expect(got.status).toBe(200);
    expect(got.json.files).toEqual([expectedFile]);
  });

  it("lists no files for a chat without file parts", async () => {
    const me = await newMember();
    const created = await t.call("POST", "/api/experimental/chats", {
      token: me.token,
      body: { content: [{ type: "text", text: "hi" }] },
    });
    expect(created.status, created.text).toBe(201);
    const got = await t.call("GET", `/api/experimental/chats/${created.json.id}`, {
      token: me.token,
    });
    expect(got.json.files).toEqual([]);
  });

  it("rejects a file part naming another user's file (400) and creates no chat", async () => {
    const me = await newMember();
    const other = await newMember();
    const theirs = await uploaded(other, samples["text/plain"], "text/plain", "secret.txt");
    const res = await t.call("POST", "/api/experimental/chats", {
      token: me.token,
      body: {
        content: [
          { type: "text", text: "read this" },
          { type: "file", file_id: theirs },
        ],
      },
    });
    expect(res.status).toBe(400);
    expect(res.json.message).toEqual(expect.any(String));
    const chats = await t.pool.query("SELECT 1 FROM chats WHERE owner_id = $1", [me.id]);
    expect(chats.rowCount).toBe(0);
  });
});
