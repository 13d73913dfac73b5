/*
 * Git remote URLs as agents report them (`git remote get-url origin`), in the forms git accepts:
 *   https://github.com/acme/app.git      http://user:secret@host:8080/acme/app
 *   ssh://git@github.com/acme/app.git     ssh://git@host:2222/acme/app
 *   git@github.com:acme/app.git           github.com:acme/app   (scp-like)
 * The host is found as the forge_host column of chat_diff_statuses finds it (migration 00030), so
 * a rate limit recorded for a host matches the rows this parser sends there.
 */

export interface RepoRef {
  /** Lower case, without port or credentials. */
  host: string;
  owner: string;
  repo: string;
}

const schemeForm = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/(?:[^@/]+@)?([^:/]+)(?::\d*)?\/(.*)$/;
const scpForm = /^(?:[^@/]+@)?([^:/]+):(?!\/\/)(.*)$/;

/** The forge repository of a remote URL; null when it names no `owner/repo` on a host. */
export function parseRemote(remote: string): RepoRef | null {
  const m = schemeForm.exec(remote) ?? scpForm.exec(remote);
  if (!m) return null;
  const segments = m[2]!
    .replace(/\/+$/, "")
    .replace(/\.git$/, "")
    .split("/")
    .filter((s) => s !== "");
  // A GitHub repository is exactly owner/repo; deeper paths are another forge's groups.
  if (segments.length !== 2) return null;
  const [owner, repo] = segments as [string, string];
  return { host: m[1]!.toLowerCase(), owner, repo };
}
