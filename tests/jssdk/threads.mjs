// Two users on two federated servers start a thread, and each client, with
// thread support on, reports the thread as it sees it: from the sdk's
// Thread model after fetching /threads, and from the server's bundled
// m.thread aggregation on the root. The Go test (TestJSSDKThreads) checks
// that both agree.
//
// Input: {"accounts": [user 1, user 2]}.
import { RelationType, RoomEvent, ThreadFilterType } from "matrix-js-sdk";
import { run, startClient, waitFor } from "./harness.mjs";

const reply = (rootId, body) => ({
  msgtype: "m.text",
  body,
  "m.relates_to": {
    rel_type: RelationType.Thread,
    event_id: rootId,
    is_falling_back: true,
    "m.in_reply_to": { event_id: rootId },
  },
});

// view is one user's account of the thread, from a client started after
// the thread is complete. (A client that watched the thread grow counts
// replies itself: it takes the root's bundled count when the thread first
// appears and adds each reply sync brings, so a reply that lands between
// the two is counted twice. The server's numbers are right; the live
// count is the sdk's guess.)
async function view(account, track, roomId, rootId) {
  const client = track(await startClient(account));
  const room = await waitFor(`${account.user_id}'s room`, () => client.getRoom(roomId));
  // As Element's thread panel does: the "all threads" and "my threads"
  // lists, filled from /threads (include=all and participated).
  await room.createThreadsTimelineSets();
  await room.fetchRoomThreads();
  const listed = (i) => room.threadsTimelineSets[i]?.getLiveTimeline().getEvents().map((e) => e.getId()) ?? [];
  const threads = room.getThreads();
  const thread = room.getThread(rootId);
  if (!thread) throw new Error(`${client.getUserId()}: no thread ${rootId} among ${threads.map((t) => t.id)}`);
  // The sdk fills a thread lazily; wait until it holds both replies.
  await waitFor(`${client.getUserId()}'s thread to be initialised`, () => thread.initialEventsFetched && thread.length >= 2);
  const raw = await client.fetchRoomEvent(roomId, rootId);
  const bundled = raw.unsigned?.["m.relations"]?.[RelationType.Thread];
  const list = await client.createThreadListMessagesRequest(roomId, null, 10, "b", ThreadFilterType.All);
  return {
    threads: threads.map((t) => t.id),
    root: thread.rootEvent?.getId(),
    root_body: thread.rootEvent?.getContent().body,
    length: thread.length,
    latest: thread.replyToEvent?.getId(),
    participated: thread.hasCurrentUserParticipated,
    all_threads: listed(0),
    my_threads: listed(1),
    events: thread.events.map((e) => e.getId()),
    bundled: bundled && {
      count: bundled.count,
      latest: bundled.latest_event?.event_id,
      participated: bundled.current_user_participated,
    },
    list: list.chunk.map((e) => ({
      id: e.event_id,
      count: e.unsigned?.["m.relations"]?.[RelationType.Thread]?.count,
      latest: e.unsigned?.["m.relations"]?.[RelationType.Thread]?.latest_event?.event_id,
    })),
  };
}

run(async ({ accounts: [a1, a2] }, track) => {
  const c1 = track(await startClient(a1));
  const c2 = track(await startClient(a2));
  if (!c1.supportsThreads() || !c2.supportsThreads()) throw new Error("thread support is off");

  const { room_id: roomId } = await c1.createRoom({ preset: "public_chat", name: "threads" });
  await c2.joinRoom(roomId, { viaServers: [a1.server_name] });
  await waitFor("user 2's join on server 1", () => c1.getRoom(roomId)?.getMember(a2.user_id)?.membership === "join");

  const { event_id: rootId } = await c1.sendMessage(roomId, { msgtype: "m.text", body: "thread root" });
  await waitFor("the root on server 2", () => c2.getRoom(roomId)?.findEventById(rootId));

  // A sent event stays a local echo (counted as a pending reply) until
  // its sender's own sync returns it (its transaction_id marks it): wait
  // for that too. The sender's client may have no Thread to look in yet
  // (the sdk makes one from a reply that sync brings, and the remote echo
  // of one's own reply is not that), so listen for the echo instead.
  const echoed = new Map([[c1, new Set()], [c2, new Set()]]);
  for (const [c, ids] of echoed) {
    c.on(RoomEvent.LocalEchoUpdated, (ev) => ev.status === null && ids.add(ev.getId()));
  }
  const synced = (c, eventId) => () => echoed.get(c).has(eventId);
  const { event_id: reply1 } = await c1.sendMessage(roomId, rootId, reply(rootId, "reply from user 1"));
  await waitFor("user 1's reply in user 1's sync", synced(c1, reply1));
  await waitFor("user 1's reply on server 2", () => c2.getRoom(roomId)?.getThread(rootId)?.findEventById(reply1));
  const { event_id: reply2 } = await c2.sendMessage(roomId, rootId, reply(rootId, "reply from user 2"));
  await waitFor("user 2's reply in user 2's sync", synced(c2, reply2));
  await waitFor("user 2's reply on server 1", () => c1.getRoom(roomId)?.getThread(rootId)?.findEventById(reply2));

  return {
    room_id: roomId,
    root: rootId,
    replies: [reply1, reply2],
    views: [await view(a1, track, roomId, rootId), await view(a2, track, roomId, rootId)],
  };
});
