// The harness every matrix-js-sdk script run by the Go tests shares
// (internal/homeserver/jssdk_test.go, runJSSDK). The Go test starts the
// servers and registers the users; a script gets them as JSON on stdin:
//
//   {"accounts": [{"url", "server_name", "user_id", "access_token", "device_id"}, ...],
//    ...fields of the test's own}
//
// and ends by printing one line "RESULT <json>", which the Go test decodes
// and checks. Anything else on stdout or stderr is shown only on failure.
import * as sdk from "matrix-js-sdk";
import { logger } from "matrix-js-sdk/lib/logger.js";

// The sdk logs every request at debug level; the test log needs warnings.
logger.setLevel(process.env.MYELIN_JSSDK_DEBUG ? "debug" : "warn");

/** Reads the test's input from stdin. */
export async function readInput() {
  const chunks = [];
  for await (const c of process.stdin) chunks.push(c);
  return JSON.parse(Buffer.concat(chunks).toString("utf8"));
}

/**
 * Creates a client for account and starts it, resolving once its first
 * sync is done. opts are passed to startClient (threadSupport is on unless
 * turned off).
 */
export async function startClient(account, opts = {}) {
  const client = sdk.createClient({
    baseUrl: account.url,
    userId: account.user_id,
    accessToken: account.access_token,
    deviceId: account.device_id,
  });
  const prepared = new Promise((resolve, reject) => {
    client.on(sdk.ClientEvent.Sync, (state, _prev, data) => {
      if (state === "PREPARED") resolve();
      if (state === "ERROR") reject(new Error(`${account.user_id}: sync failed: ${data?.error}`));
    });
  });
  await client.startClient({ threadSupport: true, initialSyncLimit: 20, ...opts });
  await withTimeout(prepared, `${account.user_id}'s first sync`);
  return client;
}

/** Polls cond (which may be async) until it returns a truthy value, which it returns. */
export async function waitFor(what, cond, timeoutMs = 60000) {
  const deadline = Date.now() + timeoutMs;
  let lastErr;
  while (Date.now() < deadline) {
    try {
      const v = await cond();
      if (v) return v;
    } catch (e) {
      lastErr = e;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}${lastErr ? `: ${lastErr}` : ""}`);
}

function withTimeout(p, what, ms = 60000) {
  let timer;
  return Promise.race([
    p,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/**
 * Runs a script: fn gets the input and returns the result to print. The
 * clients it registers with track() are stopped at the end.
 */
export async function run(fn) {
  const clients = [];
  const track = (c) => (clients.push(c), c);
  let code = 0;
  try {
    const result = await fn(await readInput(), track);
    process.stdout.write(`\nRESULT ${JSON.stringify(result)}\n`);
  } catch (e) {
    console.error(e?.stack ?? String(e));
    code = 1;
  } finally {
    for (const c of clients) c.stopClient();
  }
  process.exit(code);
}
