import { request as octokitRequest } from "@octokit/request";
import { RequestError } from "@octokit/request-error";
import type { RepoRef } from "./remote.ts";

/*
 * The forge client: a branch's pull request through GitHub's REST API (github.com or GitHub
 * Enterprise, PGCHATD_GITHUB_API_URL). @octokit/request does the requests (URL templates, auth
 * header, typed errors with the response headers); the backoffs are the database's
 * (chat_diff_status_record_refresh), so nothing here retries.
 */

export interface PullRequest {
  url: string;
  state: "open" | "closed" | "merged";
  title: string;
  draft: boolean;
  number: number;
  additions: number;
  deletions: number;
  changed_files: number;
  changes_requested: boolean;
}

/** What one refresh learned; `outcome` is chat_diff_status_record_refresh's. */
export type Resolution =
  | { outcome: "found"; pr: PullRequest }
  | { outcome: "no_pr" }
  | { outcome: "error"; error: string }
  | { outcome: "rate_limited"; error: string; until: Date };

export interface Forge {
  /** The web host of remotes this forge serves (github.com), lower case. */
  host: string;
  /** The newest pull request whose head is `branch` of `repo`, with its review state. */
  resolve(
    repo: RepoRef,
    branch: string,
    opts: { token?: string | undefined; signal?: AbortSignal | undefined },
  ): Promise<Resolution>;
}

export const defaultGithubApiUrl = "https://api.github.com";

/** A forge that answers slowly must not hold a claimed batch (or a GET /{chat}) for long. */
export const forgeRequestTimeoutMs = 10_000;
/** Without a reset header a rate-limited forge is left alone this long. */
const defaultRateLimitMs = 60_000;
/** A reset header further out than this is not trusted: the rows would look forgotten. */
const maxRateLimitMs = 60 * 60_000;
/** Reviews are read in pages of the API's maximum; a pull request with more is rare. */
const reviewsPerPage = 100;
const maxReviewPages = 10;

/** The web host of remotes for an API base URL: api.github.com serves github.com. */
export function githubHostFor(apiUrl: string): string {
  const host = new URL(apiUrl).hostname.toLowerCase();
  return host === "api.github.com" ? "github.com" : host;
}

interface GithubPull {
  number: number;
  html_url: string;
  state: string;
  title: string;
  draft?: boolean;
  merged_at: string | null;
  merged?: boolean;
  additions?: number;
  deletions?: number;
  changed_files?: number;
}

interface GithubReview {
  user: { id: number } | null;
  state: string;
}

/** Whether a reviewer's latest verdict asks for changes (comments are not verdicts). */
function changesRequested(reviews: GithubReview[]): boolean {
  const latest = new Map<number, string>();
  for (const r of reviews) {
    if (!r.user) continue;
    if (r.state === "APPROVED" || r.state === "CHANGES_REQUESTED" || r.state === "DISMISSED") {
      latest.set(r.user.id, r.state);
    }
  }
  return [...latest.values()].includes("CHANGES_REQUESTED");
}

function header(err: RequestError, name: string): string | undefined {
  const v = err.response?.headers?.[name];
  return v === undefined || v === null ? undefined : String(v);
}

/** A failed request as a refresh outcome: rate limits by their reset, the rest as errors. */
export function failureOf(err: unknown, now = Date.now()): Resolution {
  if (!(err instanceof RequestError)) {
    return { outcome: "error", error: `forge request failed: ${(err as Error)?.message ?? err}` };
  }
  const remaining = header(err, "x-ratelimit-remaining");
  const retryAfter = header(err, "retry-after");
  const reset = header(err, "x-ratelimit-reset");
  const limited =
    err.status === 429 || (err.status === 403 && (remaining === "0" || retryAfter !== undefined));
  if (limited) {
    let wait = defaultRateLimitMs;
    if (retryAfter !== undefined && /^\d+$/.test(retryAfter)) wait = Number(retryAfter) * 1000;
    else if (reset !== undefined && /^\d+$/.test(reset)) wait = Number(reset) * 1000 - now;
    wait = Math.min(Math.max(wait, 1000), maxRateLimitMs);
    return {
      outcome: "rate_limited",
      error: `forge rate limited (${err.status})`,
      until: new Date(now + wait),
    };
  }
  // The API's message ("Bad credentials", "Not Found"), never the request (it has the token).
  const message = (err.response?.data as { message?: unknown } | undefined)?.message;
  const detail = typeof message === "string" ? `: ${message.slice(0, 200)}` : "";
  return { outcome: "error", error: `forge answered ${err.status}${detail}` };
}

export function createGithubForge(opts: {
  apiUrl?: string | undefined;
  /** The web host of its remotes; default from the API URL (githubHostFor). */
  host?: string | undefined;
  /** The deployment's token, used when the chat's owner has none of their own. */
  token?: string | undefined;
  timeoutMs?: number | undefined;
}): Forge {
  const apiUrl = (opts.apiUrl ?? defaultGithubApiUrl).replace(/\/+$/, "");
  const host = (opts.host ?? githubHostFor(apiUrl)).toLowerCase();
  const timeoutMs = opts.timeoutMs ?? forgeRequestTimeoutMs;
  const base = octokitRequest.defaults({
    baseUrl: apiUrl,
    headers: { "user-agent": "pgchatd", "x-github-api-version": "2022-11-28" },
  });

  return {
    host,
    async resolve(repo, branch, { token, signal }) {
      if (repo.host !== host) {
        return { outcome: "error", error: `no forge is configured for ${repo.host}` };
      }
      const auth = token ?? opts.token;
      const timeout = AbortSignal.timeout(timeoutMs);
      const request = base.defaults({
        headers: auth ? { authorization: `Bearer ${auth}` } : {},
        request: { signal: signal ? AbortSignal.any([signal, timeout]) : timeout },
      });
      try {
        const pulls = await request("GET /repos/{owner}/{repo}/pulls", {
          owner: repo.owner,
          repo: repo.repo,
          head: `${repo.owner}:${branch}`,
          state: "all",
          sort: "created",
          direction: "desc",
          per_page: 1,
        });
        const first = (pulls.data as GithubPull[])[0];
        if (!first) return { outcome: "no_pr" };
        // The list omits the diff's size; the pull request itself has it.
        const { data: pull } = (await request("GET /repos/{owner}/{repo}/pulls/{pull_number}", {
          owner: repo.owner,
          repo: repo.repo,
          pull_number: first.number,
        })) as { data: GithubPull };
        const reviews: GithubReview[] = [];
        for (let page = 1; page <= maxReviewPages; page++) {
          const { data } = (await request("GET /repos/{owner}/{repo}/pulls/{pull_number}/reviews", {
            owner: repo.owner,
            repo: repo.repo,
            pull_number: first.number,
            per_page: reviewsPerPage,
            page,
          })) as { data: GithubReview[] };
          reviews.push(...data);
          if (data.length < reviewsPerPage) break;
        }
        const merged = pull.merged === true || pull.merged_at !== null;
        return {
          outcome: "found",
          pr: {
            url: pull.html_url,
            state: merged ? "merged" : pull.state === "closed" ? "closed" : "open",
            title: pull.title,
            draft: pull.draft === true,
            number: pull.number,
            additions: pull.additions ?? 0,
            deletions: pull.deletions ?? 0,
            changed_files: pull.changed_files ?? 0,
            changes_requested: changesRequested(reviews),
          },
        };
      } catch (err) {
        return failureOf(err);
      }
    },
  };
}
