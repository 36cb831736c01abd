package homeserver_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"regexp"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"maunium.net/go/mautrix"

	"github.com/myelin-chat/myelin/internal/config"
	"github.com/myelin-chat/myelin/internal/mxtest"
)

// mailbox is a real SMTP server on loopback that keeps what it receives.
type mailbox struct {
	port int
	got  chan string
}

type mailBackend struct{ got chan string }

func (b mailBackend) NewSession(*smtp.Conn) (smtp.Session, error) {
	return &mailSession{got: b.got}, nil
}

type mailSession struct{ got chan string }

func (s *mailSession) Mail(string, *smtp.MailOptions) error { return nil }
func (s *mailSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s *mailSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err == nil {
		s.got <- string(b)
	}
	return err
}
func (s *mailSession) Reset()        {}
func (s *mailSession) Logout() error { return nil }

func startMailbox(t *testing.T) *mailbox {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mb := &mailbox{port: ln.Addr().(*net.TCPAddr).Port, got: make(chan string, 10)}
	srv := smtp.NewServer(mailBackend{got: mb.got})
	srv.Domain = "localhost"
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return mb
}

// next returns the next mail's validation link and code.
func (mb *mailbox) next(t *testing.T) (link, code string) {
	t.Helper()
	select {
	case m := <-mb.got:
		l := regexp.MustCompile(`http://\S+/_myelin/client/email/validate\?\S+`).FindString(m)
		c := regexp.MustCompile(`code in your client: (\S+)`).FindStringSubmatch(m)
		if l == "" || c == nil {
			t.Fatalf("a validation mail without link or code:\n%s", m)
		}
		return l, c[1]
	case <-time.After(30 * time.Second):
		t.Fatal("no mail arrived")
	}
	return "", ""
}

// none checks that no mail arrives for a moment.
func (mb *mailbox) none(t *testing.T, what string) {
	t.Helper()
	select {
	case m := <-mb.got:
		t.Errorf("%s: a mail was sent:\n%s", what, m)
	case <-time.After(300 * time.Millisecond):
	}
}

// TestEmail: with an SMTP server configured, an address is validated by
// the mailed link or code and added to the account, is used to register
// and to log in, and resets a forgotten password end to end.
func TestEmail(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		mb := startMailbox(t)
		hs := mxtest.Start(t, engine, func(c *config.Config) {
			c.Email.SMTPHost, c.Email.SMTPPort, c.Email.NotifFrom = "127.0.0.1", mb.port, "%(app)s <noreply@example.org>"
		})
		alice := hs.Client("alice")
		anon := hs.Anonymous()
		secret := "secret" + engine
		type tokenResp struct {
			SID       string `json:"sid"`
			SubmitURL string `json:"submit_url"`
		}
		requestToken := func(cli *mautrix.Client, path mautrix.ClientURLPath, addr string, attempt int) (tokenResp, error) {
			var out tokenResp
			_, err := cli.MakeRequest(ctx, "POST", cli.BuildClientURL(path...), map[string]any{
				"client_secret": secret, "email": addr, "send_attempt": attempt}, &out)
			return out, err
		}
		list := func() []map[string]any {
			var out struct {
				Threepids []map[string]any `json:"threepids"`
			}
			if _, err := alice.MakeRequest(ctx, "GET", alice.BuildClientURL("v3", "account", "3pid"), nil, &out); err != nil {
				t.Fatal(err)
			}
			return out.Threepids
		}
		passwordAuth := func(cli *mautrix.Client, password string) map[string]any {
			return map[string]any{"type": "m.login.password", "password": password,
				"identifier": map[string]any{"type": "m.id.user", "user": cli.UserID.String()}}
		}
		if got := list(); len(got) != 0 {
			t.Fatalf("3pids of a new account: %v", got)
		}

		// Add an address, validated through the link.
		add, err := requestToken(alice, mautrix.ClientURLPath{"v3", "account", "3pid", "email", "requestToken"}, "Alice@Example.org", 1)
		if err != nil || add.SID == "" || add.SubmitURL == "" {
			t.Fatalf("requestToken: %+v, %v", add, err)
		}
		link, _ := mb.next(t)
		again, err := requestToken(alice, mautrix.ClientURLPath{"v3", "account", "3pid", "email", "requestToken"}, "alice@example.org", 1)
		if err != nil || again.SID != add.SID {
			t.Errorf("the same send_attempt again: %+v, %v; want sid %s", again, err, add.SID)
		}
		mb.none(t, "the same send_attempt again")
		add3pid := func() error {
			_, err := alice.MakeRequest(ctx, "POST", alice.BuildClientURL("v3", "account", "3pid", "add"), map[string]any{
				"client_secret": secret, "sid": add.SID, "auth": passwordAuth(alice, "password-"+alice.UserID.Localpart())}, nil)
			return err
		}
		wantMxErr(t, "adding an address not validated yet", add3pid(), 400, "M_THREEPID_AUTH_FAILED")
		resp, err := http.Get(link)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("opening the validation link: %v %v", resp, err)
		}
		resp.Body.Close()
		if err := add3pid(); err != nil {
			t.Fatalf("adding the validated address: %v", err)
		}
		if got := list(); len(got) != 1 || got[0]["medium"] != "email" || got[0]["address"] != "alice@example.org" {
			t.Errorf("3pids after adding: %v", got)
		}
		_, err = requestToken(anon, mautrix.ClientURLPath{"v3", "register", "email", "requestToken"}, "alice@example.org", 1)
		wantMxErr(t, "registering with an address in use", err, 400, "M_THREEPID_IN_USE")

		// Log in with the address.
		if _, err := anon.Login(ctx, &mautrix.ReqLogin{Type: mautrix.AuthTypePassword, Password: "password-" + alice.UserID.Localpart(),
			Identifier: mautrix.UserIdentifier{Type: mautrix.IdentifierTypeThirdParty, Medium: "email", Address: "ALICE@example.org"}}); err != nil {
			t.Errorf("logging in with the e-mail address: %v", err)
		}

		// A forgotten password, reset with the code typed in.
		_, err = requestToken(anon, mautrix.ClientURLPath{"v3", "account", "password", "email", "requestToken"}, "nobody@example.org", 1)
		wantMxErr(t, "a reset for an unknown address", err, 400, "M_THREEPID_NOT_FOUND")
		reset, err := requestToken(anon, mautrix.ClientURLPath{"v3", "account", "password", "email", "requestToken"}, "alice@example.org", 1)
		if err != nil {
			t.Fatal(err)
		}
		_, code := mb.next(t)
		if _, err := anon.MakeRequest(ctx, "POST", reset.SubmitURL, map[string]any{"sid": reset.SID, "client_secret": secret, "token": "WRONG"}, nil); err == nil {
			t.Errorf("submitting a wrong code succeeds")
		}
		var ok struct {
			Success bool `json:"success"`
		}
		if _, err := anon.MakeRequest(ctx, "POST", reset.SubmitURL, map[string]any{"sid": reset.SID, "client_secret": secret, "token": code}, &ok); err != nil || !ok.Success {
			t.Fatalf("submitting the code: %v %v", ok, err)
		}
		changeURL := anon.BuildClientURL("v3", "account", "password")
		_, err = anon.MakeRequest(ctx, "POST", changeURL, map[string]any{"new_password": "new-password"}, nil)
		var he mautrix.HTTPError
		if !errors.As(err, &he) || he.Response.StatusCode != 401 {
			t.Fatalf("a reset without auth: %v, want 401 with the UIA flows", err)
		}
		if _, err := anon.MakeRequest(ctx, "POST", changeURL, map[string]any{"new_password": "new-password", "auth": map[string]any{
			"type": "m.login.email.identity", "threepid_creds": map[string]any{"sid": reset.SID, "client_secret": secret}}}, nil); err != nil {
			t.Fatalf("resetting the password: %v", err)
		}
		if _, err := alice.Whoami(ctx); err == nil {
			t.Errorf("alice's devices survive a password reset")
		}
		if _, err := hs.Anonymous().Login(ctx, &mautrix.ReqLogin{Type: mautrix.AuthTypePassword, Password: "password-" + alice.UserID.Localpart(),
			Identifier: mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: alice.UserID.String()}}); err == nil {
			t.Errorf("the old password works after a reset")
		}
		alice = hs.Login(alice.UserID, "new-password")
		if _, err := anon.MakeRequest(ctx, "POST", changeURL, map[string]any{"new_password": "again", "auth": map[string]any{
			"type": "m.login.email.identity", "threepid_creds": map[string]any{"sid": reset.SID, "client_secret": secret}}}, nil); err == nil {
			t.Errorf("a validation session resets the password twice")
		}

		// Register with an address.
		reg, err := requestToken(anon, mautrix.ClientURLPath{"v3", "register", "email", "requestToken"}, "bob@example.org", 1)
		if err != nil {
			t.Fatal(err)
		}
		link, _ = mb.next(t)
		if resp, err := http.Get(link); err != nil || resp.StatusCode != 200 {
			t.Fatalf("opening the validation link: %v %v", resp, err)
		} else {
			resp.Body.Close()
		}
		var registered struct {
			UserID string `json:"user_id"`
		}
		if _, err := anon.MakeRequest(ctx, "POST", anon.BuildClientURL("v3", "register"), map[string]any{
			"username": "bob" + engine, "password": "bob-password", "auth": map[string]any{
				"type": "m.login.email.identity", "threepid_creds": map[string]any{"sid": reg.SID, "client_secret": secret}}}, &registered); err != nil {
			t.Fatalf("registering with the validated address: %v", err)
		}
		if _, err := hs.Anonymous().Login(ctx, &mautrix.ReqLogin{Type: mautrix.AuthTypePassword, Password: "bob-password",
			Identifier: mautrix.UserIdentifier{Type: mautrix.IdentifierTypeThirdParty, Medium: "email", Address: "bob@example.org"}}); err != nil {
			t.Errorf("logging in with the address registered with: %v", err)
		}

		// Removing the address.
		if _, err := alice.MakeRequest(ctx, "POST", alice.BuildClientURL("v3", "account", "3pid", "delete"),
			map[string]any{"medium": "email", "address": "alice@example.org"}, nil); err != nil {
			t.Fatal(err)
		}
		if got := list(); len(got) != 0 {
			t.Errorf("3pids after deleting: %v", got)
		}
	})
}
