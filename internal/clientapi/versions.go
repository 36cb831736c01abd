package clientapi

import (
	"net/http"

	"github.com/myelin-chat/myelin/internal/httpx"
)

// specVersions are the spec versions /versions advertises. Clients choose
// endpoints and features by this list (authenticated media from v1.11,
// for one), so a version is listed only if Myelin serves what it made
// mandatory: the endpoints it added to the core API or to a module that
// the spec's feature profiles require. Optional modules (spec "Feature
// Profiles": Spaces, Threading, Event Annotations, Event Replacements,
// Reference Relations, Reporting Content, Server Administration, ...) do
// not count, nor do endpoints a server may leave out by the spec's own
// words (refresh tokens it never issues, SSO it does not offer,
// /login/get_token behind its capability).
//
// Versions and what they need:
//   - v1.1 knocking, key backup, cross-signing: served.
//   - v1.2 registration token validity: served; /hierarchy is Spaces.
//   - v1.3 /relations: its only users are the relation types of optional
//     modules (annotations, replacements, threads, references), so it is
//     counted with them; clients that see no /relations lose those
//     features, nothing required.
//   - v1.4 private read receipts and threaded receipts: served; /threads
//     is Threading.
//   - v1.5 nothing new to serve.
//   - v1.6 GET /v1/rooms/{roomId}/timestamp_to_event, core: NOT served,
//     so the list stops at v1.5. It is also the oldest version that
//     matrix-js-sdk (Element Web) accepts, so nothing below would do.
//
// Beyond that: v1.7 asynchronous uploads and v1.11 authenticated media
// (Content Repository, required; being added in the same round of work
// as this list), v1.15 GET /v1/room_summary/{roomIdOrAlias} and v1.16
// DELETE /profile/{userId}/{keyName}, all core. Once timestamp_to_event
// and the media endpoints are served, v1.6 to v1.14 can follow. Listing
// v1.12, as before, made clients use authenticated media, which nothing
// served.
//
// The r0 versions are listed as Synapse lists them: the r0 paths are
// served (routes.go), and v1.1 is backwards compatible with r0.6.1. Some
// modules that r0.0.1 already had (presence, user directory, VoIP TURN,
// room upgrades, push rule changes) are still missing: they are gaps of
// every version, not a reason to list none, which would leave clients
// unable to connect.
var specVersions = []string{
	"r0.0.1", "r0.1.0", "r0.2.0", "r0.3.0", "r0.4.0", "r0.5.0", "r0.6.0", "r0.6.1",
	"v1.1", "v1.2", "v1.3", "v1.4", "v1.5",
}

// getVersions serves GET /_matrix/client/versions (versions.yaml), with
// the versions of specVersions.
func (a *API) getVersions(w http.ResponseWriter, r *http.Request) error {
	unstable := map[string]bool{}
	if a.media != nil {
		// With v1.11 not listed (see specVersions), this flag is how
		// clients learn that the authenticated media endpoints are served
		// (matrix-js-sdk and others check it, Synapse sets it).
		unstable["org.matrix.msc3916.stable"] = true
	}
	return httpx.OK(w, map[string]any{
		"versions":          specVersions,
		"unstable_features": unstable,
	})
}
