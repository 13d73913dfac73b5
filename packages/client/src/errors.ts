import type { components } from "./schema.ts";

/** Every error body pgchatd answers with (docs/api.md "Errors"). */
export type ErrorBody = components["schemas"]["Error"];

/** The figures of a spend limit's 409 (docs/api.md "Spend limits"). */
export interface SpendLimit {
  spent_micros: number;
  limit_micros: number;
  resets_at: string;
}

/**
 * A response outside 2xx. `status` and `body` are the server's; `validations` lists the fields a
 * 400 refused, and `spendLimit` is set on the 409 of a reached spend limit.
 */
export class PgchatdError extends Error {
  override readonly name = "PgchatdError";

  constructor(
    readonly status: number,
    readonly body: ErrorBody,
    readonly method: string,
    readonly path: string,
  ) {
    super(`${method} ${path}: ${status} ${body.message}${body.detail ? ` (${body.detail})` : ""}`);
  }

  get validations(): { field: string; detail: string }[] {
    return this.body.validations ?? [];
  }

  get spendLimit(): SpendLimit | undefined {
    const { spent_micros, limit_micros, resets_at } = this.body;
    if (this.status !== 409 || spent_micros === undefined || limit_micros === undefined) {
      return undefined;
    }
    return { spent_micros, limit_micros, resets_at: resets_at ?? "" };
  }
}

/** The body of a failed response as an ErrorBody, whatever the server (or a proxy) sent. */
export async function errorBodyOf(res: Response): Promise<ErrorBody> {
  const text = await res.text().catch(() => "");
  try {
    const json = JSON.parse(text) as Partial<ErrorBody>;
    if (typeof json?.message === "string") return json as ErrorBody;
  } catch {
    // Not JSON: a proxy's page, or an empty body.
  }
  return { message: text.slice(0, 500) || res.statusText || `HTTP ${res.status}` };
}
