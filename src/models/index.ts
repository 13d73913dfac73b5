export type { ChatError, ChatErrorKind } from "./chat_error.ts";
export { chatErrorKinds, classifyError } from "./chat_error.ts";
export type { RegenerateResult } from "./chat_titles.ts";
export { regenerateChatTitle } from "./chat_titles.ts";
export { localModel } from "./local_model.ts";
export type { ModelRouting, ModelSource, Models, ResolvedModel } from "./providers.ts";
export { createModels } from "./providers.ts";
