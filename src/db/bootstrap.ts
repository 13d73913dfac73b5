import type pg from "pg";
import { insertAPIKey } from "../generated/api_keys.ts";
import { getOrganizationByName, insertOrganization } from "../generated/organizations.ts";
import { countUsers, insertUser } from "../generated/users.ts";
import { generateToken, hashSecret, parseToken } from "../lib/tokens.ts";

export const defaultOrganizationName = "default";
export const adminUsername = "admin";

export interface BootstrapResult {
  adminUserId: string;
  /** The admin's API key: the configured bootstrap token, or a generated one. */
  token: string;
  generated: boolean;
}

/**
 * On an empty database (no users), creates organization `default` and the site owner `admin`
 * with a never-expiring API key. Runs under the migration lock, so concurrent starts bootstrap
 * once. Returns null when the database already has users.
 */
export async function bootstrap(
  client: pg.Client,
  opts: { bootstrapToken?: string | undefined },
): Promise<BootstrapResult | null> {
  const users = await countUsers(client);
  if ((users?.count ?? 0) > 0) return null;

  const given = opts.bootstrapToken ? parseToken(opts.bootstrapToken) : null;
  if (opts.bootstrapToken && !given)
    throw new Error("PGCHATD_BOOTSTRAP_TOKEN does not have the token format");
  const key = given
    ? { ...given, token: opts.bootstrapToken!, hashedSecret: hashSecret(given.secret) }
    : generateToken();

  await client.query("BEGIN");
  try {
    const org =
      (await getOrganizationByName(client, { name: defaultOrganizationName })) ??
      (await insertOrganization(client, { name: defaultOrganizationName }));
    const admin = await insertUser(client, {
      username: adminUsername,
      name: "Administrator",
      email: null,
      roles: ["owner"],
      chat_spend_limit_micros: null,
      organization_ids: [org.id],
    });
    await insertAPIKey(client, {
      id: key.id,
      user_id: admin!.id,
      hashed_secret: key.hashedSecret,
      lifetime_seconds: null,
    });
    await client.query("COMMIT");
    return { adminUserId: admin!.id, token: key.token, generated: !given };
  } catch (err) {
    await client.query("ROLLBACK").catch(() => {});
    throw err;
  }
}
