package config

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v4"
)

// A Synapse homeserver.yaml is accepted in place of Myelin's own file, so
// an operator can swap Synapse's container image for Myelin's. Synapse's
// keys that real deployments set map onto Myelin's settings; keys Myelin
// has no use for are accepted and named in a Note; unknown keys get a
// warning; invalid values are errors naming the key and the expected form.
//
// Myelin does not read Synapse's database: point `database` at a new one.

// Note is something Load tells the operator about the config file; the
// caller logs it.
type Note struct {
	// Warn marks notes that may need action (unknown keys, settings that
	// change behaviour); the rest are informational.
	Warn bool
	Msg  string
}

// isSynapse reports whether the YAML document is a Synapse config: it has
// listeners, a database mapping with a name, or report_stats.
func isSynapse(doc *yaml.Node) bool {
	root := mapping(doc)
	if root == nil {
		return false
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		switch root.Content[i].Value {
		case "listeners", "report_stats", "macaroon_secret_key":
			return true
		case "database":
			if v := root.Content[i+1]; v.Kind == yaml.MappingNode && lookup(v, "name") != nil {
				return true
			}
		}
	}
	return false
}

// mapping returns the mapping at the top of a document node, or nil.
func mapping(doc *yaml.Node) *yaml.Node {
	n := doc
	if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		n = n.Content[0]
	}
	if n.Kind != yaml.MappingNode {
		return nil
	}
	return n
}

func lookup(m *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

// synapseReader maps one Synapse config onto cfg, collecting notes and
// errors as it goes.
type synapseReader struct {
	cfg   *Config
	notes []Note
	errs  []error
	synapseState
}

func (r *synapseReader) bad(key string, n *yaml.Node, form string) {
	r.errs = append(r.errs, fmt.Errorf("%s (line %d): want %s", key, n.Line, form))
}

func (r *synapseReader) warn(format string, args ...any) {
	r.notes = append(r.notes, Note{Warn: true, Msg: fmt.Sprintf(format, args...)})
}

func (r *synapseReader) info(format string, args ...any) {
	r.notes = append(r.notes, Note{Msg: fmt.Sprintf(format, args...)})
}

// str decodes a scalar string (null is the empty string).
func (r *synapseReader) str(key string, n *yaml.Node) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		r.bad(key, n, "a string")
		return "", false
	}
	if n.Tag == "!!null" {
		return "", true
	}
	return n.Value, true
}

func (r *synapseReader) boolean(key string, n *yaml.Node) (bool, bool) {
	var b bool
	if n.Kind != yaml.ScalarNode || n.Decode(&b) != nil {
		r.bad(key, n, "true or false")
		return false, false
	}
	return b, true
}

func (r *synapseReader) strList(key string, n *yaml.Node) ([]string, bool) {
	var out []string
	if n.Tag == "!!null" {
		return nil, true
	}
	if n.Kind != yaml.SequenceNode || n.Decode(&out) != nil {
		r.bad(key, n, "a list of strings")
		return nil, false
	}
	return out, true
}

// handlers maps each top-level key Myelin reads to its handler.
func (r *synapseReader) handlers() map[string]func(key string, n *yaml.Node) {
	setStr := func(dst *string) func(string, *yaml.Node) {
		return func(key string, n *yaml.Node) {
			if v, ok := r.str(key, n); ok {
				*dst = v
			}
		}
	}
	setBool := func(dst *bool) func(string, *yaml.Node) {
		return func(key string, n *yaml.Node) {
			if v, ok := r.boolean(key, n); ok {
				*dst = v
			}
		}
	}
	c := r.cfg
	h := map[string]func(string, *yaml.Node){
		"server_name":                 setStr(&c.ServerName),
		"public_baseurl":              setStr(&c.PublicBaseURL),
		"signing_key_path":            setStr(&c.SigningKeyPath),
		"registration_shared_secret":  setStr(&c.RegistrationSharedSecret),
		"enable_registration":         setBool(&c.EnableRegistration),
		"allow_guest_access":          setBool(&c.AllowGuestAccess),
		"serve_server_wellknown":      setBool(&c.ServeServerWellKnown),
		"tls_certificate_path":        setStr(&c.Federation.TLSCert),
		"tls_private_key_path":        setStr(&c.Federation.TLSKey),
		"listeners":                   r.listeners,
		"database":                    r.database,
		"trusted_key_servers":         r.trustedKeyServers,
		"auto_join_rooms":             r.autoJoinRooms,
		"autocreate_auto_join_rooms":  setBool(&c.AutocreateAutoJoinRooms),
		"enable_registration_captcha": setBool(&c.Recaptcha.Enabled),
		"recaptcha_public_key":        setStr(&c.Recaptcha.PublicKey),
		"recaptcha_private_key":       setStr(&c.Recaptcha.PrivateKey),
		"recaptcha_siteverify_api":    setStr(&c.Recaptcha.SiteverifyAPI),
		"log_config":                  r.ignoredStr("Myelin logs to standard error; set log_level or MYELIN_LOG_LEVEL"),
		"pid_file":                    r.ignoredStr("Myelin writes no PID file"),
		"macaroon_secret_key":         r.ignoredStr("Myelin does not use macaroons"),
		"form_secret":                 r.ignoredStr("Myelin serves no HTML forms"),
		"report_stats": func(key string, n *yaml.Node) {
			if _, ok := r.boolean(key, n); ok {
				r.info("%s: accepted and ignored: Myelin never reports usage statistics", key)
			}
		},
		"allow_public_rooms_over_federation":   setBool(&c.Federation.AllowPublicRooms),
		"autocreate_auto_join_rooms_federated": r.ignoredBool("auto-join rooms are created as local rooms, open to federation"),
		"enable_registration_without_verification": func(key string, n *yaml.Node) {
			_, _ = r.boolean(key, n) // Myelin registration never verifies email or phone
		},
		"enable_metrics": func(key string, n *yaml.Node) {
			if v, ok := r.boolean(key, n); ok {
				r.metricsOff = !v
			}
		},
		"suppress_key_server_warning": func(key string, n *yaml.Node) { _, _ = r.boolean(key, n) },
		"presence": func(key string, n *yaml.Node) {
			m := mapping(n)
			if m == nil {
				r.bad(key, n, "a mapping")
				return
			}
			for i := 0; i+1 < len(m.Content); i += 2 {
				k, v := m.Content[i].Value, m.Content[i+1]
				if k != "enabled" {
					r.warn("%s.%s: unknown Synapse setting, ignored", key, k)
					continue
				}
				// Synapse also accepts "untracked" (presence kept for
				// clients but not tracked): Myelin treats it as on.
				if v.Kind == yaml.ScalarNode && v.Value == "untracked" {
					r.info("%s.enabled: untracked is treated as true", key)
					r.cfg.Presence.Enabled = true
					continue
				}
				if b, ok := r.boolean(key+".enabled", v); ok {
					r.cfg.Presence.Enabled = b
				}
			}
		},
		"use_presence": setBool(&c.Presence.Enabled),
		"user_directory": func(key string, n *yaml.Node) {
			m := mapping(n)
			if m == nil {
				r.bad(key, n, "a mapping")
				return
			}
			if v := lookup(m, "search_all_users"); v != nil {
				if b, ok := r.boolean(key+".search_all_users", v); ok {
					r.cfg.UserDirectory.SearchAllUsers = b
				}
			}
		},
	}
	maps.Copy(h, r.urlPreviewHandlers())
	maps.Copy(h, r.turnHandlers())
	maps.Copy(h, r.sessionsHandlers())
	maps.Copy(h, r.emailHandlers())
	return h
}

// ignoredStr accepts a string-valued key Myelin does not use.
func (r *synapseReader) ignoredStr(why string) func(string, *yaml.Node) {
	return func(key string, n *yaml.Node) {
		if _, ok := r.str(key, n); ok {
			r.info("%s: accepted and ignored: %s", key, why)
		}
	}
}

// ignoredBool accepts a boolean key Myelin does not use.
func (r *synapseReader) ignoredBool(why string) func(string, *yaml.Node) {
	return func(key string, n *yaml.Node) {
		if _, ok := r.boolean(key, n); ok {
			r.info("%s: accepted and ignored: %s", key, why)
		}
	}
}

// readSynapse applies the Synapse config doc to cfg.
func readSynapse(cfg *Config, doc *yaml.Node) ([]Note, error) {
	// Synapse keeps its directory from other servers unless told otherwise.
	cfg.Federation.AllowPublicRooms = false
	r := &synapseReader{cfg: cfg}
	root := mapping(doc)
	h := r.handlers()
	for k, f := range r.mediaHandlers() {
		h[k] = f
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		key, val := root.Content[i].Value, root.Content[i+1]
		if f, ok := h[key]; ok {
			f(key, val)
			continue
		}
		r.warn("%s: unknown Synapse setting, ignored", key)
	}
	if r.metricsOff && cfg.MetricsListen != "" {
		r.info("enable_metrics is false: the metrics listener is not started")
		cfg.MetricsListen = ""
	}
	r.info("read a Synapse homeserver.yaml; Myelin keeps its own schema and cannot use a database Synapse has written")
	return r.notes, errors.Join(r.errs...)
}

// synapseState holds what settings that depend on each other need.
type synapseState struct {
	metricsOff bool
	httpSeen   bool
}

// listeners maps Synapse listeners: the first plain HTTP listener is the
// client (and proxied federation) listener, an HTTP listener with tls the
// federation TLS listener, a metrics listener metrics_listen.
func (r *synapseReader) listeners(key string, n *yaml.Node) {
	if n.Kind != yaml.SequenceNode {
		r.bad(key, n, "a list of listeners")
		return
	}
	for i, l := range n.Content {
		path := fmt.Sprintf("%s[%d]", key, i)
		if l.Kind != yaml.MappingNode {
			r.bad(path, l, "a mapping with port, type and resources")
			continue
		}
		var port int
		var typ string
		var tls, xff bool
		var binds []string
		var resources []string
		for j := 0; j+1 < len(l.Content); j += 2 {
			k, v := l.Content[j].Value, l.Content[j+1]
			sub := path + "." + k
			switch k {
			case "port":
				if v.Kind != yaml.ScalarNode || v.Decode(&port) != nil || port < 1 || port > 65535 {
					r.bad(sub, v, "a port number from 1 to 65535")
					port = -1
				}
			case "type":
				typ, _ = r.str(sub, v)
			case "tls":
				tls, _ = r.boolean(sub, v)
			case "x_forwarded":
				xff, _ = r.boolean(sub, v)
			case "bind_addresses":
				binds, _ = r.strList(sub, v)
			case "bind_address":
				if b, ok := r.str(sub, v); ok {
					binds = []string{b}
				}
			case "resources":
				resources = r.resources(sub, v)
			case "compress", "request_id_header", "tag", "experimental_listener_type":
			default:
				r.warn("%s: unknown listener setting, ignored", sub)
			}
		}
		if port == 0 {
			r.bad(path+".port", l, "a port number from 1 to 65535")
			continue
		}
		if port < 0 {
			continue
		}
		addr := net.JoinHostPort(bindHost(binds), strconv.Itoa(port))
		switch {
		case typ == "metrics":
			r.cfg.MetricsListen = addr
		case typ == "http" && tls:
			r.cfg.Federation.Listen = addr
			if xff {
				r.info("%s.x_forwarded: ignored on the TLS listener", path)
			}
		case typ == "http" && !r.httpSeen:
			r.httpSeen = true
			r.cfg.Listen = addr
			r.cfg.XForwarded = xff
			if slices.Contains(resources, "metrics") {
				r.info("%s: the metrics resource is served on metrics_listen (MYELIN_METRICS_LISTEN) only", path)
			}
		case typ == "http":
			r.warn("%s: Myelin serves one plain HTTP listener; this one is ignored", path)
		case typ == "":
			r.bad(path+".type", l, "http or metrics")
		default:
			r.info("%s: listener type %q is not used by Myelin, ignored", path, typ)
		}
	}
}

// bindHost picks the address to listen on from Synapse's bind_addresses
// (default: all interfaces).
func bindHost(binds []string) string {
	switch {
	case len(binds) == 0, slices.Contains(binds, "0.0.0.0"):
		return "0.0.0.0"
	case slices.Contains(binds, "::"):
		return "::"
	}
	return binds[0]
}

var knownResources = []string{"client", "federation", "keys", "media", "metrics", "health", "openid", "static", "consent", "replication", "webclient"}

func (r *synapseReader) resources(key string, n *yaml.Node) []string {
	if n.Kind != yaml.SequenceNode {
		r.bad(key, n, "a list of {names: [client, federation, ...]}")
		return nil
	}
	var names []string
	for i, res := range n.Content {
		path := fmt.Sprintf("%s[%d]", key, i)
		if res.Kind != yaml.MappingNode {
			r.bad(path, res, "a mapping with names")
			continue
		}
		if v := lookup(res, "names"); v != nil {
			got, _ := r.strList(path+".names", v)
			for _, name := range got {
				if !slices.Contains(knownResources, name) {
					r.warn("%s.names: unknown resource %q, ignored", path, name)
				}
			}
			names = append(names, got...)
		}
	}
	return names
}

// pgParams are the psycopg2 (libpq) connection arguments passed on in the
// DSN; pgx understands each of them.
var pgParams = []string{"sslmode", "sslrootcert", "sslcert", "sslkey", "sslpassword", "connect_timeout", "application_name", "target_session_attrs", "options"}

// database maps Synapse's database section to database_url.
func (r *synapseReader) database(key string, n *yaml.Node) {
	if n.Kind != yaml.MappingNode {
		r.bad(key, n, "a mapping with name (sqlite3 or psycopg2) and args")
		return
	}
	var name string
	args := map[string]*yaml.Node{}
	for j := 0; j+1 < len(n.Content); j += 2 {
		k, v := n.Content[j].Value, n.Content[j+1]
		switch k {
		case "name":
			name, _ = r.str(key+".name", v)
		case "args":
			if v.Kind != yaml.MappingNode {
				r.bad(key+".args", v, "a mapping of connection arguments")
				continue
			}
			for a := 0; a+1 < len(v.Content); a += 2 {
				args[v.Content[a].Value] = v.Content[a+1]
			}
		case "allow_unsafe_locale", "txn_limit":
			r.info("%s.%s: accepted and ignored", key, k)
		default:
			r.warn("%s.%s: unknown database setting, ignored", key, k)
		}
	}
	arg := func(a string) (string, bool) {
		v, ok := args[a]
		if !ok {
			return "", false
		}
		delete(args, a)
		return r.str(key+".args."+a, v)
	}
	switch name {
	case "sqlite3":
		path, ok := arg("database")
		if !ok || path == "" || path == ":memory:" {
			r.bad(key+".args.database", n, "the path of the SQLite file")
			return
		}
		r.cfg.DatabaseURL = "sqlite:" + path
	case "psycopg2":
		r.cfg.DatabaseURL = r.postgresDSN(key, arg)
	default:
		r.bad(key+".name", n, "sqlite3 or psycopg2")
		return
	}
	for a := range args {
		switch a {
		case "cp_min", "cp_max", "keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count", "check_same_thread":
			r.info("%s.args.%s: accepted and ignored", key, a)
		default:
			r.warn("%s.args.%s: unknown connection argument, ignored", key, a)
		}
	}
}

// postgresDSN builds a postgres:// URL from psycopg2 arguments. A host
// starting with / is a Unix socket directory, passed as the host parameter.
func (r *synapseReader) postgresDSN(key string, arg func(string) (string, bool)) string {
	u := &url.URL{Scheme: "postgres"}
	q := url.Values{}
	user, _ := arg("user")
	password, hasPassword := arg("password")
	switch {
	case user != "" && hasPassword:
		u.User = url.UserPassword(user, password)
	case user != "":
		u.User = url.User(user)
	}
	db, _ := arg("database")
	if dbname, ok := arg("dbname"); ok && db == "" {
		db = dbname
	}
	if db == "" {
		r.errs = append(r.errs, fmt.Errorf("%s.args.database: want the name of the PostgreSQL database", key))
	}
	u.Path = "/" + db
	host, _ := arg("host")
	port, hasPort := arg("port")
	if hasPort {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			r.errs = append(r.errs, fmt.Errorf("%s.args.port: want a port number from 1 to 65535, got %q", key, port))
		}
	}
	switch {
	case strings.HasPrefix(host, "/"):
		q.Set("host", host)
		if hasPort {
			q.Set("port", port)
		}
	case host != "" && hasPort:
		u.Host = net.JoinHostPort(host, port)
	case host != "":
		u.Host = host
	case hasPort:
		u.Host = net.JoinHostPort("localhost", port)
	default:
		u.Host = "localhost"
	}
	for _, p := range pgParams {
		if v, ok := arg(p); ok {
			q.Set(p, v)
		}
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// trustedKeyServers maps trusted_key_servers (accept_keys_insecurely is
// accepted: a notary without verify_keys is trusted on first use anyway).
func (r *synapseReader) trustedKeyServers(key string, n *yaml.Node) {
	if n.Tag == "!!null" {
		r.cfg.Federation.TrustedKeyServers = nil
		return
	}
	if n.Kind != yaml.SequenceNode {
		r.bad(key, n, "a list of {server_name, verify_keys}")
		return
	}
	var out []TrustedKeyServer
	for i, s := range n.Content {
		path := fmt.Sprintf("%s[%d]", key, i)
		if s.Kind != yaml.MappingNode {
			r.bad(path, s, "a mapping with server_name")
			continue
		}
		var t TrustedKeyServer
		for j := 0; j+1 < len(s.Content); j += 2 {
			k, v := s.Content[j].Value, s.Content[j+1]
			switch k {
			case "server_name":
				t.ServerName, _ = r.str(path+".server_name", v)
			case "verify_keys":
				if v.Kind != yaml.MappingNode || v.Decode(&t.VerifyKeys) != nil {
					r.bad(path+".verify_keys", v, "a mapping of key IDs (ed25519:abc) to base64 keys")
				}
			case "accept_keys_insecurely":
				_, _ = r.boolean(path+"."+k, v)
			default:
				r.warn("%s.%s: unknown setting, ignored", path, k)
			}
		}
		if t.ServerName == "" {
			r.bad(path+".server_name", s, "the notary's server name, e.g. matrix.org")
			continue
		}
		out = append(out, t)
	}
	r.cfg.Federation.TrustedKeyServers = out
}

// sizeRE is Synapse's size form (50M, 1G, 1048576).
var sizeRE = regexp.MustCompile(`^(\d+)\s*([KMGkmg]?)$`)

var aliasRE = regexp.MustCompile(`^#[^:]+:.+$`)

// autoJoinRooms validates the aliases of auto_join_rooms.
func (r *synapseReader) autoJoinRooms(key string, n *yaml.Node) {
	aliases, ok := r.strList(key, n)
	if !ok {
		return
	}
	for i, a := range aliases {
		if !aliasRE.MatchString(a) {
			r.errs = append(r.errs, fmt.Errorf("%s[%d]: want a room alias such as #welcome:example.org, got %q", key, i, a))
			return
		}
	}
	r.cfg.AutoJoinRooms = aliases
}
