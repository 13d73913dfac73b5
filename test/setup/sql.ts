/** The error `fn` rejects with (a Postgres error: its SQLSTATE and message); fails if it resolves. */
export async function sqlError(
  fn: () => Promise<unknown>,
): Promise<{ code: string; message: string }> {
  try {
    await fn();
  } catch (err) {
    return err as { code: string; message: string };
  }
  throw new Error("expected an error");
}
