package clientapi

import (
	"net/http"

	"github.com/myelin-chat/myelin/internal/httpx"
)

// specVersions are the spec versions /versions advertises. Clients choose
// endpoints and features by this list (authenticated media from v1.11,
// server-side threads from v1.4, relations from v1.3), so a version is
// listed only if the endpoints it added to the core API, or to a module
// that every client profile requires, are served. The optional modules
// (spec "Feature Profiles": Spaces, Threading, Reporting Content, Server
// Administration, ...) do not count, and endpoints a server may leave out
// by the spec's own words (refresh tokens it never issues, SSO login it
// does not offer, /login/get_token behind its capability) are not needed.
//
// The list stops at v1.2 because v1.3 added GET
// /rooms/{roomId}/relations/{eventId} to the core API ("Relationships
// between events"), which Myelin does not serve yet. The versions after
// it add more that is missing: v1.6 GET /v1/rooms/{roomId}/timestamp_to_event,
// v1.7 and v1.11 the asynchronous upload and authenticated media of the
// Content Repository (being added in the same round of work as this list;
// once it and the two above land, v1.3 to v1.15 follow), and v1.16 DELETE
// /profile/{userId}/{keyName}. Advertising v1.12, as before, told Element
// Web and mautrix to use /relations and /threads, which answer 404.
//
// The r0 versions are listed as Synapse lists them: the r0 paths are
// served (routes.go), and v1.1 is backwards compatible with r0.6.1. Some
// modules that r0.0.1 already had (presence, user directory, VoIP TURN,
// room upgrades, third-party identifiers) are still missing; they are
// gaps in every version, and listing no version at all would leave
// clients unable to connect.
var specVersions = []string{
	"r0.0.1", "r0.1.0", "r0.2.0", "r0.3.0", "r0.4.0", "r0.5.0", "r0.6.0", "r0.6.1",
	"v1.1", "v1.2",
}

// getVersions serves GET /_matrix/client/versions (versions.yaml), with
// the versions of specVersions.
func (a *API) getVersions(w http.ResponseWriter, r *http.Request) error {
	return httpx.OK(w, map[string]any{
		"versions":          specVersions,
		"unstable_features": map[string]bool{},
	})
}
