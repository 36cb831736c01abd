package clientapi

import (
	"context"
	"errors"
	"strings"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/mxerr"
)

// autoJoin joins a newly registered user to the configured auto-join
// rooms (auto_join_rooms), creating a missing local one as a public room
// with that alias when autocreate_auto_join_rooms is set. Registration has
// already succeeded, so failures are logged, not returned.
func (a *API) autoJoin(ctx context.Context, user id.UserID) {
	for _, raw := range a.cfg.AutoJoinRooms {
		alias := id.RoomAlias(raw)
		_, server, _ := strings.Cut(raw, ":")
		roomID, via, err := a.resolveRoom(ctx, raw, nil)
		if errors.Is(err, mxerr.NotFound) && server == a.cfg.ServerName && a.cfg.AutocreateAutoJoinRooms {
			localpart := strings.TrimPrefix(strings.TrimSuffix(raw, ":"+server), "#")
			if _, err = a.createRoomAs(ctx, user, createRoomReq{Preset: "public_chat", Visibility: "public", RoomAliasName: localpart}); err != nil {
				a.log.Warn("creating an auto-join room failed", "alias", alias, "user_id", user, "err", err)
			}
			continue // the creator is in it
		}
		if err != nil {
			a.log.Warn("resolving an auto-join room failed", "alias", alias, "err", err)
			continue
		}
		if err := a.joinAs(ctx, user, roomID, via, nil); err != nil {
			a.log.Warn("auto-joining a room failed", "alias", alias, "user_id", user, "err", err)
		}
	}
}
