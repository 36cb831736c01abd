package clientapi

import (
	"net/http"

	"github.com/myelin-chat/myelin/internal/httpx"
	"github.com/myelin-chat/myelin/internal/slidingsync"
)

// specVersions are the spec versions /versions advertises. Clients choose
// endpoints and features by this list (authenticated media from v1.11,
// for one), so a version is listed only if Myelin serves what it made
// mandatory: the endpoints it added to the core API or to a module that
// the spec's feature profiles require. Optional modules (spec "Feature
// Profiles": Spaces, Threading, Event Annotations, Event Replacements,
// Reference Relations, Reporting Content, Server Administration, ...) do
// not count, nor do endpoints a server may leave out by the spec's own
// words (SSO it does not offer). Refresh tokens (v1.3) and
// /login/get_token (v1.7, behind its capability) are served.
//
// Versions and what they need:
//   - v1.1 knocking, key backup, cross-signing: served.
//   - v1.2 registration token validity: served; /hierarchy is Spaces
//     (served too, space_hierarchy.go).
//   - v1.3 /relations: its only users are the relation types of optional
//     modules (annotations, replacements, threads, references), so it is
//     counted with them; clients that see no /relations lose those
//     features, nothing required.
//   - v1.4 private read receipts and threaded receipts: served; /threads
//     is Threading.
//   - v1.5 nothing new to serve.
//   - v1.6 GET /v1/rooms/{roomId}/timestamp_to_event, core: served,
//     locally and by asking other servers (room_event_by_timestamp.go).
//   - v1.7 asynchronous uploads (POST /v1/media/create, PUT upload):
//     served.
//   - v1.8 to v1.10: room version 11 (served); /.well-known/matrix/support
//     is Server Administration, relations recursion is an optional module.
//   - v1.11 authenticated media, client and federation: served. Clients
//     switch to the /v1/media endpoints when they see it.
//   - v1.12 via on join and knock: served; marking rooms unread is
//     account data; account locking applies only to servers that lock.
//   - v1.13, v1.14 room and user reports: served (report_content.go).
//   - v1.15 GET /v1/room_summary/{roomIdOrAlias}, core: served, locally
//     and through other servers' hierarchy endpoint (room_summary.go,
//     package spaces), with the allowed_room_ids, encryption and
//     room_version fields it added to /hierarchy. GET /v1/auth_metadata
//     belongs to the OAuth 2.0 API, which the spec lets a server leave out
//     ("A homeserver may support one of those two APIs, or both"): a
//     server with the legacy API only answers 404 M_UNRECOGNIZED, which
//     the fallback does. The m.topic content block and device keys in
//     Olm events are for clients. So the list stops at v1.15.
//
// Beyond that: v1.16's DELETE /profile/{userId}/{keyName}, custom profile
// fields, format on GET state and use_state_after on /sync are served;
// v1.16 is not listed until the rest of its changelog has been checked
// the same way.
//
// The r0 versions are listed as Synapse lists them: the r0 paths are
// served (routes.go), and v1.1 is backwards compatible with r0.6.1. Some
// modules that r0.0.1 already had (presence, user directory, VoIP TURN,
// room upgrades, push rule changes) are still missing: they are gaps of
// every version, not a reason to list none, which would leave clients
// unable to connect.
var specVersions = []string{
	"r0.0.1", "r0.1.0", "r0.2.0", "r0.3.0", "r0.4.0", "r0.5.0", "r0.6.0", "r0.6.1",
	"v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6", "v1.7", "v1.8", "v1.9",
	"v1.10", "v1.11", "v1.12", "v1.13", "v1.14", "v1.15",
}

// getVersions serves GET /_matrix/client/versions (versions.yaml), with
// the versions of specVersions.
func (a *API) getVersions(w http.ResponseWriter, r *http.Request) error {
	unstable := map[string]bool{}
	if a.media != nil {
		// Besides v1.11, clients that predate it learn of the
		// authenticated media endpoints by this flag (Synapse sets it).
		unstable["org.matrix.msc3916.stable"] = true
	}
	if a.slidingSync != nil {
		// Clients (Element X, matrix-rust-sdk) use sliding sync only when
		// the server advertises it.
		unstable[slidingsync.UnstableFeature] = true
	}
	return httpx.OK(w, map[string]any{
		"versions":          specVersions,
		"unstable_features": unstable,
	})
}
