import { Hono } from "hono";
import { z } from "zod";
import type { Queryable } from "../../db/index.ts";
import {
  createChatModelConfig,
  deleteChatModelConfigByID,
  getChatModelConfigByID,
  listChatModelConfigs,
  updateChatModelConfigByID,
} from "../../generated/chat_models.ts";
import { requireOwner } from "../auth.ts";
import type { AppEnv } from "../env.ts";
import { notFound } from "../errors.ts";
import { chatModelConfigJson } from "../shapes.ts";
import { micros, uuid, validate } from "../validation.ts";

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

const fields = {
  model: z.string().trim().min(1).max(256),
  display_name: z.string().max(256),
  context_limit: z.number().int().min(1).max(maxContextLimit),
  enabled: z.boolean(),
  is_default: z.boolean(),
  pricing: pricing.nullable(),
};

/** Said here as a 400 for the body; the database holds it as chat_model_configs_default_usable. */
const defaultIsEnabled = (b: { enabled?: boolean | undefined; is_default?: boolean | undefined }) =>
  !(b.is_default === true && b.enabled === false);
const defaultIsEnabledError = {
  message: "a default model config must be enabled",
  path: ["enabled"],
};

const createBody = z
  .strictObject({
    provider_id: uuid(),
    model: fields.model,
    display_name: fields.display_name.optional(),
    context_limit: fields.context_limit,
    enabled: fields.enabled.optional(),
    is_default: fields.is_default.optional(),
    pricing: fields.pricing.optional(),
  })
  .refine(defaultIsEnabled, defaultIsEnabledError);

const updateBody = z
  .strictObject({
    provider_id: uuid().optional(),
    model: fields.model.optional(),
    display_name: fields.display_name.optional(),
    context_limit: fields.context_limit.optional(),
    enabled: fields.enabled.optional(),
    is_default: fields.is_default.optional(),
    pricing: fields.pricing.optional(),
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

  .get("/", async (c) => {
    const rows = await listChatModelConfigs(c.get("deps").db);
    return c.json(rows.map(chatModelConfigJson));
  })

  .post("/", validate("json", createBody), async (c) => {
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
    });
    return c.json(await modelConfigJson(db, created!.id!), 201);
  })

  .patch("/:id", validate("param", modelConfigParam), validate("json", updateBody), async (c) => {
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
    });
    return c.json(await modelConfigJson(db, id));
  })

  .delete("/:id", validate("param", modelConfigParam), async (c) => {
    await deleteChatModelConfigByID(c.get("deps").db, { id: c.req.valid("param").id });
    return c.body(null, 204);
  });
