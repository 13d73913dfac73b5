import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createGithubForge, githubHostFor } from "../../src/forge/github.ts";
import { parseRemote } from "../../src/forge/remote.ts";
import { type FakeForge, fakeForge } from "../../support/fake_forge.ts";

/*
 * The forge client (src/forge/github.ts) against a GitHub-shaped server on loopback
 * (support/fake_forge.ts), and the remote URL forms it accepts (src/forge/remote.ts).
 */

describe("remote URLs", () => {
  it("parses https, ssh and scp-like remotes into host, owner and repo", () => {
    const acme = { host: "github.com", owner: "acme", repo: "app" };
    for (const remote of [
      "https://github.com/acme/app.git",
      "https://github.com/acme/app",
      "https://github.com/acme/app/",
      "https://GitHub.com/acme/app.git",
      "https://x-access-token:s3cret@github.com/acme/app.git",
      "http://github.com:8080/acme/app",
      "ssh://git@github.com/acme/app.git",
      "ssh://git@github.com:22/acme/app.git",
      "git@github.com:acme/app.git",
      "github.com:acme/app",
    ]) {
      expect(parseRemote(remote), remote).toEqual(acme);
    }
  });

  it("names no repository for other shapes: nested groups, a bare host, a local path", () => {
    for (const remote of [
      "https://gitlab.com/group/sub/app.git",
      "https://github.com/acme",
      "https://github.com",
      "/srv/git/app.git",
      "file:///srv/git/app.git",
      "app",
    ]) {
      expect(parseRemote(remote), remote).toBeNull();
    }
  });

  it("serves github.com remotes from api.github.com, and an Enterprise host from its own API", () => {
    expect(githubHostFor("https://api.github.com")).toBe("github.com");
    expect(githubHostFor("https://ghe.example.com/api/v3")).toBe("ghe.example.com");
  });
});

describe("the GitHub forge client", () => {
  let fake: FakeForge;
  const repo = { host: "github.com", owner: "acme", repo: "app" };
  const forge = () => createGithubForge({ apiUrl: fake.url, host: "github.com", token: "deploy" });

  beforeAll(async () => {
    fake = await fakeForge();
  });
  afterAll(() => fake.close());
  beforeEach(() => {
    fake.pulls = [];
    fake.requests = [];
    fake.fail = undefined;
  });

  it("finds the branch's newest pull request with its size, draft flag and state", async () => {
    fake.pulls.push(
      { owner: "acme", repo: "app", branch: "feat", number: 3, state: "closed" },
      {
        owner: "acme",
        repo: "app",
        branch: "feat",
        number: 9,
        title: "Add the feature",
        draft: true,
        additions: 120,
        deletions: 7,
        changed_files: 4,
      },
      { owner: "acme", repo: "app", branch: "other", number: 10 },
    );
    expect(await forge().resolve(repo, "feat", {})).toEqual({
      outcome: "found",
      pr: {
        url: "https://github.com/acme/app/pull/9",
        state: "open",
        title: "Add the feature",
        draft: true,
        number: 9,
        additions: 120,
        deletions: 7,
        changed_files: 4,
        changes_requested: false,
      },
    });
    expect(fake.requests[0]!.path).toContain("head=acme%3Afeat");
    expect(fake.requests[0]!.path).toContain("state=all");
  });

  it("reports merged and closed pull requests as such", async () => {
    fake.pulls.push(
      { owner: "acme", repo: "app", branch: "m", number: 1, state: "closed", merged: true },
      { owner: "acme", repo: "app", branch: "c", number: 2, state: "closed" },
    );
    const m = await forge().resolve(repo, "m", {});
    const c = await forge().resolve(repo, "c", {});
    expect(m.outcome === "found" && m.pr.state).toBe("merged");
    expect(c.outcome === "found" && c.pr.state).toBe("closed");
  });

  it("counts changes requested by a reviewer's latest verdict, across pages of reviews", async () => {
    const reviews = [
      { user: 1, state: "CHANGES_REQUESTED" },
      ...Array.from({ length: 150 }, () => ({ user: 2, state: "COMMENTED" })),
      { user: 1, state: "APPROVED" },
      { user: 3, state: "CHANGES_REQUESTED" },
    ];
    fake.pulls.push({ owner: "acme", repo: "app", branch: "r", number: 5, reviews });
    const requested = await forge().resolve(repo, "r", {});
    expect(requested.outcome === "found" && requested.pr.changes_requested).toBe(true);
    // Reviewer 3 approves later; reviewer 1 approved already: nobody asks for changes now.
    reviews.push({ user: 3, state: "APPROVED" });
    const approved = await forge().resolve(repo, "r", {});
    expect(approved.outcome === "found" && approved.pr.changes_requested).toBe(false);
  });

  it("answers no_pr for a branch without a pull request", async () => {
    expect(await forge().resolve(repo, "nothing", {})).toEqual({ outcome: "no_pr" });
  });

  it("sends the owner's token when given, else the deployment's", async () => {
    await forge().resolve(repo, "x", { token: "mine" });
    await forge().resolve(repo, "x", {});
    expect(fake.requests.map((r) => r.authorization)).toEqual(["Bearer mine", "Bearer deploy"]);
  });

  it("turns 401, 404 and 5xx into errors that carry the status and the forge's message", async () => {
    for (const [status, message] of [
      [401, "Bad credentials"],
      [404, "Not Found"],
      [502, "Bad gateway"],
    ] as const) {
      fake.fail = { status, message };
      expect(await forge().resolve(repo, "x", {})).toEqual({
        outcome: "error",
        error: `forge answered ${status}: ${message}`,
      });
    }
  });

  it("turns 429 and an exhausted 403 into a rate limit until the forge's reset", async () => {
    const before = Date.now();
    fake.fail = { status: 429, headers: { "retry-after": "30" } };
    const retry = await forge().resolve(repo, "x", {});
    expect(retry.outcome).toBe("rate_limited");
    const waited = retry.outcome === "rate_limited" ? retry.until.getTime() - before : 0;
    expect(waited).toBeGreaterThanOrEqual(30_000);
    expect(waited).toBeLessThan(40_000);

    const reset = Math.floor(Date.now() / 1000) + 600;
    fake.fail = {
      status: 403,
      headers: { "x-ratelimit-remaining": "0", "x-ratelimit-reset": String(reset) },
    };
    const limited = await forge().resolve(repo, "x", {});
    expect(limited.outcome === "rate_limited" && limited.until.getTime()).toBe(reset * 1000);

    // A 403 that is not a rate limit (no access) is an error.
    fake.fail = { status: 403, message: "Resource not accessible" };
    expect((await forge().resolve(repo, "x", {})).outcome).toBe("error");
  });

  it("never asks a forge for a host it does not serve", async () => {
    const other = { host: "gitlab.com", owner: "acme", repo: "app" };
    expect(await forge().resolve(other, "x", {})).toEqual({
      outcome: "error",
      error: "no forge is configured for gitlab.com",
    });
    expect(fake.requests).toEqual([]);
  });

  it("gives up on a forge that does not answer within its timeout, as an error", async () => {
    const release = fake.hold();
    try {
      const slow = createGithubForge({ apiUrl: fake.url, host: "github.com", timeoutMs: 200 });
      const r = await slow.resolve(repo, "x", {});
      expect(r.outcome).toBe("error");
    } finally {
      release();
    }
  });
});
