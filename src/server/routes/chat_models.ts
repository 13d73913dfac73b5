import { randomUUID } from "node:crypto";
import { Hono } from "hono";
import { z } from "zod";
import { ModelCatalog, ModelConfig, Provider } from "../../api/schemas.ts";
import { chatModelConfigJson, chatProviderJson, pricingJson } from "../../api/shapes.ts";
import type { Queryable } from "../../db/index.ts";
import {
  createChatModelConfig,
  deleteChatModelConfigByID,
  deleteChatProviderByID,
  getChatModelConfigByID,
  getChatProviderByID,
  insertChatProvider,
  listChatModelConfigs,
  listChatProviders,
  listEnabledModelConfigs,
  updateChatModelConfigByID,
  updateChatProviderByID,
} from "../../generated/chat_models.ts";
import {
  deleteChatProviderUserKey,
  setChatProviderUserKey,
} from "../../generated/chat_provider_user_keys.ts";
import { userKeyAssociatedData } from "../../models/providers.ts";
import { requireOwner, userOf } from "../auth.ts";
import type { AppDeps, AppEnv } from "../deps.ts";
import { notFound, unavailable } from "../errors.ts";
import { operation } from "../openapi.ts";
import { httpUrl, micros, uuid, validate } from "../validation.ts";

/*
 * Models: providers and model configs (site owners), and the enabled models any user may pick
 * (GET /models). Rules in sql/functions/chat_models.sql.
 */

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

/** Whose keys calls may use (docs/api.md "Users' own keys"); the CHECKs of 00048 hold them. */
const keyPolicy = {
  central_key_enabled: z.boolean().optional(),
  allow_user_key: z.boolean().optional(),
  central_fallback: z.boolean().optional(),
};

const providerCreateBody = z.strictObject({
  provider: providerKind,
  display_name: displayName.optional(),
  base_url: baseUrl.optional(),
  api_key: apiKey.optional(),
  enabled: z.boolean().optional(),
  ...keyPolicy,
});

/** The kind is fixed: a key for one kind means nothing to another; create a new provider. */
const providerUpdateBody = z.strictObject({
  display_name: displayName.optional(),
  base_url: baseUrl.optional(),
  api_key: apiKey.nullable().optional(),
  enabled: z.boolean().optional(),
  ...keyPolicy,
});

const userKeyBody = z.strictObject({ api_key: apiKey });

const providerParam = z.object({ id: uuid() });

/** Seals a key with its associated data: the provider's id, or userKeyAssociatedData. */
async function sealApiKey(deps: AppDeps, associatedData: string, key: string): Promise<Buffer> {
  if (!deps.secrets) throw unavailable("Provider secrets are not configured on this server.");
  return deps.secrets.encrypt(key, associatedData);
}

export const chatProvidersRoutes = new Hono<AppEnv>()
  /*
   * PUT/DELETE /providers/{id}/user-key: the caller's own key, for any member. Registered before
   * the owner check below, which they answer without reaching.
   */
  .put(
    "/:id/user-key",
    operation({
      summary: "Store the caller's own key for a provider (never returned)",
      tags: ["Providers"],
      responses: { 204: null },
      errors: [400, 404],
    }),
    validate("param", providerParam),
    validate("json", userKeyBody),
    async (c) => {
      const { id } = c.req.valid("param");
      const deps = c.get("deps");
      const userId = userOf(c.get("actor")).user.id;
      await setChatProviderUserKey(deps.db, {
        provider_id: id,
        user_id: userId,
        api_key_ciphertext: await sealApiKey(
          deps,
          userKeyAssociatedData(id, userId),
          c.req.valid("json").api_key,
        ),
      });
      return c.body(null, 204);
    },
  )

  .delete(
    "/:id/user-key",
    operation({
      summary: "Delete the caller's own key for a provider",
      tags: ["Providers"],
      responses: { 204: null },
      errors: [400, 404],
    }),
    validate("param", providerParam),
    async (c) => {
      await deleteChatProviderUserKey(c.get("deps").db, {
        provider_id: c.req.valid("param").id,
        user_id: userOf(c.get("actor")).user.id,
      });
      return c.body(null, 204);
    },
  )

  .use(requireOwner)

  .get(
    "/",
    operation({
      summary: "The model providers (site owners)",
      tags: ["Providers"],
      responses: { 200: z.array(Provider) },
      errors: [403],
    }),
    async (c) => {
      const rows = await listChatProviders(c.get("deps").db);
      return c.json(rows.map(chatProviderJson));
    },
  )

  .post(
    "/",
    operation({
      summary: "Add a model provider (site owners)",
      tags: ["Providers"],
      responses: { 201: Provider },
      errors: [400, 403, 409],
    }),
    validate("json", providerCreateBody),
    async (c) => {
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
        central_key_enabled: body.central_key_enabled ?? true,
        allow_user_key: body.allow_user_key ?? false,
        central_fallback: body.central_fallback ?? false,
      });
      return c.json(chatProviderJson(row!), 201);
    },
  )

  .patch(
    "/:id",
    operation({
      summary: "Change a model provider (site owners)",
      tags: ["Providers"],
      responses: { 200: Provider },
      errors: [400, 403, 404, 409],
    }),
    validate("param", providerParam),
    validate("json", providerUpdateBody),
    async (c) => {
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
        central_key_enabled: body.central_key_enabled ?? null,
        allow_user_key: body.allow_user_key ?? null,
        central_fallback: body.central_fallback ?? null,
      });
      const row = await getChatProviderByID(deps.db, { id });
      if (!row) throw notFound("Provider");
      return c.json(chatProviderJson(row));
    },
  )

  .delete(
    "/:id",
    operation({
      summary: "Delete a model provider (site owners)",
      tags: ["Providers"],
      responses: { 204: null },
      errors: [400, 403, 404, 409],
    }),
    validate("param", providerParam),
    async (c) => {
      await deleteChatProviderByID(c.get("deps").db, { id: c.req.valid("param").id });
      return c.body(null, 204);
    },
  );

/*
 * GET/POST /model-configs, PATCH/DELETE /model-configs/{id} (site owners). Rules in SQL
 * (sql/functions/chat_models.sql): one default at a time under a lock, the default cannot be
 * deleted, disabled or un-defaulted (make another one the default instead), soft delete, and the
 * provider must exist and not be deleted.
 */

/** context_limit is an integer column. */
const maxContextLimit = 2_147_483_647;

/** Micros per million tokens; all four are required so a price is never half-specified. */
const pricing = z.strictObject({
  input: micros(),
  output: micros(),
  cache_read: micros(),
  cache_write: micros(),
});

const modelConfigFields = {
  model: z.string().trim().min(1).max(256),
  display_name: z.string().max(256),
  context_limit: z.number().int().min(1).max(maxContextLimit),
  enabled: z.boolean(),
  is_default: z.boolean(),
  pricing: pricing.nullable(),
  store_responses: z.boolean(),
};

/** Said here as a 400 for the body; the database holds it as chat_model_configs_default_usable. */
const defaultIsEnabled = (b: { enabled?: boolean | undefined; is_default?: boolean | undefined }) =>
  !(b.is_default === true && b.enabled === false);
const defaultIsEnabledError = {
  message: "a default model config must be enabled",
  path: ["enabled"],
};

const modelConfigCreateBody = z
  .strictObject({
    provider_id: uuid(),
    model: modelConfigFields.model,
    display_name: modelConfigFields.display_name.optional(),
    context_limit: modelConfigFields.context_limit,
    enabled: modelConfigFields.enabled.optional(),
    is_default: modelConfigFields.is_default.optional(),
    pricing: modelConfigFields.pricing.optional(),
    store_responses: modelConfigFields.store_responses.optional(),
  })
  .refine(defaultIsEnabled, defaultIsEnabledError);

const modelConfigUpdateBody = z
  .strictObject({
    provider_id: uuid().optional(),
    model: modelConfigFields.model.optional(),
    display_name: modelConfigFields.display_name.optional(),
    context_limit: modelConfigFields.context_limit.optional(),
    enabled: modelConfigFields.enabled.optional(),
    is_default: modelConfigFields.is_default.optional(),
    pricing: modelConfigFields.pricing.optional(),
    store_responses: modelConfigFields.store_responses.optional(),
  })
  .refine(defaultIsEnabled, defaultIsEnabledError);

const modelConfigParam = z.object({ id: uuid() });

type Pricing = z.infer<typeof pricing> | null | undefined;

const priceArgs = (p: Pricing) => ({
  input_price_micros: p?.input ?? null,
  output_price_micros: p?.output ?? null,
  cache_read_price_micros: p?.cache_read ?? null,
  cache_write_price_micros: p?.cache_write ?? null,
});

async function modelConfigJson(db: Queryable, id: string) {
  const row = await getChatModelConfigByID(db, { id });
  if (!row) throw notFound("Model config");
  return chatModelConfigJson(row);
}

export const chatModelConfigsRoutes = new Hono<AppEnv>()
  .use(requireOwner)

  .get(
    "/",
    operation({
      summary: "The model configs (site owners)",
      tags: ["Models"],
      responses: { 200: z.array(ModelConfig) },
      errors: [403],
    }),
    async (c) => {
      const rows = await listChatModelConfigs(c.get("deps").db);
      return c.json(rows.map(chatModelConfigJson));
    },
  )

  .post(
    "/",
    operation({
      summary: "Add a model config (site owners)",
      tags: ["Models"],
      responses: { 201: ModelConfig },
      errors: [400, 403, 404, 409],
    }),
    validate("json", modelConfigCreateBody),
    async (c) => {
      const body = c.req.valid("json");
      const db = c.get("deps").db;
      const created = await createChatModelConfig(db, {
        provider_id: body.provider_id,
        model: body.model,
        display_name: body.display_name ?? "",
        context_limit: body.context_limit,
        enabled: body.enabled ?? true,
        is_default: body.is_default ?? false,
        ...priceArgs(body.pricing),
        store_responses: body.store_responses ?? false,
      });
      return c.json(await modelConfigJson(db, created.id!), 201);
    },
  )

  .patch(
    "/:id",
    operation({
      summary: "Change a model config (site owners)",
      tags: ["Models"],
      responses: { 200: ModelConfig },
      errors: [400, 403, 404, 409],
    }),
    validate("param", modelConfigParam),
    validate("json", modelConfigUpdateBody),
    async (c) => {
      const { id } = c.req.valid("param");
      const body = c.req.valid("json");
      const db = c.get("deps").db;
      await updateChatModelConfigByID(db, {
        id,
        provider_id: body.provider_id ?? null,
        model: body.model ?? null,
        display_name: body.display_name ?? null,
        context_limit: body.context_limit ?? null,
        enabled: body.enabled ?? null,
        is_default: body.is_default ?? null,
        set_pricing: body.pricing !== undefined,
        ...priceArgs(body.pricing),
        store_responses: body.store_responses ?? null,
      });
      return c.json(await modelConfigJson(db, id));
    },
  )

  .delete(
    "/:id",
    operation({
      summary: "Delete a model config (site owners)",
      tags: ["Models"],
      responses: { 204: null },
      errors: [400, 403, 404, 409],
    }),
    validate("param", modelConfigParam),
    async (c) => {
      await deleteChatModelConfigByID(c.get("deps").db, { id: c.req.valid("param").id });
      return c.body(null, 204);
    },
  );

/**
 * GET /models: the enabled model configs, grouped by provider, for any signed-in user; each
 * provider says whether the caller can use it now (their own key or the central one) and why not.
 */
export const chatModelsRoutes = new Hono<AppEnv>().get(
  "/models",
  operation({
    summary: "The enabled models by provider, and whether the caller can use each provider now",
    tags: ["Models"],
    responses: { 200: ModelCatalog },
  }),
  async (c) => {
    const deps = c.get("deps");
    const rows = await listEnabledModelConfigs(deps.db, {
      user_id: userOf(c.get("actor")).user.id,
      gateway: deps.models?.routing.mode === "gateway",
    });
    const providers = new Map<string, { models: unknown[] } & Record<string, unknown>>();
    for (const r of rows) {
      let p = providers.get(r.provider_id);
      if (!p) {
        p = {
          id: r.provider_id,
          provider: r.provider,
          display_name: r.provider_display_name,
          available: r.available,
          ...(r.available ? {} : { unavailable_reason: r.unavailable_reason }),
          allow_user_key: r.allow_user_key,
          has_user_api_key: r.has_user_api_key,
          models: [],
        };
        providers.set(r.provider_id, p);
      }
      p.models.push({
        id: r.id,
        model: r.model,
        display_name: r.display_name,
        context_limit: r.context_limit,
        is_default: r.is_default,
        pricing: pricingJson(r),
      });
    }
    return c.json({ providers: [...providers.values()] });
  },
);
