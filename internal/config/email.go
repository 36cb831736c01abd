package config

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"go.yaml.in/yaml/v4"
)

// Email configures the SMTP server Myelin sends mail through: today the
// validation of e-mail addresses (registration, adding an address,
// password reset). Its keys are Synapse's email section. E-mail is on
// when smtp_host and notif_from are both set.
type Email struct {
	// SMTPHost and SMTPPort are the mail server. Port default 25.
	// Env: MYELIN_EMAIL_SMTP_HOST, MYELIN_EMAIL_SMTP_PORT.
	SMTPHost string `yaml:"smtp_host,omitempty"`
	SMTPPort int    `yaml:"smtp_port,omitempty"`
	// SMTPUser and SMTPPass log in to it (PLAIN), only over TLS unless
	// the server is on loopback. Env: MYELIN_EMAIL_SMTP_USER,
	// MYELIN_EMAIL_SMTP_PASS.
	SMTPUser string `yaml:"smtp_user,omitempty"`
	SMTPPass string `yaml:"smtp_pass,omitempty"`
	// ForceTLS connects with TLS from the start (port 465). Default false.
	// Env: MYELIN_EMAIL_FORCE_TLS.
	ForceTLS bool `yaml:"force_tls,omitempty"`
	// EnableTLS upgrades with STARTTLS when the server offers it.
	// Default true. Env: MYELIN_EMAIL_ENABLE_TLS.
	EnableTLS bool `yaml:"enable_tls"`
	// RequireTransportSecurity refuses to send unless STARTTLS succeeds.
	// Default false. Env: MYELIN_EMAIL_REQUIRE_TRANSPORT_SECURITY.
	RequireTransportSecurity bool `yaml:"require_transport_security,omitempty"`
	// NotifFrom is the From header, e.g. "Example <noreply@example.org>";
	// Synapse's %(app)s is replaced by AppName. Env: MYELIN_EMAIL_NOTIF_FROM.
	NotifFrom string `yaml:"notif_from,omitempty"`
	// AppName names the server in mails. Default "Matrix".
	// Env: MYELIN_EMAIL_APP_NAME.
	AppName string `yaml:"app_name,omitempty"`
	// ValidationTokenLifetime is how long a validation link works.
	// Default 1h. Env: MYELIN_EMAIL_VALIDATION_TOKEN_LIFETIME.
	ValidationTokenLifetime Duration `yaml:"validation_token_lifetime,omitempty"`
}

func defaultEmail() Email {
	return Email{SMTPPort: 25, EnableTLS: true, AppName: "Matrix", ValidationTokenLifetime: Duration(time.Hour)}
}

// Enabled reports whether mail can be sent.
func (e Email) Enabled() bool { return e.SMTPHost != "" && e.NotifFrom != "" }

func (e Email) validate() error {
	switch {
	case e.SMTPPort <= 0 || e.SMTPPort > 65535:
		return errors.New("email.smtp_port must be a port number")
	case e.ValidationTokenLifetime <= 0:
		return errors.New("email.validation_token_lifetime must be positive")
	case (e.SMTPHost == "") != (e.NotifFrom == ""):
		return errors.New("email needs both smtp_host and notif_from")
	}
	return nil
}

func applyEmailEnv(c *Config, env func(string) (string, bool)) error {
	e := &c.Email
	var errs []error
	for key, dst := range map[string]*string{
		"MYELIN_EMAIL_SMTP_HOST":  &e.SMTPHost,
		"MYELIN_EMAIL_SMTP_USER":  &e.SMTPUser,
		"MYELIN_EMAIL_SMTP_PASS":  &e.SMTPPass,
		"MYELIN_EMAIL_NOTIF_FROM": &e.NotifFrom,
		"MYELIN_EMAIL_APP_NAME":   &e.AppName,
	} {
		if v, ok := env(key); ok {
			*dst = v
		}
	}
	for key, dst := range map[string]*bool{
		"MYELIN_EMAIL_FORCE_TLS":                  &e.ForceTLS,
		"MYELIN_EMAIL_ENABLE_TLS":                 &e.EnableTLS,
		"MYELIN_EMAIL_REQUIRE_TRANSPORT_SECURITY": &e.RequireTransportSecurity,
	} {
		if v, ok := env(key); ok && v != "" {
			b, err := strconv.ParseBool(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: want true or false", key, v))
				continue
			}
			*dst = b
		}
	}
	if v, ok := env("MYELIN_EMAIL_SMTP_PORT"); ok && v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("MYELIN_EMAIL_SMTP_PORT=%q: want a port number", v))
		}
		e.SMTPPort = n
	}
	if v, ok := env("MYELIN_EMAIL_VALIDATION_TOKEN_LIFETIME"); ok && v != "" {
		d, err := ParseDuration(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("MYELIN_EMAIL_VALIDATION_TOKEN_LIFETIME: %w", err))
		}
		e.ValidationTokenLifetime = d
	}
	if v, ok := env("MYELIN_REGISTRATIONS_REQUIRE_3PID"); ok && v != "" {
		c.RegistrationsRequire3PID = splitList(v)
	}
	return errors.Join(errs...)
}

// emailHandlers read Synapse's email section and registrations_require_3pid.
func (r *synapseReader) emailHandlers() map[string]func(string, *yaml.Node) {
	e := &r.cfg.Email
	return map[string]func(string, *yaml.Node){
		"email": func(key string, n *yaml.Node) {
			m := mapping(n)
			if m == nil {
				r.bad(key, n, "a mapping")
				return
			}
			for i := 0; i+1 < len(m.Content); i += 2 {
				k, v := m.Content[i].Value, m.Content[i+1]
				full := key + "." + k
				str := func(dst *string) {
					if s, ok := r.str(full, v); ok {
						*dst = s
					}
				}
				boolean := func(dst *bool) {
					if b, ok := r.boolean(full, v); ok {
						*dst = b
					}
				}
				switch k {
				case "smtp_host":
					str(&e.SMTPHost)
				case "smtp_user":
					str(&e.SMTPUser)
				case "smtp_pass":
					str(&e.SMTPPass)
				case "notif_from":
					str(&e.NotifFrom)
				case "app_name":
					str(&e.AppName)
				case "force_tls":
					boolean(&e.ForceTLS)
				case "enable_tls":
					boolean(&e.EnableTLS)
				case "require_transport_security":
					boolean(&e.RequireTransportSecurity)
				case "smtp_port":
					if err := v.Decode(&e.SMTPPort); err != nil {
						r.bad(full, v, "a port number")
					}
				case "validation_token_lifetime":
					if err := v.Decode(&e.ValidationTokenLifetime); err != nil {
						r.bad(full, v, "a duration such as 1h")
					}
				default:
					r.info("%s: accepted and ignored: Myelin sends no notification mails yet", full)
				}
			}
		},
		"registrations_require_3pid": func(key string, n *yaml.Node) {
			if v, ok := r.strList(key, n); ok {
				r.cfg.RegistrationsRequire3PID = v
			}
		},
	}
}
