#!/usr/bin/env node
// Client compatibility check: drives a Myelin homeserver with matrix-js-sdk.
//
// Usage: node js-sdk-check.mjs [baseUrl]      (default http://127.0.0.1:18448)
//        VERBOSE=1 node js-sdk-check.mjs ...  (log every HTTP exchange)
//
// Flow: register two users via m.login.dummy UIA, alice creates a room,
// invites bob, bob joins, both send 5 text messages (interleaved), bob runs the
// SDK sync loop and must see all 10 messages as Room.timeline events in send
// order, then /messages (dir=b) must return the same messages. Exits 0 on
// success, 1 on any failure (overall timeout 60 s). No crypto is initialised.

import * as sdk from "matrix-js-sdk";
import { logger as sdkLogger } from "matrix-js-sdk/lib/logger.js";

const BASE_URL = (process.argv[2] || "http://127.0.0.1:18448").replace(/\/+$/, "");
const OVERALL_TIMEOUT_MS = 60_000;
const SYNC_TIMEOUT_MS = 30_000;
const MESSAGES_PER_USER = 5;
const VERBOSE = !!process.env.VERBOSE;

// Keep the SDK's own logging down to warnings/errors (those may hint at
// response-shape problems), unless VERBOSE.
sdkLogger.setLevel?.(VERBOSE ? "debug" : "warn");

const RUN_ID = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
const clients = [];
let finished = false;

// ---------------------------------------------------------------------------
// HTTP exchange log (so a failure shows what the SDK sent and what came back)

const httpLog = [];
const HTTP_LOG_KEEP = 40;

function redactUrl(u) {
    return String(u).replace(/access_token=[^&]+/, "access_token=<redacted>");
}

function truncate(s, n = 600) {
    if (s == null) return s;
    s = String(s);
    return s.length > n ? `${s.slice(0, n)}… (${s.length} chars)` : s;
}

async function loggingFetch(input, init = {}) {
    const url = typeof input === "string" ? input : input.url ?? String(input);
    const method = init.method || "GET";
    const reqBody = typeof init.body === "string" ? init.body : init.body ? "<non-string body>" : "";
    const started = Date.now();
    let res;
    try {
        res = await fetch(input, init);
    } catch (e) {
        const entry = { method, url: redactUrl(url), reqBody, status: "NETWORK-ERROR", resBody: String(e), ms: Date.now() - started };
        record(entry);
        throw e;
    }
    let resBody = "";
    try {
        resBody = await res.clone().text();
    } catch (e) {
        resBody = `<unreadable: ${e}>`;
    }
    record({ method, url: redactUrl(url), reqBody: redactSecrets(reqBody), status: res.status, resBody, ms: Date.now() - started });
    return res;
}

function redactSecrets(body) {
    return body.replace(/("password"\s*:\s*")[^"]*"/g, '$1<redacted>"');
}

function record(entry) {
    httpLog.push(entry);
    if (httpLog.length > HTTP_LOG_KEEP) httpLog.shift();
    if (VERBOSE) {
        console.error(`[http] ${entry.method} ${entry.url} -> ${entry.status} (${entry.ms} ms)`);
        if (entry.reqBody) console.error(`[http]   req: ${truncate(entry.reqBody)}`);
        console.error(`[http]   res: ${truncate(entry.resBody)}`);
    }
    if (typeof entry.status === "number" && entry.status >= 400 && !entry.expected) {
        unexpectedStatuses.push(entry);
    }
}
const unexpectedStatuses = [];

function dumpHttpLog() {
    console.error(`--- last ${httpLog.length} HTTP exchanges ---`);
    for (const e of httpLog) {
        console.error(`${e.method} ${e.url} -> ${e.status}`);
        if (e.reqBody) console.error(`    req: ${truncate(e.reqBody)}`);
        console.error(`    res: ${truncate(e.resBody)}`);
    }
}

// ---------------------------------------------------------------------------
// helpers

function log(...args) {
    console.log(`[${new Date().toISOString().slice(11, 23)}]`, ...args);
}

function assert(cond, msg) {
    if (!cond) throw new Error(`assertion failed: ${msg}`);
}

function describeError(e) {
    if (e instanceof sdk.MatrixError || e?.httpStatus) {
        return `${e.name}: HTTP ${e.httpStatus} ${e.errcode ?? ""} ${e.message} (url: ${redactUrl(e.url ?? "?")}, body: ${truncate(JSON.stringify(e.data))})`;
    }
    return e?.stack || String(e);
}

function fail(e) {
    if (finished) return;
    finished = true;
    console.error(`FAIL: ${describeError(e)}`);
    dumpHttpLog();
    stopAll();
    process.exit(1);
}

function stopAll() {
    for (const c of clients) {
        try {
            c.stopClient();
        } catch {
            /* ignore */
        }
    }
}

function withTimeout(promise, ms, what) {
    let t;
    return Promise.race([
        promise,
        new Promise((_, reject) => {
            t = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
        }),
    ]).finally(() => clearTimeout(t));
}

// ---------------------------------------------------------------------------
// steps

async function registerUser(localpart) {
    const anon = sdk.createClient({ baseUrl: BASE_URL, fetchFn: loggingFetch });
    const password = `pw-${RUN_ID}-${localpart}`;
    const body = { username: localpart, password, initial_device_display_name: "js-sdk-check" };

    // First request without auth: the server must answer 401 with a UIA session.
    let session;
    try {
        const r = await anon.registerRequest(body);
        throw new Error(`register without auth unexpectedly succeeded: ${JSON.stringify(r)}`);
    } catch (e) {
        if (e.httpStatus !== 401) throw e;
        // This 401 is part of the normal UIA dance; don't report it.
        const last = unexpectedStatuses.at(-1);
        if (last && last.status === 401 && last.url.includes("/register")) unexpectedStatuses.pop();
        const data = e.data ?? {};
        session = data.session;
        const flows = data.flows ?? [];
        assert(Array.isArray(flows), `401 /register body has 'flows' array (got ${JSON.stringify(data)})`);
        assert(
            flows.some((f) => Array.isArray(f.stages) && f.stages.length === 1 && f.stages[0] === "m.login.dummy"),
            `401 /register advertises an m.login.dummy-only flow (got ${JSON.stringify(flows)})`,
        );
    }

    const res = await anon.registerRequest({ ...body, auth: { type: "m.login.dummy", session } });
    assert(typeof res.user_id === "string" && res.user_id.startsWith(`@${localpart}:`), `register user_id (got ${res.user_id})`);
    assert(typeof res.access_token === "string" && res.access_token, "register returned access_token");
    assert(typeof res.device_id === "string" && res.device_id, "register returned device_id");

    const client = sdk.createClient({
        baseUrl: BASE_URL,
        userId: res.user_id,
        accessToken: res.access_token,
        deviceId: res.device_id,
        fetchFn: loggingFetch,
        timelineSupport: true,
    });
    clients.push(client);

    const who = await client.whoami();
    assert(who.user_id === res.user_id, `whoami user_id ${who.user_id} == ${res.user_id}`);
    log(`registered ${res.user_id} (device ${res.device_id})`);
    return client;
}

function waitForMessagesViaSync(client, roomId, expected) {
    return new Promise((resolve, reject) => {
        const seen = []; // {eventId, sender, body} in Room.timeline emission order
        const seenIds = new Set();

        const check = () => {
            if (seen.length >= expected.length) {
                client.removeListener(sdk.RoomEvent.Timeline, onTimeline);
                client.removeListener(sdk.ClientEvent.Sync, onSync);
                resolve(seen);
            }
        };
        const onTimeline = (event, room, toStartOfTimeline, removed, data) => {
            if (!room || room.roomId !== roomId) return;
            if (toStartOfTimeline || removed) return;
            if (event.getType() !== "m.room.message") return;
            const id = event.getId();
            if (seenIds.has(id)) return;
            seenIds.add(id);
            seen.push({ eventId: id, sender: event.getSender(), body: event.getContent().body, liveEvent: data?.liveEvent });
            check();
        };
        const onSync = (state, prevState, data) => {
            if (VERBOSE) log(`sync state ${prevState} -> ${state}`);
            if (state === sdk.SyncState.Error) {
                client.removeListener(sdk.RoomEvent.Timeline, onTimeline);
                client.removeListener(sdk.ClientEvent.Sync, onSync);
                const err = data?.error;
                reject(new Error(`SDK sync loop entered ERROR state: ${err ? describeError(err) : "(no error detail)"}`));
            } else if (state === sdk.SyncState.Prepared || state === sdk.SyncState.Syncing) {
                check();
            }
        };
        client.on(sdk.RoomEvent.Timeline, onTimeline);
        client.on(sdk.ClientEvent.Sync, onSync);
        client.startClient({ initialSyncLimit: 20 }).catch(reject);
    });
}

function compareMessages(label, actual, expected) {
    const fmt = (m) => `${m.eventId} ${m.sender} ${JSON.stringify(m.body)}`;
    if (actual.length !== expected.length) {
        throw new Error(
            `${label}: expected ${expected.length} messages, got ${actual.length}:\n  ${actual.map(fmt).join("\n  ")}`,
        );
    }
    for (let i = 0; i < expected.length; i++) {
        const a = actual[i];
        const e = expected[i];
        if (a.eventId !== e.eventId || a.sender !== e.sender || a.body !== e.body) {
            throw new Error(
                `${label}: mismatch at index ${i}: expected [${fmt(e)}], got [${fmt(a)}]\n` +
                    `  full actual order:\n  ${actual.map(fmt).join("\n  ")}`,
            );
        }
    }
}

async function main() {
    log(`matrix-js-sdk check against ${BASE_URL} (run ${RUN_ID})`);

    const versions = await withTimeout(
        loggingFetch(`${BASE_URL}/_matrix/client/versions`).then((r) => r.json()),
        5_000,
        "/versions",
    );
    log(`server versions: ${JSON.stringify(versions.versions)}`);

    const alice = await registerUser(`jscheck_a_${RUN_ID}`);
    const bob = await registerUser(`jscheck_b_${RUN_ID}`);
    const aliceId = alice.getUserId();
    const bobId = bob.getUserId();

    const { room_id: roomId } = await alice.createRoom({
        name: `js-sdk-check ${RUN_ID}`,
        preset: sdk.Preset.PrivateChat,
        visibility: sdk.Visibility.Private,
    });
    assert(typeof roomId === "string" && roomId.startsWith("!"), `createRoom returned room_id (got ${roomId})`);
    log(`alice created ${roomId}`);

    await alice.invite(roomId, bobId);
    log(`alice invited ${bobId}`);
    const joined = await bob.joinRoom(roomId);
    assert(joined?.roomId === roomId, `joinRoom resolved to room ${joined?.roomId}`);
    log(`bob joined ${roomId}`);

    // Interleave senders so ordering across users is exercised: a0 b0 a1 b1 ...
    const sent = [];
    for (let i = 0; i < MESSAGES_PER_USER; i++) {
        for (const [client, name] of [
            [alice, "alice"],
            [bob, "bob"],
        ]) {
            const body = `${name} message ${i + 1}/${MESSAGES_PER_USER} (${RUN_ID})`;
            const res = await client.sendTextMessage(roomId, body);
            assert(typeof res?.event_id === "string" && res.event_id.startsWith("$"), `send returned event_id (got ${JSON.stringify(res)})`);
            sent.push({ eventId: res.event_id, sender: client.getUserId(), body });
        }
    }
    log(`sent ${sent.length} messages (${MESSAGES_PER_USER} from each user)`);

    // Bob's sync loop must deliver all 10 as Room.timeline events, in order.
    const viaSync = await withTimeout(
        waitForMessagesViaSync(bob, roomId, sent),
        SYNC_TIMEOUT_MS,
        "all messages to arrive via the SDK sync loop",
    );
    compareMessages("sync timeline", viaSync, sent);
    log(`sync: received all ${viaSync.length} messages as Room.timeline events in order`);

    // Cross-check the SDK's model of the live timeline too.
    const room = bob.getRoom(roomId);
    assert(room, "bob.getRoom(roomId) is known after sync");
    const liveMsgs = room
        .getLiveTimeline()
        .getEvents()
        .filter((e) => e.getType() === "m.room.message")
        .map((e) => ({ eventId: e.getId(), sender: e.getSender(), body: e.getContent().body }));
    compareMessages("live timeline", liveMsgs, sent);
    assert(room.getMyMembership() === "join", `bob's membership is join (got ${room.getMyMembership()})`);
    const members = room.getJoinedMembers().map((m) => m.userId).sort();
    assert(
        JSON.stringify(members) === JSON.stringify([aliceId, bobId].sort()),
        `joined members are alice and bob (got ${JSON.stringify(members)})`,
    );
    log(`live timeline order OK; joined members: ${members.join(", ")}`);

    // /messages backwards from the end.
    const resp = await bob.createMessagesRequest(roomId, null, 50, sdk.Direction.Backward);
    assert(Array.isArray(resp?.chunk), `/messages returned chunk array (got ${truncate(JSON.stringify(resp))})`);
    assert(typeof resp.start === "string", `/messages returned 'start' token (got ${JSON.stringify(resp.start)})`);
    const backMsgs = resp.chunk
        .filter((e) => e.type === "m.room.message")
        .map((e) => ({ eventId: e.event_id, sender: e.sender, body: e.content?.body }))
        .reverse(); // dir=b is newest-first
    compareMessages("/messages dir=b (reversed)", backMsgs, sent);
    for (const e of resp.chunk) {
        assert(e.room_id === roomId || e.room_id === undefined, `/messages event ${e.event_id} room_id matches`);
        assert(typeof e.origin_server_ts === "number", `/messages event ${e.event_id} has numeric origin_server_ts`);
    }
    log(`/messages dir=b: ${resp.chunk.length} events, ${backMsgs.length} messages, order and content OK`);

    stopAll();
    finished = true;
    if (unexpectedStatuses.length) {
        log(`note: ${unexpectedStatuses.length} non-2xx HTTP responses were tolerated by the SDK:`);
        for (const e of unexpectedStatuses) log(`  ${e.method} ${e.url} -> ${e.status} ${truncate(e.resBody, 300)}`);
    }
    log("PASS");
    process.exit(0);
}

const overall = setTimeout(() => fail(new Error(`overall timeout of ${OVERALL_TIMEOUT_MS} ms exceeded`)), OVERALL_TIMEOUT_MS);
process.on("unhandledRejection", (e) => fail(e));
main().catch(fail).finally(() => clearTimeout(overall));
