package clientapi

import (
	"context"
	"errors"
	"net/http"
	"regexp"
	"strings"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/fedclient"
	"github.com/myelin-chat/myelin/internal/httpx"
	"github.com/myelin-chat/myelin/internal/mxerr"
	"github.com/myelin-chat/myelin/internal/threepid"
)

// E-mail addresses are validated by a mailed link or code when the
// email section is configured (internal/threepid), and then bound to the
// account; Myelin sends no SMS. Binds on identity servers are proxied
// to them (bind3PID) and remembered, to be undone on removal. Without
// e-mail, the 3PID endpoints still validate their bodies and answer as
// Synapse does when it has no email config and no msisdn delegate:
// Element's settings then show an empty list instead of "Unable to load
// email addresses".

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

// emailTokenResp answers an email requestToken endpoint.
type emailTokenResp struct {
	SID string `json:"sid"`
	// SubmitURL takes the code from the mail, for clients that ask the
	// user to type it rather than click the link.
	SubmitURL string `json:"submit_url,omitempty"`
}

// requestEmailToken decodes and checks an email requestToken body and
// mails a validation token for purpose, after check (nil: none) has
// vetted the canonical address. With e-mail off it refuses with why.
func (a *API) requestEmailToken(w http.ResponseWriter, r *http.Request, purpose threepid.Purpose, why string,
	check func(ctx context.Context, address string) error) error {
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
	if a.threepids == nil || !a.threepids.EmailEnabled() {
		return mxerr.ThreepidMediumNotSupported.With("%s", why)
	}
	address, err := threepid.CanonicalEmail(*req.Email)
	if err != nil {
		return err
	}
	if check != nil {
		if err := check(r.Context(), address); err != nil {
			return err
		}
	}
	base := a.baseURL(r)
	sid, err := a.threepids.RequestEmailToken(r.Context(), purpose, *req.ClientSecret, address, *req.SendAttempt, base+emailValidatePath)
	if err != nil {
		return err
	}
	return httpx.OK(w, emailTokenResp{SID: sid, SubmitURL: base + emailSubmitPath})
}

// emailUnused refuses an address that an account has already.
func (a *API) emailUnused(ctx context.Context, address string) error {
	owner, err := a.threepids.Owner(ctx, threepid.MediumEmail, address)
	if err != nil {
		return err
	}
	if owner != "" {
		return mxerr.ThreepidInUse.With("this email address is already in use")
	}
	return nil
}

// baseURL is where clients reach this server: public_baseurl, or the
// request's own host.
func (a *API) baseURL(r *http.Request) string {
	if a.cfg.PublicBaseURL != "" {
		return strings.TrimSuffix(a.cfg.PublicBaseURL, "/")
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// msisdnTokenRefused checks a phone number requestToken body, then
// refuses it: Myelin sends no SMS.
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
	Threepids []threepid.ThreePID `json:"threepids"`
}

// getAccount3PIDs serves GET /_matrix/client/v3/account/3pid
// (administrative_contact.yaml): the validated addresses of the account,
// an empty list when there are none.
func (a *API) getAccount3PIDs(w http.ResponseWriter, r *http.Request) error {
	out := []threepid.ThreePID{}
	if a.threepids != nil {
		var err error
		if out, err = a.threepids.List(r.Context(), session(r).UserID); err != nil {
			return err
		}
	}
	return httpx.OK(w, threepidsResp{Threepids: out})
}

// bindValidated adds the address a validated session holds to the user's
// account, then spends the session.
func (a *API) bindValidated(ctx context.Context, user id.UserID, sid, clientSecret string) error {
	if a.threepids == nil {
		return mxerr.ThreepidAuthFailed.With("no validated 3pid session found")
	}
	tp, err := a.threepids.Validated(ctx, sid, clientSecret)
	if err != nil {
		return err
	}
	if err := a.threepids.Bind(ctx, user, tp); err != nil {
		return err
	}
	return a.threepids.Spend(ctx, sid)
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
// (administrative_contact.yaml): like /3pid/add without its UIA, as
// Synapse serves it; an unknown or unvalidated session is
// M_THREEPID_AUTH_FAILED.
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
	if err := a.bindValidated(r.Context(), session(r).UserID, *creds.SID, *creds.ClientSecret); err != nil {
		return err
	}
	return httpx.OK(w, httpx.Empty)
}

type add3PIDReq struct {
	ClientSecret *string   `json:"client_secret"`
	SID          *string   `json:"sid"`
	Auth         *authDict `json:"auth"`
}

// add3PID serves POST /_matrix/client/v3/account/3pid/add
// (administrative_contact.yaml) behind User-Interactive Authentication:
// the address of the validated session sid joins the account.
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
	if err := a.bindValidated(r.Context(), sess.UserID, *req.SID, *req.ClientSecret); err != nil {
		return err
	}
	a.uia.finish(uia.id)
	return httpx.OK(w, httpx.Empty)
}

// IdentityServers reaches identity servers (fedclient.Client).
type IdentityServers interface {
	PostIdentity(ctx context.Context, idServer, path, bearer string, signed bool, body, out any) error
}

// WithIdentityServers proxies 3PID binds and unbinds to identity servers
// through c.
func WithIdentityServers(c IdentityServers) Option { return func(a *API) { a.identity = c } }

// serverNameRE is the grammar of an id_server: a host name or IP literal
// with an optional port (spec appendices, server names).
var serverNameRE = regexp.MustCompile(`^(\[[0-9A-Fa-f:.]{2,45}\]|[0-9A-Za-z.-]{1,255})(:[0-9]{1,5})?$`)

// identityError passes on an identity server's Matrix error, as the spec
// asks for binds, and makes anything else (it could not be reached, or
// answered nonsense) a 400: the client named the server.
func identityError(idServer string, err error) error {
	var fe *fedclient.Error
	if errors.As(err, &fe) && fe.Status >= 400 && fe.Status < 500 && fe.Code != "" {
		return &mxerr.Error{Code: fe.Code, Status: fe.Status, Message: "identity server: " + fe.Message, Cause: err}
	}
	return mxerr.Unknown.WithStatus(http.StatusBadRequest).With("identity server %s failed", idServer).Wrap(err)
}

// bind3PID serves POST /_matrix/client/v3/account/3pid/bind
// (administrative_contact.yaml): the identity server id_server binds the
// identifier its session sid validated to the user, and the bind is
// remembered so that removing the identifier or the account unbinds it
// there. The identity server's errors are passed on.
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
	if !serverNameRE.MatchString(*req.IDServer) {
		return mxerr.InvalidParam.With("id_server must be a server name")
	}
	if a.identity == nil || a.threepids == nil {
		return mxerr.ThreepidAuthFailed.With("this homeserver does not bind third-party identifiers on identity servers")
	}
	user := session(r).UserID
	var bound struct {
		Medium  string `json:"medium"`
		Address string `json:"address"`
	}
	err := a.identity.PostIdentity(r.Context(), *req.IDServer, "/_matrix/identity/v2/3pid/bind", *req.IDAccess, false,
		map[string]string{"sid": *req.SID, "client_secret": *req.ClientSecret, "mxid": user.String()}, &bound)
	if err != nil {
		return identityError(*req.IDServer, err)
	}
	if bound.Medium == "" || bound.Address == "" {
		return mxerr.Unknown.WithStatus(http.StatusBadRequest).With("identity server %s did not say what it bound", *req.IDServer)
	}
	if err := a.threepids.RecordBind(r.Context(), user, bound.Medium, bound.Address, *req.IDServer); err != nil {
		return err
	}
	return httpx.OK(w, httpx.Empty)
}

// unbindIdentity unbinds an identifier of user from idServer ("": every
// identity server it was bound on here) with a request signed by this
// server, as Synapse does. It returns "success" when every unbind
// succeeded and there was one, else "no-support".
func (a *API) unbindIdentity(ctx context.Context, user id.UserID, medium, address, idServer string) (string, error) {
	if a.identity == nil || a.threepids == nil {
		return "no-support", nil
	}
	binds, err := a.threepids.Binds(ctx, user, medium, address)
	if err != nil {
		return "", err
	}
	servers := map[string]bool{}
	for _, b := range binds {
		servers[b.IDServer] = true
	}
	if idServer != "" {
		if !serverNameRE.MatchString(idServer) {
			return "", mxerr.InvalidParam.With("id_server must be a server name")
		}
		servers = map[string]bool{idServer: true}
	}
	result := "no-support"
	for server := range servers {
		body := map[string]any{"mxid": user.String(), "threepid": map[string]string{"medium": medium, "address": address}}
		if err := a.identity.PostIdentity(ctx, server, "/_matrix/identity/v2/3pid/unbind", "", true, body, nil); err != nil {
			a.log.Warn("unbinding a 3pid on an identity server", "server", server, "user_id", user, "err", err)
			return "no-support", nil
		}
		if err := a.threepids.ForgetBind(ctx, user, medium, address, server); err != nil {
			return "", err
		}
		result = "success"
	}
	return result, nil
}

type threepidRemoveReq struct {
	Medium   *string `json:"medium"`
	Address  *string `json:"address"`
	IDServer *string `json:"id_server"`
}

type threepidRemoveResp struct {
	IDServerUnbindResult string `json:"id_server_unbind_result"`
}

// threepidRemoval is a checked body of /3pid/delete or /3pid/unbind: an
// e-mail address lower-cased as it is stored, idServer "" when absent.
type threepidRemoval struct {
	medium, address, idServer string
}

func decodeThreepidRemove(r *http.Request) (threepidRemoval, error) {
	var req threepidRemoveReq
	if err := httpx.DecodeJSON(r, &req); err != nil {
		return threepidRemoval{}, err
	}
	if req.Medium == nil {
		return threepidRemoval{}, mxerr.MissingParam.With("medium is required")
	}
	if *req.Medium != "email" && *req.Medium != "msisdn" {
		return threepidRemoval{}, mxerr.InvalidParam.With("medium must be email or msisdn")
	}
	if req.Address == nil {
		return threepidRemoval{}, mxerr.MissingParam.With("address is required")
	}
	out := threepidRemoval{medium: *req.Medium, address: *req.Address}
	if out.medium == threepid.MediumEmail {
		out.address = strings.ToLower(out.address)
	}
	if req.IDServer != nil {
		out.idServer = *req.IDServer
	}
	return out, nil
}

// delete3pidFromAccount serves POST /_matrix/client/v3/account/3pid/delete
// (administrative_contact.yaml). Deleting an identifier the account does
// not have succeeds; nothing was unbound from an identity server, which
// is "no-support", Synapse's answer.
func (a *API) delete3pidFromAccount(w http.ResponseWriter, r *http.Request) error {
	req, err := decodeThreepidRemove(r)
	if err != nil {
		return err
	}
	user := session(r).UserID
	result, err := a.unbindIdentity(r.Context(), user, req.medium, req.address, req.idServer)
	if err != nil {
		return err
	}
	if a.threepids != nil {
		if err := a.threepids.Unbind(r.Context(), user, req.medium, req.address); err != nil {
			return err
		}
	}
	return httpx.OK(w, threepidRemoveResp{IDServerUnbindResult: result})
}

// unbind3pidFromAccount serves POST /_matrix/client/v3/account/3pid/unbind
// (administrative_contact.yaml): the identifier is unbound from the
// identity servers it was bound on through this server (or from
// id_server), and stays on the account.
func (a *API) unbind3pidFromAccount(w http.ResponseWriter, r *http.Request) error {
	req, err := decodeThreepidRemove(r)
	if err != nil {
		return err
	}
	result, err := a.unbindIdentity(r.Context(), session(r).UserID, req.medium, req.address, req.idServer)
	if err != nil {
		return err
	}
	return httpx.OK(w, threepidRemoveResp{IDServerUnbindResult: result})
}

// requestTokenTo3PIDEmail serves POST
// /_matrix/client/v3/account/3pid/email/requestToken
// (administrative_contact.yaml).
func (a *API) requestTokenTo3PIDEmail(w http.ResponseWriter, r *http.Request) error {
	return a.requestEmailToken(w, r, threepid.AddToAccount, "adding an email to your account is disabled on this server", a.emailUnused)
}

// requestTokenTo3PIDMSISDN serves POST
// /_matrix/client/v3/account/3pid/msisdn/requestToken
// (administrative_contact.yaml).
func (a *API) requestTokenTo3PIDMSISDN(w http.ResponseWriter, r *http.Request) error {
	return msisdnTokenRefused(r, "adding phone numbers to your account is not supported by this homeserver")
}
