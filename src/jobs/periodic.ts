/*
 * The schedule the background jobs share (event pruning, housekeeping): a run every interval, one
 * at a time per process. runOnce joins a run already under way instead of starting a second, so
 * the CLI's `--once`, the timer and tests never overlap; stop() waits for the run in progress.
 */

export interface Periodic<T> {
  runOnce(): Promise<T>;
  stop(): Promise<void>;
}

/** Runs `run` every `intervalMs` (the first time after one interval) until stopped. */
export function startPeriodic<T>(
  run: () => Promise<T>,
  opts: { intervalMs: number; onError: (err: unknown) => void },
): Periodic<T> {
  let running: Promise<T> | undefined;
  const runOnce = () => {
    running ??= run().finally(() => {
      running = undefined;
    });
    return running;
  };
  const timer = setInterval(() => {
    runOnce().catch(opts.onError);
  }, opts.intervalMs);
  // A job never keeps the process alive on its own.
  timer.unref();
  return {
    runOnce,
    async stop() {
      clearInterval(timer);
      await running?.catch(() => {});
    },
  };
}
