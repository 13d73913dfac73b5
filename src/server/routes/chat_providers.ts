import { randomUUID } from "node:crypto";
import { Hono } from "hono";
import { z } from "zod";
import {
  deleteChatProviderByID,
  getChatProviderByID,
  insertChatProvider,
  listChatProviders,
  updateChatProviderByID,
} from "../../generated/chat_models.ts";
import { requireOwner } from "../auth.ts";
import type { AppDeps, AppEnv } from "../env.ts";
import { notFound, unavailable } from "../errors.ts";
import { chatProviderJson } from "../shapes.ts";
import { httpUrl, uuid, validate } from "../validation.ts";

/*
 * GET/POST /providers, PATCH/DELETE /providers/{id} (site owners). Rules in SQL: the duplicate
 * rule (chat_providers_kind_base_url_key), openai-compatible needs a base_url
 * (chat_providers_base_url_required), delete and disable guards (sql/functions/chat_models.sql).
 * API keys are sealed here with the provider id as associated data and never leave the server.
 */

/** Far above any provider's key format; keeps a pasted file out of the database. */
const maxApiKeyLength = 4096;

const providerKind = z.enum(["openai", "anthropic", "openai-compatible", "local"]);
const displayName = z.string().max(256);
/** "" means "no base URL" (the kind's default endpoint), like null. */
const baseUrl = z
  .union([z.literal(""), httpUrl()])
  .nullable()
  .transform((v) => v || null);
const apiKey = z.string().min(1).max(maxApiKeyLength);

const createBody = z.strictObject({
  provider: providerKind,
  display_name: displayName.optional(),
  base_url: baseUrl.optional(),
  api_key: apiKey.optional(),
  enabled: z.boolean().optional(),
});

/** The kind is fixed: a key for one kind means nothing to another; create a new provider. */
const updateBody = z.strictObject({
  display_name: displayName.optional(),
  base_url: baseUrl.optional(),
  api_key: apiKey.nullable().optional(),
  enabled: z.boolean().optional(),
});

const providerParam = z.object({ id: uuid() });

async function sealApiKey(deps: AppDeps, providerId: string, key: string): Promise<Buffer> {
  if (!deps.secrets) throw unavailable("Provider secrets are not configured on this server.");
  return deps.secrets.encrypt(key, providerId);
}

export const chatProvidersRoutes = new Hono<AppEnv>()
  .use(requireOwner)

  .get("/", async (c) => {
    const rows = await listChatProviders(c.get("deps").db);
    return c.json(rows.map(chatProviderJson));
  })

  .post("/", validate("json", createBody), async (c) => {
    const body = c.req.valid("json");
    const deps = c.get("deps");
    const id = randomUUID();
    const row = await insertChatProvider(deps.db, {
      id,
      provider: body.provider,
      display_name: body.display_name ?? "",
      base_url: body.base_url ?? null,
      enabled: body.enabled ?? true,
      api_key_ciphertext: body.api_key ? await sealApiKey(deps, id, body.api_key) : null,
    });
    return c.json(chatProviderJson(row!), 201);
  })

  .patch("/:id", validate("param", providerParam), validate("json", updateBody), async (c) => {
    const { id } = c.req.valid("param");
    const body = c.req.valid("json");
    const deps = c.get("deps");
    await updateChatProviderByID(deps.db, {
      id,
      display_name: body.display_name ?? null,
      set_base_url: body.base_url !== undefined,
      base_url: body.base_url ?? null,
      enabled: body.enabled ?? null,
      set_api_key: body.api_key !== undefined,
      api_key_ciphertext: body.api_key ? await sealApiKey(deps, id, body.api_key) : null,
    });
    const row = await getChatProviderByID(deps.db, { id });
    if (!row) throw notFound("Provider");
    return c.json(chatProviderJson(row));
  })

  .delete("/:id", validate("param", providerParam), async (c) => {
    await deleteChatProviderByID(c.get("deps").db, { id: c.req.valid("param").id });
    return c.body(null, 204);
  });
