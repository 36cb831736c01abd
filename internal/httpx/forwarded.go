package httpx

import (
	"net"
	"net/http"
	"strings"
)

// Forwarded makes next see the client address and scheme a reverse proxy
// reports in X-Forwarded-For and X-Forwarded-Proto: RemoteAddr becomes the
// last address in X-Forwarded-For (the one the proxy itself appended, so
// a client cannot choose it by sending the header) and URL.Scheme the
// forwarded protocol. With trust false, next is returned as it is.
func Forwarded(trust bool, next http.Handler) http.Handler {
	if !trust {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ip := lastForwardedFor(r.Header.Values("X-Forwarded-For")); ip != "" {
			r.RemoteAddr = net.JoinHostPort(ip, "0")
		}
		switch proto := strings.ToLower(strings.TrimSpace(r.Header.Get("X-Forwarded-Proto"))); proto {
		case "http", "https":
			r.URL.Scheme = proto
		}
		next.ServeHTTP(w, r)
	})
}

// lastForwardedFor returns the last valid IP of the X-Forwarded-For
// headers, or "" when there is none.
func lastForwardedFor(values []string) string {
	for i := len(values) - 1; i >= 0; i-- {
		parts := strings.Split(values[i], ",")
		for j := len(parts) - 1; j >= 0; j-- {
			p := strings.TrimSpace(parts[j])
			if ip := net.ParseIP(strings.Trim(p, "[]")); ip != nil {
				return ip.String()
			}
			if p != "" {
				return "" // a malformed last hop: trust nothing before it
			}
		}
	}
	return ""
}
