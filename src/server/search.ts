import { z } from "zod";
import { ApiError } from "./errors.ts";

/*
 * The chat list search: the `q` and repeated `label` query parameters of
 * GET /api/experimental/chats. Pure parsing, no database; every failure is a 400 ApiError whose
 * message names the offending term, so hostile input can never become a 500.
 *
 * q grammar: terms separated by runs of whitespace (space, tab, CR, LF, FF, VT), ANDed.
 *   term  = key ":" value
 *   key   = [A-Za-z0-9_]+, case-insensitive, each key at most once
 *   value = '"' chars '"'   (\" is a quote, \\ a backslash, any other character is literal;
 *                           must be followed by whitespace or the end)
 *         | a run of non-whitespace characters without quotes (colons are fine)
 */

export const prStatuses = ["draft", "open", "merged", "closed"] as const;
export type PrStatus = (typeof prStatuses)[number];

export interface ChatSearch {
  title?: string;
  archived: boolean;
  hasUnread?: boolean;
  pr?: number;
  repo?: string;
  prTitle?: string;
  prStatus?: PrStatus;
  diffUrl?: string;
}

/** The keys q understands, in the order error messages list them. */
export const searchKeys = [
  "title",
  "archived",
  "has_unread",
  "pr",
  "repo",
  "pr_title",
  "pr_status",
  "diff_url",
] as const;
export type SearchKey = (typeof searchKeys)[number];

export const maxSearchLength = 2048;
export const maxSearchValueLength = 256;
export const maxPrNumber = 2147483647;

export const maxLabels = 50;
export const maxLabelKeyLength = 64;
export const maxLabelValueLength = 256;
export const labelKeyPattern = /^[a-zA-Z0-9][a-zA-Z0-9._/-]*$/;

const knownKeys = `Known keys: ${searchKeys.join(", ")}.`;

/** User input quoted for a message: JSON escapes control characters and lone surrogates. */
function show(text: string, max = 80): string {
  return JSON.stringify(text.length > max ? `${text.slice(0, max)}…` : text);
}

function invalid(field: "q" | "label", message: string): ApiError {
  return new ApiError(400, message, undefined, [{ field, detail: message }]);
}

const qError = (message: string) => invalid("q", message);

// ---------------------------------------------------------------------------------------------
// q

const isSpace = (c: string | undefined) =>
  c === " " || c === "\t" || c === "\n" || c === "\r" || c === "\f" || c === "\v";

interface Term {
  key: string;
  value: string;
  /** The term as written, for messages. */
  raw: string;
}

/** Splits q into terms; throws on anything that is not key:value syntax. */
function lex(q: string): Term[] {
  const terms: Term[] = [];
  const n = q.length;
  const wordEnd = (from: number) => {
    let j = from;
    while (j < n && !isSpace(q[j])) j++;
    return j;
  };
  let i = 0;
  while (i < n) {
    while (i < n && isSpace(q[i])) i++;
    if (i >= n) break;
    const start = i;

    while (i < n && !isSpace(q[i]) && q[i] !== ":" && q[i] !== '"') i++;
    if (q[i] === '"') {
      throw qError(
        `Unexpected quote in q (term ${show(q.slice(start, wordEnd(i)))}); quotes may only ` +
          `surround a whole value, as in title:"two words".`,
      );
    }
    if (q[i] !== ":") {
      throw qError(
        `Search term ${show(q.slice(start, i))} in q is not key:value; ` +
          `write e.g. title:"some words". ${knownKeys}`,
      );
    }
    const key = q.slice(start, i);
    i++; // the colon

    let value = "";
    if (q[i] === '"') {
      i++;
      let closed = false;
      while (i < n) {
        const c = q[i]!;
        const next = q[i + 1];
        if (c === "\\" && (next === '"' || next === "\\")) {
          value += next;
          i += 2;
        } else if (c === '"') {
          closed = true;
          i++;
          break;
        } else {
          value += c;
          i++;
        }
      }
      if (!closed) throw qError(`Unterminated quote in q (term ${show(q.slice(start))}).`);
      if (i < n && !isSpace(q[i])) {
        throw qError(
          `Unexpected text after the closing quote in q (term ${show(q.slice(start, wordEnd(i)))}).`,
        );
      }
    } else {
      const valueStart = i;
      while (i < n && !isSpace(q[i])) {
        if (q[i] === '"') {
          throw qError(
            `Unexpected quote in q (term ${show(q.slice(start, wordEnd(i)))}); quotes may only ` +
              `surround a whole value, as in title:"two words".`,
          );
        }
        i++;
      }
      value = q.slice(valueStart, i);
    }
    terms.push({ key, value, raw: q.slice(start, i) });
  }
  return terms;
}

const isSearchKey = (key: string): key is SearchKey =>
  (searchKeys as readonly string[]).includes(key);

function parseBoolean(key: string, value: string): boolean {
  const lower = value.toLowerCase();
  if (lower === "true") return true;
  if (lower === "false") return false;
  throw qError(`Search key "${key}" in q must be true or false, not ${show(value)}.`);
}

function parsePr(value: string): number {
  const pr = /^[0-9]+$/.test(value) ? Number(value) : Number.NaN;
  if (!(pr >= 1 && pr <= maxPrNumber)) {
    throw qError(
      `Search key "pr" in q must be a pull request number from 1 to ${maxPrNumber}, ` +
        `not ${show(value)}.`,
    );
  }
  return pr;
}

function parsePrStatus(value: string): PrStatus {
  const lower = value.toLowerCase();
  const status = prStatuses.find((s) => s === lower);
  if (!status) {
    throw qError(
      `Search key "pr_status" in q must be one of ${prStatuses.join(", ")}, not ${show(value)}.`,
    );
  }
  return status;
}

function parseDiffUrl(value: string): string {
  let url: URL | undefined;
  try {
    url = new URL(value);
  } catch {
    url = undefined;
  }
  if (!url || (url.protocol !== "http:" && url.protocol !== "https:") || url.hostname === "") {
    throw qError(
      `Search key "diff_url" in q must be an http or https URL with a host, not ${show(value)}.`,
    );
  }
  return value; // As typed: SQL compares case-insensitively.
}

/** Parses the q parameter; empty or absent means no filters (and not archived). */
export function parseChatSearch(q: string | undefined): ChatSearch {
  const search: ChatSearch = { archived: false };
  if (q === undefined) return search;
  if (q.length > maxSearchLength) {
    throw qError(`Search q is too long (${q.length} characters); at most ${maxSearchLength}.`);
  }
  if (q.includes("\0")) throw qError("Search q must not contain NUL characters.");

  const seen = new Set<SearchKey>();
  for (const { key: typed, value, raw } of lex(q)) {
    if (typed === "") {
      throw qError(`Search term ${show(raw)} in q has no key before the colon. ${knownKeys}`);
    }
    // ASCII check first, so Unicode case mapping can never turn some other key into a known one.
    const key = /^[A-Za-z0-9_]+$/.test(typed) ? typed.toLowerCase() : "";
    if (!isSearchKey(key)) {
      throw qError(`Unknown search key ${show(typed)} in q (term ${show(raw)}). ${knownKeys}`);
    }
    if (seen.has(key)) {
      throw qError(`Search key "${key}" appears more than once in q (term ${show(raw)}).`);
    }
    seen.add(key);
    if (value === "")
      throw qError(`Search key "${key}" in q has an empty value (term ${show(raw)}).`);
    if (value.length > maxSearchValueLength) {
      throw qError(
        `Value of search key "${key}" in q is too long (${value.length} characters); ` +
          `at most ${maxSearchValueLength}.`,
      );
    }
    switch (key) {
      case "title":
        search.title = value;
        break;
      case "archived":
        search.archived = parseBoolean(key, value);
        break;
      case "has_unread":
        search.hasUnread = parseBoolean(key, value);
        break;
      case "pr":
        search.pr = parsePr(value);
        break;
      case "repo":
        search.repo = value;
        break;
      case "pr_title":
        search.prTitle = value;
        break;
      case "pr_status":
        search.prStatus = parsePrStatus(value);
        break;
      case "diff_url":
        search.diffUrl = parseDiffUrl(value);
        break;
    }
  }
  return search;
}

// ---------------------------------------------------------------------------------------------
// Labels

/** Why a label key is invalid, or undefined when it is fine. */
function labelKeyProblem(key: string): string | undefined {
  if (key.length === 0) return "label key must not be empty";
  if (key.length > maxLabelKeyLength) {
    return `label key ${show(key)} is longer than ${maxLabelKeyLength} characters`;
  }
  if (!labelKeyPattern.test(key)) {
    return `label key ${show(key)} must match ${labelKeyPattern.source}`;
  }
  return undefined;
}

/** Why a label value is invalid, or undefined when it is fine. */
function labelValueProblem(key: string, value: unknown): string | undefined {
  if (typeof value !== "string") return `label ${show(key)} value must be a string`;
  if (value.length === 0) return `label ${show(key)} value must not be empty`;
  if (value.length > maxLabelValueLength) {
    return `label ${show(key)} value is longer than ${maxLabelValueLength} characters`;
  }
  // Postgres text and jsonb cannot hold NUL.
  if (value.includes("\0")) return `label ${show(key)} value must not contain NUL characters`;
  return undefined;
}

const isPlainObject = (v: unknown): v is Record<string, unknown> => {
  if (typeof v !== "object" || v === null || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
};

/**
 * A chat's labels in create/update bodies: at most 50, keys 1..64 characters matching
 * labelKeyPattern, values 1..256 characters. Checked on the raw object (not z.record) so that
 * every message names the offending key and an own "__proto__" key is rejected, not dropped.
 */
export const labelsSchema = z
  .custom<Record<string, string>>(isPlainObject, {
    error: "labels must be an object of string keys to string values",
  })
  .superRefine((labels, ctx) => {
    const keys = Object.keys(labels);
    if (keys.length > maxLabels) {
      ctx.addIssue({
        code: "custom",
        message: `at most ${maxLabels} labels are allowed (got ${keys.length})`,
      });
    }
    for (const key of keys) {
      const problem = labelKeyProblem(key) ?? labelValueProblem(key, labels[key]);
      if (problem) ctx.addIssue({ code: "custom", path: [key], message: problem });
    }
  })
  .transform((labels): Record<string, string> => Object.fromEntries(Object.entries(labels)))
  // The custom check has no JSON Schema of its own: the OpenAPI document states the same rules,
  // so clients (and the typed client's types) see them.
  .meta({
    type: "object",
    description: `At most ${maxLabels} labels; keys 1-${maxLabelKeyLength} characters, values 1-${maxLabelValueLength}.`,
    maxProperties: maxLabels,
    propertyNames: {
      minLength: 1,
      maxLength: maxLabelKeyLength,
      pattern: labelKeyPattern.source,
    },
    additionalProperties: { type: "string", minLength: 1, maxLength: maxLabelValueLength },
  });

/**
 * Parses repeated `label=key:value` filters (ANDed) into an object for jsonb `@>` containment.
 * Each is split at its first colon, so values may contain colons.
 */
export function parseLabelFilters(values: string[]): Record<string, string> {
  if (values.length > maxLabels) {
    throw invalid(
      "label",
      `Too many label filters (${values.length}); at most ${maxLabels}, as a chat has no more.`,
    );
  }
  const filters = new Map<string, string>();
  for (const filter of values) {
    const colon = filter.indexOf(":");
    if (colon < 0) {
      throw invalid("label", `Label filter ${show(filter)} must be key:value.`);
    }
    const key = filter.slice(0, colon);
    const value = filter.slice(colon + 1);
    const problem = labelKeyProblem(key) ?? labelValueProblem(key, value);
    if (problem) throw invalid("label", `Invalid label filter ${show(filter)}: ${problem}.`);
    const previous = filters.get(key);
    if (previous !== undefined && previous !== value) {
      throw invalid(
        "label",
        `Label ${show(key)} is filtered by two different values (${show(previous)} and ` +
          `${show(value)}); no chat can match both.`,
      );
    }
    filters.set(key, value);
  }
  // fromEntries defines own properties, so no key can reach Object.prototype.
  return Object.fromEntries(filters);
}
