package clientapi

import (
	"net/http"

	"github.com/myelin-chat/myelin/internal/httpx"
	"github.com/myelin-chat/myelin/internal/pdu"
)

// getCapabilities serves GET /_matrix/client/v3/capabilities (capabilities.yaml).
func (a *API) getCapabilities(w http.ResponseWriter, r *http.Request) error {
	return httpx.OK(w, map[string]any{
		"capabilities": map[string]any{
			"m.change_password": map[string]bool{"enabled": true},
			"m.room_versions": map[string]any{
				"default":   a.cfg.DefaultRoomVersion,
				"available": pdu.Supported,
			},
			"m.set_displayname": map[string]bool{"enabled": true},
			"m.set_avatar_url":  map[string]bool{"enabled": true},
			"m.3pid_changes":    map[string]bool{"enabled": false},
			"m.get_login_token": map[string]bool{"enabled": a.cfg.Sessions.LoginViaExistingSession.Enabled},
			"m.profile_fields":  map[string]any{"enabled": true},
		},
	})
}
