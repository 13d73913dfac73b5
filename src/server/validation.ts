import { zValidator } from "@hono/zod-validator";
import type { ValidationTargets } from "hono";
import { resolver, uniqueSymbol } from "hono-openapi";
import { z } from "zod";
import { ApiError } from "./errors.ts";

/**
 * JSON bodies nested deeper than this answer 400. JSON.parse accepts any depth, but the value
 * is later serialised again for SQL (JSON.stringify in src/generated), which overflows the
 * stack at a few thousand levels: a 500. No tool result, schema or message nests this deep.
 */
export const maxJsonDepth = 256;

/** Whether `value` nests objects or arrays deeper than `max` (iterative: any depth is safe). */
function nestedDeeperThan(value: unknown, max: number): boolean {
  const stack: [unknown, number][] = [[value, 1]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!;
    if (v === null || typeof v !== "object") continue;
    if (depth > max) return true;
    for (const child of Object.values(v)) stack.push([child, depth + 1]);
  }
  return false;
}

/**
 * The one validation hook: any failed schema becomes
 * 400 {message, validations: [{field, detail}]}, whatever the target (json, query, param), and
 * so does a JSON body nested deeper than maxJsonDepth.
 */
export const validate = <T extends z.ZodType, Target extends keyof ValidationTargets>(
  target: Target,
  schema: T,
) =>
  Object.assign(
    zValidator(target, schema, (result) => {
      if (!result.success) {
        const validations = result.error.issues.map((issue) => ({
          field: issue.path.map(String).join(".") || target,
          detail: issue.message,
        }));
        const what =
          target === "param" ? "path parameter" : target === "json" ? "request body" : target;
        throw new ApiError(400, `Invalid ${what}.`, undefined, validations);
      }
      if (target === "json" && nestedDeeperThan(result.data, maxJsonDepth)) {
        throw new ApiError(400, "Invalid request body.", undefined, [
          { field: "json", detail: `nested deeper than ${maxJsonDepth} levels` },
        ]);
      }
    }),
    // What hono-openapi reads to put the schema in the OpenAPI document (src/server/openapi.ts).
    { [uniqueSymbol]: { target, ...resolver(schema) } },
  );

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** A UUID in any case, normalised to lower case. */
export const uuid = () =>
  z
    .string()
    .regex(uuidPattern, "must be a UUID")
    .transform((s) => s.toLowerCase());

/** The {chat} path parameter of the chat routes. */
export const chatParam = z.object({ chat: uuid() });

/** A chat's plan mode (docs/api.md "Plan mode"): "plan", or null for none. */
export const planMode = z.enum(["plan"]).nullable();

/**
 * A bigint row id (a notification, an audit entry) as a path or query value: decimal digits only
 * (not "1e3" or "0x10"), within JavaScript's safe integers (identities never get beyond them).
 */
export const rowId = (what: string) =>
  z
    .string()
    .regex(/^[1-9][0-9]{0,15}$/, `must be ${what} id`)
    .transform(Number)
    .refine(Number.isSafeInteger, `must be ${what} id`);

/** Names of users, organizations, workspaces and agents share one format. */
export const resourceName = (max: number) =>
  z
    .string()
    .min(1)
    .max(max)
    .regex(
      /^[a-zA-Z0-9]+(-[a-zA-Z0-9]+)*$/,
      "must be letters, digits or single hyphens between them",
    );

/** Non-negative micros (millionths of a currency unit), within JavaScript's safe integers. */
export const micros = () => z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);

/** A message part's text: far above any prompt, well below the 1 MiB body limit. */
const maxTextLength = 500_000;

/** InputPart[] of docs/api.md: what clients may send as a user message. */
export const messageContent = z
  .array(
    z.discriminatedUnion("type", [
      z.strictObject({ type: z.literal("text"), text: z.string().min(1).max(maxTextLength) }),
      z.strictObject({ type: z.literal("file"), file_id: uuid() }),
    ]),
  )
  .min(1)
  .max(100);

/** An absolute http(s) URL with a host and no credentials in it (they belong in a secret). */
export const httpUrl = (max = 2048) =>
  z
    .string()
    .max(max)
    .refine((s) => {
      if (!/^https?:\/\//i.test(s) || /\s/.test(s)) return false;
      try {
        const u = new URL(s);
        return u.hostname !== "" && u.username === "" && u.password === "";
      } catch {
        return false;
      }
    }, "must be an http(s) URL with a host and without credentials");
