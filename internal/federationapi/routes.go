package federationapi

import (
	"github.com/myelin-chat/myelin/internal/httpx"
)

// Register adds every server-server route to mux. auth wraps the routes
// that need X-Matrix request authentication.
func (a *API) Register(mux httpx.Router, auth func(httpx.HandlerFunc) httpx.HandlerFunc) {
	routes := []struct {
		method, path string
		h            httpx.HandlerFunc
	}{
		// transactions.yaml
		{"PUT", "/_matrix/federation/v1/send/{txnId}", a.sendTransaction},
		// joins-v1.yaml, joins-v2.yaml
		{"GET", "/_matrix/federation/v1/make_join/{roomId}/{userId}", a.makeJoin},
		{"PUT", "/_matrix/federation/v1/send_join/{roomId}/{eventId}", a.sendJoinV1},
		{"PUT", "/_matrix/federation/v2/send_join/{roomId}/{eventId}", a.sendJoinV2},
		// leaving-v1.yaml, leaving-v2.yaml
		{"GET", "/_matrix/federation/v1/make_leave/{roomId}/{userId}", a.makeLeave},
		{"PUT", "/_matrix/federation/v1/send_leave/{roomId}/{eventId}", a.sendLeaveV1},
		{"PUT", "/_matrix/federation/v2/send_leave/{roomId}/{eventId}", a.sendLeaveV2},
		// knocks.yaml
		{"GET", "/_matrix/federation/v1/make_knock/{roomId}/{userId}", a.makeKnock},
		{"PUT", "/_matrix/federation/v1/send_knock/{roomId}/{eventId}", a.sendKnock},
		// invites-v1.yaml, invites-v2.yaml
		{"PUT", "/_matrix/federation/v1/invite/{roomId}/{eventId}", a.sendInviteV1},
		{"PUT", "/_matrix/federation/v2/invite/{roomId}/{eventId}", a.sendInviteV2},
		// events.yaml
		{"GET", "/_matrix/federation/v1/event/{eventId}", a.getEvent},
		{"GET", "/_matrix/federation/v1/state/{roomId}", a.getRoomState},
		{"GET", "/_matrix/federation/v1/state_ids/{roomId}", a.getRoomStateIds},
		{"GET", "/_matrix/federation/v1/timestamp_to_event/{roomId}", a.getEventByTimestamp},
		// event_auth.yaml
		{"GET", "/_matrix/federation/v1/event_auth/{roomId}/{eventId}", a.getEventAuth},
		// backfill.yaml
		{"GET", "/_matrix/federation/v1/backfill/{roomId}", a.backfillRoom},
		{"POST", "/_matrix/federation/v1/get_missing_events/{roomId}", a.getMissingPreviousEvents},
		// public_rooms.yaml
		{"GET", "/_matrix/federation/v1/publicRooms", a.getPublicRooms},
		{"POST", "/_matrix/federation/v1/publicRooms", a.queryPublicRooms},
		// query.yaml
		{"GET", "/_matrix/federation/v1/query/directory", a.queryRoomDirectory},
		{"GET", "/_matrix/federation/v1/query/profile", a.queryProfile},
		// user_keys.yaml, user_devices.yaml
		{"POST", "/_matrix/federation/v1/user/keys/query", a.userKeysQuery},
		{"POST", "/_matrix/federation/v1/user/keys/claim", a.userKeysClaim},
		{"GET", "/_matrix/federation/v1/user/devices/{userId}", a.userDevices},
	}
	if a.spaces != nil {
		// space_hierarchy.yaml
		routes = append(routes, struct {
			method, path string
			h            httpx.HandlerFunc
		}{"GET", "/_matrix/federation/v1/hierarchy/{roomId}", a.getSpaceHierarchy})
	}
	if a.media != nil {
		// content_repository.yaml
		routes = append(routes, []struct {
			method, path string
			h            httpx.HandlerFunc
		}{
			{"GET", "/_matrix/federation/v1/media/download/{mediaId}", a.getContent},
			{"GET", "/_matrix/federation/v1/media/thumbnail/{mediaId}", a.getContentThumbnail},
		}...)
	}
	for _, rt := range routes {
		mux.Handle(rt.method+" "+rt.path, a.http.Wrap(auth(rt.h)))
	}
	// openid.yaml: called by services holding an OpenID token, without
	// X-Matrix authentication.
	mux.Handle("GET /_matrix/federation/v1/openid/userinfo", a.http.Wrap(a.exchangeOpenIdToken))
}
