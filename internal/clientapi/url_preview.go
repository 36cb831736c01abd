package clientapi

import (
	"net/http"
	"strconv"

	"github.com/myelin-chat/myelin/internal/httpx"
	"github.com/myelin-chat/myelin/internal/mxerr"
	"github.com/myelin-chat/myelin/internal/preview"
)

// WithPreview serves URL previews with p. Without it preview_url answers
// 404 M_UNRECOGNIZED, as Synapse does with url_preview_enabled off.
func WithPreview(p *preview.Service) Option {
	return func(a *API) { a.preview = p }
}

// previewing requires authentication when previews are on, and answers
// as an unknown endpoint when they are off (Synapse registers no route
// then, so it asks for no token either).
func (a *API) previewing(h httpx.HandlerFunc) httpx.HandlerFunc {
	authed := a.authed(h)
	return func(w http.ResponseWriter, r *http.Request) error {
		if a.preview == nil {
			return mxerr.Unrecognized.With("Unrecognized request")
		}
		return authed(w, r)
	}
}

// getUrlPreviewAuthed is GET /_matrix/client/v1/media/preview_url
// (spec: Content repository, "Get information about a URL for a client").
func (a *API) getUrlPreviewAuthed(w http.ResponseWriter, r *http.Request) error {
	return a.urlPreview(w, r)
}

// getUrlPreview is the deprecated GET /_matrix/media/v3/preview_url (and
// r0), which answers as the authenticated endpoint.
func (a *API) getUrlPreview(w http.ResponseWriter, r *http.Request) error {
	return a.urlPreview(w, r)
}

func (a *API) urlPreview(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	target := q.Get("url")
	if target == "" {
		return mxerr.MissingParam.With("missing url parameter")
	}
	// ts asks for a preview as of a time; the cache holds only the newest,
	// which the spec allows, but a malformed ts is still refused.
	if ts := q.Get("ts"); ts != "" {
		if _, err := strconv.ParseInt(ts, 10, 64); err != nil {
			return mxerr.InvalidParam.With("ts must be an integer timestamp in milliseconds")
		}
	}
	og, err := a.preview.Preview(r.Context(), session(r).UserID, target)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	_, err = w.Write(og)
	return err
}
