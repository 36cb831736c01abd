// Package email sends mail through the operator's SMTP server: plain,
// STARTTLS when offered (or required), or TLS from the start, with PLAIN
// authentication. It owns message formatting (headers, encoding) and
// nothing about what the mails say; threepid writes those.
//
// email imports config only.
package email

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"mime"
	"net"
	"net/mail"
	"net/smtp"
	"strconv"
	"strings"
	"time"

	"github.com/myelin-chat/myelin/internal/config"
)

// Message is one plain-text mail to one recipient.
type Message struct {
	To      string
	Subject string
	Body    string
}

// Sender sends mail as configured.
type Sender struct {
	cfg  config.Email
	from *mail.Address
	// tlsConfig is for tests with their own CA; nil uses the system's.
	tlsConfig *tls.Config
}

// New returns a Sender for cfg, which must be Enabled.
func New(cfg config.Email) (*Sender, error) {
	from, err := mail.ParseAddress(strings.ReplaceAll(cfg.NotifFrom, "%(app)s", cfg.AppName))
	if err != nil {
		return nil, fmt.Errorf("email.notif_from %q is not an address: %w", cfg.NotifFrom, err)
	}
	return &Sender{cfg: cfg, from: from}, nil
}

// AppName is the server's name in mails.
func (s *Sender) AppName() string { return s.cfg.AppName }

// Send delivers m. It gives up when ctx ends or after 30 seconds.
func (s *Sender) Send(ctx context.Context, m Message) error {
	to, err := mail.ParseAddress(m.To)
	if err != nil {
		return fmt.Errorf("recipient %q: %w", m.To, err)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	addr := net.JoinHostPort(s.cfg.SMTPHost, strconv.Itoa(s.cfg.SMTPPort))
	tlsCfg := s.tlsConfig.Clone()
	if tlsCfg == nil {
		tlsCfg = &tls.Config{}
	}
	tlsCfg.ServerName = s.cfg.SMTPHost
	var conn net.Conn
	if s.cfg.ForceTLS {
		conn, err = (&tls.Dialer{Config: tlsCfg}).DialContext(ctx, "tcp", addr)
	} else {
		conn, err = (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return fmt.Errorf("connecting to the SMTP server %s: %w", addr, err)
	}
	if d, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(d)
	}
	c, err := smtp.NewClient(conn, s.cfg.SMTPHost)
	if err != nil {
		conn.Close()
		return fmt.Errorf("greeting the SMTP server %s: %w", addr, err)
	}
	defer c.Close()
	if !s.cfg.ForceTLS {
		if ok, _ := c.Extension("STARTTLS"); ok && (s.cfg.EnableTLS || s.cfg.RequireTransportSecurity) {
			if err := c.StartTLS(tlsCfg); err != nil {
				return fmt.Errorf("STARTTLS with %s: %w", addr, err)
			}
		} else if s.cfg.RequireTransportSecurity {
			return fmt.Errorf("the SMTP server %s offers no STARTTLS, and require_transport_security is set", addr)
		}
	}
	if s.cfg.SMTPUser != "" {
		// net/smtp refuses PLAIN over an unencrypted link except to
		// loopback, which is the protection wanted.
		if err := c.Auth(smtp.PlainAuth("", s.cfg.SMTPUser, s.cfg.SMTPPass, s.cfg.SMTPHost)); err != nil {
			return fmt.Errorf("logging in to the SMTP server %s: %w", addr, err)
		}
	}
	if err := c.Mail(s.from.Address); err != nil {
		return fmt.Errorf("SMTP MAIL FROM: %w", err)
	}
	if err := c.Rcpt(to.Address); err != nil {
		return fmt.Errorf("SMTP RCPT TO %s: %w", to.Address, err)
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("SMTP DATA: %w", err)
	}
	if _, err := w.Write(s.format(to, m)); err != nil {
		return fmt.Errorf("writing the mail: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("sending the mail: %w", err)
	}
	if err := c.Quit(); err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("closing the SMTP session: %w", err)
	}
	return nil
}

// format renders m with its headers, the body as 8-bit UTF-8, lines
// ending CRLF.
func (s *Sender) format(to *mail.Address, m Message) []byte {
	var b strings.Builder
	domain := s.from.Address[strings.LastIndexByte(s.from.Address, '@')+1:]
	h := [][2]string{
		{"From", s.from.String()},
		{"To", to.String()},
		{"Subject", mime.QEncoding.Encode("utf-8", m.Subject)},
		{"Date", time.Now().Format(time.RFC1123Z)},
		{"Message-ID", "<" + rand.Text() + "@" + domain + ">"},
		{"MIME-Version", "1.0"},
		{"Content-Type", "text/plain; charset=utf-8"},
		{"Content-Transfer-Encoding", "8bit"},
	}
	for _, kv := range h {
		b.WriteString(kv[0] + ": " + kv[1] + "\r\n")
	}
	b.WriteString("\r\n")
	// The DATA writer does the dot-stuffing.
	for _, line := range strings.Split(strings.ReplaceAll(m.Body, "\r\n", "\n"), "\n") {
		b.WriteString(line + "\r\n")
	}
	return []byte(b.String())
}
