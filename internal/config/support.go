package config

import (
	"fmt"
	"net/url"
	"strings"
)

// Support is what /.well-known/matrix/support tells users about reaching
// the server's administrators (support.yaml). With neither contacts nor a
// support page the endpoint answers 404.
type Support struct {
	// Contacts are the administrators' Matrix IDs or e-mail addresses, each
	// with a role: m.role.admin (any query), m.role.security (sensitive
	// reports) or a namespaced custom one.
	Contacts []SupportContact `yaml:"contacts,omitempty"`
	// SupportPage is the URL of a page with help for the users of this
	// server. Env: MYELIN_SUPPORT_PAGE.
	SupportPage string `yaml:"support_page,omitempty"`
}

// SupportContact is one way to reach an administrator.
type SupportContact struct {
	MatrixID     string `yaml:"matrix_id,omitempty" json:"matrix_id,omitempty"`
	EmailAddress string `yaml:"email_address,omitempty" json:"email_address,omitempty"`
	Role         string `yaml:"role" json:"role"`
}

// Configured reports whether there is anything to serve.
func (s Support) Configured() bool { return len(s.Contacts) > 0 || s.SupportPage != "" }

func (s Support) validate() error {
	for i, c := range s.Contacts {
		if c.Role == "" {
			return fmt.Errorf("support.contacts[%d]: role is required (m.role.admin or m.role.security)", i)
		}
		if c.MatrixID == "" && c.EmailAddress == "" {
			return fmt.Errorf("support.contacts[%d]: set matrix_id or email_address", i)
		}
		if c.MatrixID != "" && (!strings.HasPrefix(c.MatrixID, "@") || !strings.Contains(c.MatrixID, ":")) {
			return fmt.Errorf("support.contacts[%d].matrix_id %q is not a user ID such as @admin:example.org", i, c.MatrixID)
		}
	}
	if s.SupportPage != "" {
		if u, err := url.Parse(s.SupportPage); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return fmt.Errorf("support.support_page %q is not an http(s) URL", s.SupportPage)
		}
	}
	return nil
}
