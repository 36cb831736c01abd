package clientapi

import (
	"net/http"
	"regexp"

	"github.com/myelin-chat/myelin/internal/httpx"
	"github.com/myelin-chat/myelin/internal/mxerr"
)

// Myelin neither sends e-mail or SMS nor talks to identity servers, so no
// third-party identifier is ever validated or stored. The 3PID endpoints
// still validate their bodies and answer as Synapse does when it has no
// email config and no msisdn delegate: Element's settings then show an
// empty list instead of "Unable to load email addresses".

// clientSecretRE is the client_secret grammar of the spec
// (identity/definitions/request_email_validation.yaml).
var clientSecretRE = regexp.MustCompile(`^[0-9a-zA-Z.=_-]{1,255}$`)

func checkClientSecret(s *string) error {
	if s == nil {
		return mxerr.MissingParam.With("client_secret is required")
	}
	if !clientSecretRE.MatchString(*s) {
		return mxerr.InvalidParam.With("client_secret must be 1-255 characters of [0-9a-zA-Z.=_-]")
	}
	return nil
}

// emailTokenReq is the body of every email requestToken endpoint
// (request_email_validation.yaml).
type emailTokenReq struct {
	ClientSecret *string `json:"client_secret"`
	Email        *string `json:"email"`
	SendAttempt  *int64  `json:"send_attempt"`
	NextLink     *string `json:"next_link"`
	IDServer     *string `json:"id_server"`
	IDAccess     *string `json:"id_access_token"`
}

// msisdnTokenReq is the body of every msisdn requestToken endpoint
// (request_msisdn_validation.yaml).
type msisdnTokenReq struct {
	ClientSecret *string `json:"client_secret"`
	Country      *string `json:"country"`
	PhoneNumber  *string `json:"phone_number"`
	SendAttempt  *int64  `json:"send_attempt"`
	NextLink     *string `json:"next_link"`
	IDServer     *string `json:"id_server"`
	IDAccess     *string `json:"id_access_token"`
}

// emailTokenRefused decodes and checks an email requestToken body, then
// refuses it: there is no e-mail sending to validate the address with.
func emailTokenRefused(r *http.Request, why string) error {
	var req emailTokenReq
	if err := httpx.DecodeJSON(r, &req); err != nil {
		return err
	}
	if err := checkClientSecret(req.ClientSecret); err != nil {
		return err
	}
	if req.Email == nil || *req.Email == "" {
		return mxerr.MissingParam.With("email is required")
	}
	if req.SendAttempt == nil {
		return mxerr.MissingParam.With("send_attempt is required")
	}
	return mxerr.ThreepidMediumNotSupported.With("%s", why)
}

// msisdnTokenRefused is emailTokenRefused for phone numbers.
func msisdnTokenRefused(r *http.Request, why string) error {
	var req msisdnTokenReq
	if err := httpx.DecodeJSON(r, &req); err != nil {
		return err
	}
	if err := checkClientSecret(req.ClientSecret); err != nil {
		return err
	}
	if req.Country == nil || *req.Country == "" {
		return mxerr.MissingParam.With("country is required")
	}
	if req.PhoneNumber == nil || *req.PhoneNumber == "" {
		return mxerr.MissingParam.With("phone_number is required")
	}
	if req.SendAttempt == nil {
		return mxerr.MissingParam.With("send_attempt is required")
	}
	return mxerr.ThreepidMediumNotSupported.With("%s", why)
}

type threepidsResp struct {
	Threepids []struct{} `json:"threepids"`
}

// getAccount3PIDs serves GET /_matrix/client/v3/account/3pid
// (administrative_contact.yaml). No 3PID can be added, so the list is
// always empty.
func (a *API) getAccount3PIDs(w http.ResponseWriter, r *http.Request) error {
	return httpx.OK(w, threepidsResp{Threepids: []struct{}{}})
}

type threepidCreds struct {
	ClientSecret *string `json:"client_secret"`
	SID          *string `json:"sid"`
	IDServer     *string `json:"id_server"`
	IDAccess     *string `json:"id_access_token"`
}

type post3PIDsReq struct {
	ThreePIDCreds    *threepidCreds `json:"three_pid_creds"`
	OldThreePIDCreds *threepidCreds `json:"threePidCreds"`
}

// post3PIDs serves the deprecated POST /_matrix/client/v3/account/3pid
// (administrative_contact.yaml). No validation session can exist, so a
// well-formed request fails with M_THREEPID_AUTH_FAILED as Synapse's
// does when the session is unknown.
func (a *API) post3PIDs(w http.ResponseWriter, r *http.Request) error {
	var req post3PIDsReq
	if err := httpx.DecodeJSON(r, &req); err != nil {
		return err
	}
	creds := req.ThreePIDCreds
	if creds == nil {
		creds = req.OldThreePIDCreds
	}
	if creds == nil {
		return mxerr.MissingParam.With("three_pid_creds is required")
	}
	if err := checkClientSecret(creds.ClientSecret); err != nil {
		return err
	}
	if creds.SID == nil || *creds.SID == "" {
		return mxerr.MissingParam.With("sid is required")
	}
	return mxerr.ThreepidAuthFailed.With("no validated 3pid session found")
}

type add3PIDReq struct {
	ClientSecret *string   `json:"client_secret"`
	SID          *string   `json:"sid"`
	Auth         *authDict `json:"auth"`
}

// add3PID serves POST /_matrix/client/v3/account/3pid/add
// (administrative_contact.yaml) behind User-Interactive Authentication,
// as Synapse does; once authenticated, the session sid cannot have been
// validated here, so it fails with M_THREEPID_AUTH_FAILED.
func (a *API) add3PID(w http.ResponseWriter, r *http.Request) error {
	var req add3PIDReq
	if err := httpx.DecodeJSON(r, &req); err != nil {
		return err
	}
	if err := checkClientSecret(req.ClientSecret); err != nil {
		return err
	}
	if req.SID == nil || *req.SID == "" {
		return mxerr.MissingParam.With("sid is required")
	}
	sess := session(r)
	uia, done, err := a.interactiveAuth(w, r, uiaCall{
		purpose: "add_3pid", user: sess.UserID, flows: passwordFlows, auth: req.Auth,
	})
	if err != nil || !done {
		return err
	}
	a.uia.finish(uia.id)
	return mxerr.ThreepidAuthFailed.With("no validated 3pid session found")
}

// bind3PID serves POST /_matrix/client/v3/account/3pid/bind
// (administrative_contact.yaml). Myelin does not talk to identity
// servers, so a well-formed request is refused.
func (a *API) bind3PID(w http.ResponseWriter, r *http.Request) error {
	var req threepidCreds
	if err := httpx.DecodeJSON(r, &req); err != nil {
		return err
	}
	if err := checkClientSecret(req.ClientSecret); err != nil {
		return err
	}
	for name, v := range map[string]*string{"sid": req.SID, "id_server": req.IDServer, "id_access_token": req.IDAccess} {
		if v == nil || *v == "" {
			return mxerr.MissingParam.With("%s is required", name)
		}
	}
	return mxerr.ThreepidAuthFailed.With("this homeserver does not bind third-party identifiers on identity servers")
}

type threepidRemoveReq struct {
	Medium   *string `json:"medium"`
	Address  *string `json:"address"`
	IDServer *string `json:"id_server"`
}

type threepidRemoveResp struct {
	IDServerUnbindResult string `json:"id_server_unbind_result"`
}

func decodeThreepidRemove(r *http.Request) error {
	var req threepidRemoveReq
	if err := httpx.DecodeJSON(r, &req); err != nil {
		return err
	}
	if req.Medium == nil {
		return mxerr.MissingParam.With("medium is required")
	}
	if *req.Medium != "email" && *req.Medium != "msisdn" {
		return mxerr.InvalidParam.With("medium must be email or msisdn")
	}
	if req.Address == nil {
		return mxerr.MissingParam.With("address is required")
	}
	return nil
}

// delete3pidFromAccount serves POST /_matrix/client/v3/account/3pid/delete
// (administrative_contact.yaml). Deleting an identifier the account does
// not have succeeds; nothing was unbound from an identity server, which
// is "no-support", Synapse's answer.
func (a *API) delete3pidFromAccount(w http.ResponseWriter, r *http.Request) error {
	if err := decodeThreepidRemove(r); err != nil {
		return err
	}
	return httpx.OK(w, threepidRemoveResp{IDServerUnbindResult: "no-support"})
}

// unbind3pidFromAccount serves POST /_matrix/client/v3/account/3pid/unbind
// (administrative_contact.yaml): there is no identity server to unbind
// from, hence "no-support".
func (a *API) unbind3pidFromAccount(w http.ResponseWriter, r *http.Request) error {
	if err := decodeThreepidRemove(r); err != nil {
		return err
	}
	return httpx.OK(w, threepidRemoveResp{IDServerUnbindResult: "no-support"})
}

// requestTokenTo3PIDEmail serves POST
// /_matrix/client/v3/account/3pid/email/requestToken
// (administrative_contact.yaml).
func (a *API) requestTokenTo3PIDEmail(w http.ResponseWriter, r *http.Request) error {
	return emailTokenRefused(r, "adding an email to your account is disabled on this server")
}

// requestTokenTo3PIDMSISDN serves POST
// /_matrix/client/v3/account/3pid/msisdn/requestToken
// (administrative_contact.yaml).
func (a *API) requestTokenTo3PIDMSISDN(w http.ResponseWriter, r *http.Request) error {
	return msisdnTokenRefused(r, "adding phone numbers to your account is not supported by this homeserver")
}
