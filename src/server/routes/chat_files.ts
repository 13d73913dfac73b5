import contentDisposition from "content-disposition";
import { Hono } from "hono";
import { z } from "zod";
import { getChatFileByIDForOwner, insertChatFile } from "../../generated/chat_files.ts";
import { allowedUploadTypes, baseMediaType, sniffType } from "../../lib/sniff.ts";
import { userOf } from "../auth.ts";
import type { AppEnv } from "../deps.ts";
import { badRequest, forbidden, notFound, tooLarge } from "../errors.ts";
import { operation } from "../openapi.ts";
import { uuid, validate } from "../validation.ts";

/** Largest upload (docs/api.md); app.ts applies it as the body limit of POST /files. */
export const maxFileBytes = 10 * 1024 * 1024;
/** File names are stored and echoed in headers; 255 bytes is what file systems allow. */
const maxFileNameBytes = 255;

const uploadQuery = z.object({ organization: uuid().optional() });
const fileParam = z.object({ file: uuid() });

function fileNameOf(header: string | undefined): string {
  if (!header) return "file";
  let name: string | undefined;
  try {
    name = contentDisposition.parse(header).parameters.filename;
  } catch {
    throw badRequest("Malformed Content-Disposition header.");
  }
  if (!name) return "file";
  // Keep the last path segment only: a name is never a path.
  name = name.split(/[\\/]/).pop() ?? "";
  if (!name.trim()) throw badRequest("The file name is empty.");
  if (Buffer.byteLength(name, "utf8") > maxFileNameBytes) {
    throw badRequest(`The file name exceeds ${maxFileNameBytes} bytes.`);
  }
  return name;
}

export const chatFilesRoutes = new Hono<AppEnv>()
  .post(
    "/",
    operation({
      summary: "Upload a file (the raw body, its Content-Type, a filename in Content-Disposition)",
      tags: ["Files"],
      responses: { 201: z.object({ id: z.string() }) },
      errors: [400, 403, 413, 507],
    }),
    validate("query", uploadQuery),
    async (c) => {
      const actor = userOf(c.get("actor"));
      const declared = baseMediaType(c.req.header("content-type"));
      if (!(allowedUploadTypes as readonly string[]).includes(declared)) {
        throw badRequest(
          `File type ${JSON.stringify(declared || "(none)")} is not allowed.`,
          `Allowed: ${allowedUploadTypes.join(", ")}.`,
        );
      }
      const name = fileNameOf(c.req.header("content-disposition"));
      const org = c.req.valid("query").organization ?? actor.user.organization_ids[0];
      if (!org || !actor.user.organization_ids.includes(org)) {
        throw forbidden("You are not a member of this organization.");
      }
      const data = Buffer.from(await c.req.arrayBuffer());
      if (data.length === 0) throw badRequest("The file is empty.");
      if (data.length > maxFileBytes) throw tooLarge(`Files may be at most ${maxFileBytes} bytes.`);
      const sniffed = sniffType(data);
      if (sniffed !== declared) {
        throw badRequest(
          "The file's content does not match its Content-Type.",
          `declared ${declared}, content looks like ${sniffed ?? "none of the allowed types"}`,
        );
      }
      const file = await insertChatFile(c.get("deps").db, {
        owner_id: actor.user.id,
        organization_id: org,
        name,
        mimetype: declared,
        data,
      });
      return c.json({ id: file.id }, 201);
    },
  )

  .get(
    "/:file",
    operation({
      summary: "A file's bytes, with private immutable cache headers",
      tags: ["Files"],
      responses: {
        200: {
          schema: z.string().meta({ format: "binary" }),
          description: "The bytes, in the file's own media type",
          media: "application/octet-stream",
        },
      },
      errors: [400, 404],
    }),
    validate("param", fileParam),
    async (c) => {
      const actor = userOf(c.get("actor"));
      const file = await getChatFileByIDForOwner(c.get("deps").db, {
        id: c.req.valid("param").file,
        owner_id: actor.user.id,
      });
      if (!file) throw notFound("File");
      return c.body(new Uint8Array(file.data), 200, {
        "Content-Type":
          file.mimetype === "text/plain" ? "text/plain; charset=utf-8" : file.mimetype,
        "Content-Length": String(file.data.length),
        "Content-Disposition": contentDisposition(file.name, { type: "inline" }),
        // A file never changes under its id; only its owner may read it.
        "Cache-Control": "private, max-age=31536000, immutable",
        "X-Content-Type-Options": "nosniff",
      });
    },
  );
