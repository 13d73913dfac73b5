import type { Chat } from "../../packages/client/src/index.ts";

/** The sidebar's order (docs/api.md "GET /"): pinned by pin_order, then newest first. */
export function sidebarOrder(a: Chat, b: Chat): number {
  const pa = a.pin_order > 0;
  const pb = b.pin_order > 0;
  if (pa !== pb) return pa ? -1 : 1;
  if (pa && pb) return a.pin_order - b.pin_order;
  if (a.updated_at !== b.updated_at) return a.updated_at < b.updated_at ? 1 : -1;
  return a.id < b.id ? 1 : -1;
}

/**
 * A watch event's chat replaces ours when it is as new or newer (docs/api.md "Streams": an equal
 * version may carry a new diff status).
 */
export function newer(current: Chat | undefined, next: Chat): boolean {
  return !current || next.version >= current.version;
}
