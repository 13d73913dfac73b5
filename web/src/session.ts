import { createClient, type PgchatdClient } from "../../packages/client/src/index.ts";

/*
 * The signed-in user's token: kept in localStorage for the API calls (writes must send it in a
 * header, docs/api.md "Authentication") and as the coder_session_token cookie (SameSite=Strict),
 * which lets the browser itself fetch what the page links to (files).
 */

const key = "pgchatd.token";

export function savedToken(): string | null {
  return localStorage.getItem(key);
}

export function signIn(token: string) {
  localStorage.setItem(key, token);
  // biome-ignore lint/suspicious/noDocumentCookie: the Cookie Store API is not in every browser.
  document.cookie = `coder_session_token=${encodeURIComponent(token)}; path=/; SameSite=Strict`;
}

export function signOut() {
  localStorage.removeItem(key);
  // biome-ignore lint/suspicious/noDocumentCookie: the Cookie Store API is not in every browser.
  document.cookie = "coder_session_token=; path=/; max-age=0; SameSite=Strict";
}

export function clientFor(token: string): PgchatdClient {
  return createClient({ baseUrl: location.origin, token });
}
