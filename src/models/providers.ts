import { createAnthropic } from "@ai-sdk/anthropic";
import { createOpenAI } from "@ai-sdk/openai";
import { createOpenAICompatible } from "@ai-sdk/openai-compatible";
import type { LanguageModelV3 } from "@ai-sdk/provider";
import type { Secrets } from "../lib/secrets.ts";
import { TurnError } from "./chat_error.ts";
import { localModel } from "./local_model.ts";

/*
 * Model configs as AI SDK language models. A provider's API key is decrypted here, per call, into
 * memory only: it is handed to the SDK and to the error scrubber, never stored or logged.
 */

export type ProviderKind = "openai" | "anthropic" | "openai-compatible" | "local";

/** A model config with its provider, as GetChatForRunByID returns it. */
export interface ModelSource {
  owner_id: string;
  provider_id: string;
  provider: ProviderKind;
  base_url: string | null;
  /** The sealed key of key_source: the owner's own, or the provider's. */
  api_key_ciphertext: Buffer | null;
  /** chat_provider_key_route (sql/functions/chat_models.sql): "user", "central", or null. */
  key_source: string | null;
  /** Why there is no key when key_source is null: user_key_required or missing_key. */
  unavailable_reason: string | null;
  /** The API key that initiated the turn, and whether it is still active (gateway routing). */
  initiator_api_key_id: string | null;
  initiator_key_active: boolean | null;
  model: string;
  model_enabled: boolean;
  provider_enabled: boolean;
}

/**
 * How model calls leave the process (docs/operations.md "Model routing"): straight to each
 * provider's endpoint, or through one OpenAI-compatible gateway that holds the central
 * credentials itself.
 */
export type ModelRouting =
  | { mode: "direct" }
  | {
      mode: "gateway";
      /** The gateway's base URL, with its version path (`https://gateway.example.com/v1`). */
      url: string;
      /** The deployment's credential at the gateway, sent on central routes; never a provider's. */
      token: string | undefined;
    };

/** The marker a BYOK call carries instead of the deployment's token: the key is the user's own. */
export const delegatedMarker = "delegated";

export interface ResolvedModel {
  model: LanguageModelV3;
  provider: ProviderKind;
  /** Texts to cut out of error messages (the API key). */
  secrets: string[];
}

export interface Models {
  readonly routing: ModelRouting;
  /** The model to call, or a TurnError (missing_key, auth, config) that fails the turn. */
  resolve(source: ModelSource): Promise<ResolvedModel>;
}

/** Kinds that cannot be called without a key. openai-compatible servers (vLLM, Ollama) may not need one. */
const keyRequired: ReadonlySet<ProviderKind> = new Set(["openai", "anthropic"]);

/** The associated data a user's own key is sealed with: it opens for that provider and user only. */
export function userKeyAssociatedData(providerId: string, userId: string): string {
  return `user-key:${providerId}:${userId}`;
}

export function createModels(opts: {
  secrets?: Secrets | undefined;
  routing?: ModelRouting | undefined;
}): Models {
  const routing = opts.routing ?? { mode: "direct" };
  return {
    routing,
    async resolve(src) {
      if (!src.model_enabled || !src.provider_enabled) {
        throw new TurnError(
          "config",
          "The chat's model is disabled or deleted.",
          `model ${src.model} of provider ${src.provider}: send a message with another model_config_id`,
        );
      }
      if (src.provider === "local") {
        const model = localModel(src.model);
        if (!model) {
          throw new TurnError("config", `The local provider has no model "${src.model}".`);
        }
        return { model, provider: "local", secrets: [] };
      }

      // Fail closed (chat_provider_key_route said why): without a key the SDKs would fall back to
      // OPENAI_API_KEY or ANTHROPIC_API_KEY from the server's environment, which no policy allows.
      if (src.key_source === null) {
        throw src.unavailable_reason === "user_key_required"
          ? new TurnError(
              "missing_key",
              "This model's provider needs your own API key, and you have not set one.",
              `provider ${src.provider_id}: set it with PUT /providers/{id}/user-key`,
            )
          : new TurnError(
              "missing_key",
              "The model provider needs an API key and none is configured.",
              `provider ${src.provider_id}: set api_key with PATCH /providers/{id}`,
            );
      }
      let apiKey: string | undefined;
      if (src.api_key_ciphertext) {
        if (!opts.secrets) {
          throw new TurnError("config", "Provider secrets are not configured on this runner.");
        }
        try {
          apiKey = await opts.secrets.decrypt(
            src.api_key_ciphertext,
            src.key_source === "user"
              ? userKeyAssociatedData(src.provider_id, src.owner_id)
              : src.provider_id,
          );
        } catch {
          throw new TurnError(
            "config",
            src.key_source === "user"
              ? "Your API key for the provider cannot be decrypted."
              : "The provider's API key cannot be decrypted.",
            "The server's secret key (PGCHATD_SECRET_KEY or <data dir>/secret-key) is not the one it was stored with; set the key again.",
          );
        }
      }
      if (routing.mode === "gateway") return gatewayModel(routing, src, apiKey);
      // A second line behind chat_provider_key_route: with no key the SDKs would read
      // OPENAI_API_KEY or ANTHROPIC_API_KEY from the environment.
      if (!apiKey && keyRequired.has(src.provider)) {
        throw new TurnError(
          "missing_key",
          "The model provider needs an API key and none is configured.",
          `provider ${src.provider_id}: set api_key with PATCH /providers/{id}`,
        );
      }
      const baseURL = src.base_url || undefined;
      const secrets = apiKey ? [apiKey] : [];
      switch (src.provider) {
        case "openai":
          return {
            model: createOpenAI({ apiKey, baseURL })(src.model) as LanguageModelV3,
            provider: src.provider,
            secrets,
          };
        case "anthropic":
          return {
            model: createAnthropic({ apiKey, baseURL })(src.model) as LanguageModelV3,
            provider: src.provider,
            secrets,
          };
        case "openai-compatible":
          return {
            model: createOpenAICompatible({
              name: "openai-compatible",
              baseURL: baseURL ?? "",
              ...(apiKey ? { apiKey } : {}),
              // Token usage in streamed responses (stream_options.include_usage).
              includeUsage: true,
            }).chatModel(src.model),
            provider: src.provider,
            secrets,
          };
      }
    },
  };
}

/**
 * A model behind the gateway: OpenAI chat completions at the gateway's URL for every provider
 * kind, the model named `<kind>/<model>`. A call on the user's own key (BYOK) carries it in the
 * provider's own auth header with the delegation marker, so the gateway forwards it; a central call
 * carries only the deployment's gateway token (the gateway applies its own provider key; the
 * provider's stored key is never read: GetChatForRunByID). Both say who initiated the turn; without
 * an active initiating API key the call fails closed.
 */
function gatewayModel(
  routing: Extract<ModelRouting, { mode: "gateway" }>,
  src: ModelSource,
  userKey: string | undefined,
): ResolvedModel {
  if (!src.initiator_key_active || !src.initiator_api_key_id) {
    throw new TurnError(
      "auth",
      "This turn has no active API key to route through the model gateway.",
      "The API key that sent the message was deleted or has expired; send the message again.",
    );
  }
  const headers: Record<string, string> = {
    "x-pgchatd-user-id": src.owner_id,
    "x-pgchatd-api-key-id": src.initiator_api_key_id,
  };
  const secrets: string[] = [];
  if (src.key_source === "user") {
    if (!userKey) throw new TurnError("missing_key", "Your API key for the provider is missing.");
    headers["x-pgchatd-governance-token"] = delegatedMarker;
    if (src.provider === "anthropic") headers["x-api-key"] = userKey;
    else headers.authorization = `Bearer ${userKey}`;
    secrets.push(userKey);
  } else if (routing.token) {
    headers["x-pgchatd-governance-token"] = routing.token;
    secrets.push(routing.token);
  }
  return {
    model: createOpenAICompatible({
      name: "gateway",
      baseURL: routing.url,
      headers,
      includeUsage: true,
    }).chatModel(`${src.provider}/${src.model}`),
    provider: src.provider,
    secrets,
  };
}
