package clientapi

import (
	"net/http"
)

// The authenticated content repository (authed-content-repo.yaml, spec
// v1.11): the same downloads as content-repo.go behind an access token,
// serving all media.

// getContentAuthed is GET /_matrix/client/v1/media/download/{serverName}/{mediaId}
// (authed-content-repo.yaml).
func (a *API) getContentAuthed(w http.ResponseWriter, r *http.Request) error {
	return a.download(w, r, false)
}

// getContentOverrideNameAuthed is GET
// /_matrix/client/v1/media/download/{serverName}/{mediaId}/{fileName}
// (authed-content-repo.yaml).
func (a *API) getContentOverrideNameAuthed(w http.ResponseWriter, r *http.Request) error {
	return a.download(w, r, false)
}

// getConfigAuthed is GET /_matrix/client/v1/media/config (authed-content-repo.yaml).
func (a *API) getConfigAuthed(w http.ResponseWriter, r *http.Request) error { return a.getConfig(w, r) }

// getContentThumbnailAuthed is GET
// /_matrix/client/v1/media/thumbnail/{serverName}/{mediaId} (authed-content-repo.yaml).
func (a *API) getContentThumbnailAuthed(w http.ResponseWriter, r *http.Request) error {
	return a.thumbnail(w, r, false)
}
