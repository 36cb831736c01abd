"""matrix-nio against a running Myelin: register, create a room, send, sync
and read back, as the P1 issue asks of every client library.

Run with Debian's python3-matrix-nio (apt-get install python3-matrix-nio):
    /usr/bin/python3 scripts/clientcompat/nio_check.py http://127.0.0.1:8008
It exits non-zero on the first failure.
"""

import asyncio
import secrets
import sys

from nio import (AsyncClient, JoinedMembersResponse, ProfileSetDisplayNameResponse,
                 RegisterResponse, RoomCreateResponse, RoomMessagesResponse,
                 RoomSendResponse, SyncResponse)


async def main(url: str) -> None:
    user = "nio" + secrets.token_hex(4)
    client = AsyncClient(url, user)
    try:
        resp = await client.register(user, "nio-password-" + user)
        assert isinstance(resp, RegisterResponse), f"register: {resp}"
        print("registered", resp.user_id)

        resp = await client.set_displayname("Nio Check")
        assert isinstance(resp, ProfileSetDisplayNameResponse), f"displayname: {resp}"

        resp = await client.room_create(name="nio check")
        assert isinstance(resp, RoomCreateResponse), f"createRoom: {resp}"
        room_id = resp.room_id
        print("created", room_id)

        # nio validates joined_members against the spec's display_name.
        resp = await client.joined_members(room_id)
        assert isinstance(resp, JoinedMembersResponse), f"joined_members: {resp}"
        names = [m.display_name for m in resp.members]
        assert names == ["Nio Check"], f"joined_members: {names}"
        print("joined members", names)

        sent = []
        for i in range(3):
            resp = await client.room_send(room_id, "m.room.message",
                                          {"msgtype": "m.text", "body": f"nio {i}"})
            assert isinstance(resp, RoomSendResponse), f"send: {resp}"
            sent.append(resp.event_id)

        resp = await client.sync(timeout=1000, full_state=True)
        assert isinstance(resp, SyncResponse), f"sync: {resp}"
        room = resp.rooms.join[room_id]
        bodies = [e.body for e in room.timeline.events if hasattr(e, "body")]
        assert bodies[-3:] == ["nio 0", "nio 1", "nio 2"], f"sync timeline: {bodies}"
        print("sync sees", bodies[-3:])

        resp = await client.room_messages(room_id, start=resp.next_batch, limit=10)
        assert isinstance(resp, RoomMessagesResponse), f"messages: {resp}"
        back = [e.body for e in resp.chunk if hasattr(e, "body")]
        assert back[:3] == ["nio 2", "nio 1", "nio 0"], f"/messages: {back}"
        print("messages reads back", back[:3])
        print("OK")
    finally:
        await client.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8008"))
