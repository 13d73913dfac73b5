import http from "node:http";
import type { AddressInfo } from "node:net";

/*
 * A GitHub-shaped REST server on loopback: the three routes the forge client reads
 * (src/forge/github.ts), answering from an in-memory list of pull requests. Tests and the
 * `pr` benchmark point PGCHATD_GITHUB_API_URL at it; nothing reaches the network.
 *   GET /repos/{owner}/{repo}/pulls?head=owner:branch&state=all
 *   GET /repos/{owner}/{repo}/pulls/{number}
 *   GET /repos/{owner}/{repo}/pulls/{number}/reviews
 * `fail` answers a status instead (401, 404, 429 with reset headers, 5xx); `delayMs` slows every
 * answer; `hold()` keeps every answer back until its release is called. Every request is recorded with its authorization header.
 */

export interface FakePull {
  owner: string;
  repo: string;
  branch: string;
  number: number;
  title?: string;
  state?: "open" | "closed";
  merged?: boolean;
  draft?: boolean;
  additions?: number;
  deletions?: number;
  changed_files?: number;
  reviews?: { user: number; state: string }[];
}

export interface FakeFailure {
  status: number;
  headers?: Record<string, string>;
  message?: string;
}

export interface FakeForgeRequest {
  path: string;
  authorization: string | undefined;
}

export interface FakeForge {
  /** For PGCHATD_GITHUB_API_URL. */
  url: string;
  pulls: FakePull[];
  requests: FakeForgeRequest[];
  /** Answer this instead of the data while set. */
  fail: FakeFailure | undefined;
  delayMs: number;
  /** Answers nothing until the returned release is called (requests still arrive and wait). */
  hold(): () => void;
  close(): Promise<void>;
}

function pullJson(p: FakePull, host: string) {
  return {
    number: p.number,
    html_url: `https://${host}/${p.owner}/${p.repo}/pull/${p.number}`,
    state: p.state ?? "open",
    title: p.title ?? `Pull request ${p.number}`,
    draft: p.draft ?? false,
    merged: p.merged ?? false,
    merged_at: p.merged ? "2026-01-01T00:00:00Z" : null,
    additions: p.additions ?? 0,
    deletions: p.deletions ?? 0,
    changed_files: p.changed_files ?? 0,
    head: { ref: p.branch, label: `${p.owner}:${p.branch}` },
  };
}

/** `webHost` is the host its pull requests' URLs name (github.com). */
export async function fakeForge(webHost = "github.com"): Promise<FakeForge> {
  const forge: FakeForge = {
    url: "",
    pulls: [],
    requests: [],
    fail: undefined,
    delayMs: 0,
    hold: () => {
      let release = () => {};
      held = new Promise<void>((resolve) => {
        release = resolve;
      });
      return release;
    },
    close: async () => {},
  };
  let held: Promise<void> | undefined;
  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url ?? "/", "http://fake");
    forge.requests.push({
      path: url.pathname + url.search,
      authorization: req.headers.authorization,
    });
    if (held) await held;
    if (forge.delayMs > 0) await new Promise((r) => setTimeout(r, forge.delayMs));
    const send = (status: number, body: unknown, headers: Record<string, string> = {}) => {
      if (res.destroyed) return;
      res.writeHead(status, { "content-type": "application/json; charset=utf-8", ...headers });
      res.end(JSON.stringify(body));
    };
    if (forge.fail) {
      send(forge.fail.status, { message: forge.fail.message ?? "failed" }, forge.fail.headers);
      return;
    }
    const m = /^\/repos\/([^/]+)\/([^/]+)\/pulls(?:\/(\d+)(\/reviews)?)?$/.exec(url.pathname);
    if (!m) return send(404, { message: "Not Found" });
    const [, owner, repo, number, reviews] = m;
    const ofRepo = forge.pulls.filter((p) => p.owner === owner && p.repo === repo);
    if (!number) {
      const head = url.searchParams.get("head") ?? "";
      const branch = head.slice(head.indexOf(":") + 1);
      const found = ofRepo
        .filter((p) => p.branch === branch && head.startsWith(`${p.owner}:`))
        .sort((a, b) => b.number - a.number);
      return send(
        200,
        found
          .slice(0, Number(url.searchParams.get("per_page") ?? 30))
          .map((p) => pullJson(p, webHost)),
      );
    }
    const pull = ofRepo.find((p) => p.number === Number(number));
    if (!pull) return send(404, { message: "Not Found" });
    if (!reviews) return send(200, pullJson(pull, webHost));
    const page = Number(url.searchParams.get("page") ?? 1);
    const perPage = Number(url.searchParams.get("per_page") ?? 30);
    const all = (pull.reviews ?? []).map((r, i) => ({
      id: i + 1,
      user: { id: r.user },
      state: r.state,
    }));
    return send(200, all.slice((page - 1) * perPage, page * perPage));
  });
  server.listen(0, "127.0.0.1");
  await new Promise<void>((resolve) => server.once("listening", () => resolve()));
  forge.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  forge.close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return forge;
}
