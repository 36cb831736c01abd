package httpx

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestForwarded(t *testing.T) {
	for _, tc := range []struct {
		name      string
		trust     bool
		xff       []string
		proto     string
		addr      string
		wantProto string
	}{
		{name: "untrusted", trust: false, xff: []string{"203.0.113.7"}, proto: "https", addr: "10.0.0.2:5555"},
		{name: "one hop", trust: true, xff: []string{"203.0.113.7"}, proto: "https", addr: "203.0.113.7:0", wantProto: "https"},
		{name: "client-supplied first entry ignored", trust: true, xff: []string{"1.1.1.1, 203.0.113.7"}, addr: "203.0.113.7:0"},
		{name: "several headers", trust: true, xff: []string{"1.1.1.1", "2001:db8::1"}, addr: "[2001:db8::1]:0"},
		{name: "malformed last hop", trust: true, xff: []string{"1.1.1.1, junk"}, proto: "gopher", addr: "10.0.0.2:5555"},
		{name: "no header", trust: true, addr: "10.0.0.2:5555"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var addr, proto string
			h := Forwarded(tc.trust, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				addr, proto = r.RemoteAddr, r.URL.Scheme
			}))
			req := httptest.NewRequest(http.MethodGet, "/", nil)
			req.RemoteAddr = "10.0.0.2:5555"
			for _, v := range tc.xff {
				req.Header.Add("X-Forwarded-For", v)
			}
			if tc.proto != "" {
				req.Header.Set("X-Forwarded-Proto", tc.proto)
			}
			h.ServeHTTP(httptest.NewRecorder(), req)
			if addr != tc.addr || proto != tc.wantProto {
				t.Fatalf("RemoteAddr %q scheme %q, want %q %q", addr, proto, tc.addr, tc.wantProto)
			}
		})
	}
}
