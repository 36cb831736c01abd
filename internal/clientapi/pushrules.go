package clientapi

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/myelin-chat/myelin/internal/httpx"
	"github.com/myelin-chat/myelin/internal/mxerr"
	"github.com/myelin-chat/myelin/internal/push"
)

// getPushRules serves GET /_matrix/client/v3/pushrules/ (pushrules.yaml):
// every ruleset of the user; "global" is the only one.
func (a *API) getPushRules(w http.ResponseWriter, r *http.Request) error {
	rs, err := a.push.Rules(r.Context(), session(r).UserID)
	if err != nil {
		return err
	}
	return httpx.OK(w, map[string]push.Ruleset{"global": rs})
}

// getPushRulesGlobal serves GET /_matrix/client/v3/pushrules/global/
// (pushrules.yaml).
func (a *API) getPushRulesGlobal(w http.ResponseWriter, r *http.Request) error {
	rs, err := a.push.Rules(r.Context(), session(r).UserID)
	if err != nil {
		return err
	}
	return httpx.OK(w, rs)
}

// pushRulePath reads {kind} and {ruleId}; an unknown kind is 400 M_UNKNOWN
// as in Synapse, which rejects it as an unknown rule template.
func pushRulePath(r *http.Request) (push.Kind, string, error) {
	kind, ok := push.ParseKind(r.PathValue("kind"))
	if !ok {
		return "", "", mxerr.Unknown.WithStatus(http.StatusBadRequest).With("unknown push rule kind %q", r.PathValue("kind"))
	}
	ruleID := r.PathValue("ruleId")
	if err := push.ValidateRuleID(ruleID); err != nil {
		return "", "", err
	}
	return kind, ruleID, nil
}

// findPushRule returns the caller's rule named by the path, or M_NOT_FOUND.
func (a *API) findPushRule(r *http.Request) (push.Rule, error) {
	kind, ruleID, err := pushRulePath(r)
	if err != nil {
		return push.Rule{}, err
	}
	rs, err := a.push.Rules(r.Context(), session(r).UserID)
	if err != nil {
		return push.Rule{}, err
	}
	rule, ok := rs.Find(kind, ruleID)
	if !ok {
		return push.Rule{}, mxerr.NotFound.With("The push rule was not found.")
	}
	return rule, nil
}

// getPushRule serves GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}
// (pushrules.yaml).
func (a *API) getPushRule(w http.ResponseWriter, r *http.Request) error {
	rule, err := a.findPushRule(r)
	if err != nil {
		return err
	}
	return httpx.OK(w, rule)
}

// setPushRule serves PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}
// (pushrules.yaml), with the before and after query parameters.
func (a *API) setPushRule(w http.ResponseWriter, r *http.Request) error {
	kind, ruleID, err := pushRulePath(r)
	if err != nil {
		return err
	}
	var req push.RuleReq
	if err := httpx.DecodeJSON(r, &req); err != nil {
		return err
	}
	if strings.HasPrefix(ruleID, ".") {
		// Checked before the body, as Synapse does.
		return mxerr.InvalidParam.With("rule IDs starting with '.' are reserved for server-default rules")
	}
	if req.Actions == nil {
		return mxerr.BadJSON.With("missing actions")
	}
	q := r.URL.Query()
	if err := a.push.SetRule(r.Context(), session(r).UserID, kind, ruleID, req, q.Get("before"), q.Get("after")); err != nil {
		return err
	}
	return httpx.OK(w, httpx.Empty)
}

// deletePushRule serves DELETE
// /_matrix/client/v3/pushrules/global/{kind}/{ruleId} (pushrules.yaml).
func (a *API) deletePushRule(w http.ResponseWriter, r *http.Request) error {
	kind, ruleID, err := pushRulePath(r)
	if err != nil {
		return err
	}
	if err := a.push.DeleteRule(r.Context(), session(r).UserID, kind, ruleID); err != nil {
		return err
	}
	return httpx.OK(w, httpx.Empty)
}

// isPushRuleEnabled serves GET
// /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/enabled (pushrules.yaml).
func (a *API) isPushRuleEnabled(w http.ResponseWriter, r *http.Request) error {
	rule, err := a.findPushRule(r)
	if err != nil {
		return err
	}
	return httpx.OK(w, map[string]bool{"enabled": rule.Enabled})
}

// setPushRuleEnabled serves PUT
// /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/enabled (pushrules.yaml).
func (a *API) setPushRuleEnabled(w http.ResponseWriter, r *http.Request) error {
	kind, ruleID, err := pushRulePath(r)
	if err != nil {
		return err
	}
	var req struct {
		Enabled *bool `json:"enabled"`
	}
	if err := httpx.DecodeJSON(r, &req); err != nil {
		return err
	}
	if req.Enabled == nil {
		return mxerr.BadJSON.With("missing enabled")
	}
	if err := a.push.SetEnabled(r.Context(), session(r).UserID, kind, ruleID, *req.Enabled); err != nil {
		return err
	}
	return httpx.OK(w, httpx.Empty)
}

// getPushRuleActions serves GET
// /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/actions (pushrules.yaml).
func (a *API) getPushRuleActions(w http.ResponseWriter, r *http.Request) error {
	rule, err := a.findPushRule(r)
	if err != nil {
		return err
	}
	return httpx.OK(w, map[string][]json.RawMessage{"actions": rule.Actions})
}

// setPushRuleActions serves PUT
// /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/actions (pushrules.yaml).
func (a *API) setPushRuleActions(w http.ResponseWriter, r *http.Request) error {
	kind, ruleID, err := pushRulePath(r)
	if err != nil {
		return err
	}
	var req struct {
		Actions []json.RawMessage `json:"actions"`
	}
	if err := httpx.DecodeJSON(r, &req); err != nil {
		return err
	}
	if req.Actions == nil {
		return mxerr.BadJSON.With("missing actions")
	}
	if err := a.push.SetActions(r.Context(), session(r).UserID, kind, ruleID, req.Actions); err != nil {
		return err
	}
	return httpx.OK(w, httpx.Empty)
}
