// matrix-js-sdk's own sliding sync (SlidingSync with SlidingSyncSdk, as
// Element Web's sliding sync mode uses it) drives simplified sliding sync
// (MSC4186): a window of the most recent rooms, a room moving into it on a
// new message, and a room subscription's timeline. The Go test
// (TestJSSDKSlidingSync) checks the report.
//
// Input: {"accounts": [the user, another member], "rooms": [room IDs,
// most recent first], "names": {room ID: name}}.
import * as sdk from "matrix-js-sdk";
import { SlidingSync, SlidingSyncEvent, SlidingSyncState } from "matrix-js-sdk/lib/sliding-sync.js";
import { run, waitFor } from "./harness.mjs";

const window = 10;

run(async ({ accounts: [a, b], rooms }, track) => {
  const client = sdk.createClient({ baseUrl: a.url, userId: a.user_id, accessToken: a.access_token, deviceId: a.device_id });
  const lists = new Map([
    ["all", { ranges: [[0, window - 1]], timeline_limit: 1, required_state: [["m.room.name", ""], ["m.room.member", "$ME"]] }],
  ]);
  const ss = new SlidingSync(a.url, lists, { timeline_limit: 10, required_state: [["*", "*"]] }, client, 10000);
  // What each response said about which rooms, in order.
  const responses = [];
  let current = [];
  ss.on(SlidingSyncEvent.RoomData, (roomId) => current.push(roomId));
  ss.on(SlidingSyncEvent.Lifecycle, (state, _resp, err) => {
    if (err) responses.push({ error: String(err) });
    if (state === SlidingSyncState.Complete) {
      if (current.length) responses.push({ rooms: current });
      current = [];
    }
  });
  const prepared = new Promise((resolve, reject) => {
    client.on(sdk.ClientEvent.Sync, (state, _prev, data) => {
      if (state === "PREPARED") resolve();
      if (state === "ERROR") reject(new Error(`sliding sync failed: ${data?.error}`));
    });
  });
  track(client);
  await client.startClient({ slidingSync: ss });
  await prepared;

  const first = await waitFor("the first window", () => responses.find((r) => r.rooms)?.rooms);
  const count = ss.getListData("all")?.joinedCount;
  const names = Object.fromEntries(first.map((id) => [id, client.getRoom(id)?.name]));

  // A message in the oldest room brings it into the window.
  const oldest = rooms[rooms.length - 1];
  const other = sdk.createClient({ baseUrl: b.url, userId: b.user_id, accessToken: b.access_token, deviceId: b.device_id });
  const { event_id: bumped } = await other.sendMessage(oldest, { msgtype: "m.text", body: "back to the top" });
  await waitFor("the bumped room's message", () => client.getRoom(oldest)?.getLiveTimeline().getEvents().some((e) => e.getId() === bumped));
  const afterBump = responses.slice(-3);

  // A subscription gets the room's recent timeline.
  const sub = rooms[window + 2];
  ss.modifyRoomSubscriptions(new Set([sub]));
  const subTimeline = await waitFor("the subscribed room's timeline", () => {
    const evs = client.getRoom(sub)?.getLiveTimeline().getEvents().filter((e) => e.getType() === "m.room.message") ?? [];
    return evs.length >= 3 ? evs.map((e) => e.getContent().body) : null;
  });
  return { first, count, names, oldest, bumped, after_bump: afterBump, sub, sub_timeline: subTimeline, errors: responses.filter((r) => r.error) };
});
