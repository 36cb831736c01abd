package httpx

import (
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/myelin-chat/myelin/internal/mxerr"
)

func TestUnmarshalErrcodes(t *testing.T) {
	type body struct {
		Name  string            `json:"name"`
		IDs   []string          `json:"ids"`
		Keys  map[string]string `json:"keys"`
		Raw   []byte            `json:"raw"`
		Inner *struct {
			S string `json:"s"`
		} `json:"inner"`
		Any any `json:"any"`
	}
	for _, tc := range []struct {
		name, body string
		want       *mxerr.Error // nil: accepted
	}{
		{"empty", ``, nil},
		{"object", `{"name":"a","ids":["b"],"keys":{"c":"d"}}`, nil},
		{"broken", `{"name":`, mxerr.NotJSON},
		{"two values", `{} {}`, mxerr.NotJSON},
		{"invalid UTF-8", "{\"name\":\"\xff\"}", mxerr.NotJSON},
		{"invalid UTF-8 key", "{\"\xc3\":1}", mxerr.NotJSON},
		{"lone surrogate", `{"name":"\ud800"}`, mxerr.NotJSON},
		{"surrogate pair", `{"name":"\ud83d\ude00"}`, nil},
		{"deep", deep(20000), mxerr.NotJSON},
		{"wrong top-level type", `[]`, mxerr.BadJSON},
		{"wrong field type", `{"name":1}`, mxerr.BadJSON},
		{"huge number", `{"name":18446744073709551616}`, mxerr.BadJSON},
		{"NUL in a field", `{"name":"a\u0000"}`, mxerr.BadJSON},
		{"NUL in a list", `{"ids":["\u0000"]}`, mxerr.BadJSON},
		{"NUL in a map key", `{"keys":{"\u0000":"x"}}`, mxerr.BadJSON},
		{"NUL in a nested struct", `{"inner":{"s":"\u0000"}}`, mxerr.BadJSON},
		{"NUL in opaque JSON", `{"any":{"s":"\u0000"}}`, nil},
		{"duplicate keys", `{"name":"a","name":"b"}`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b body
			err := Unmarshal([]byte(tc.body), &b)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("got %v, want accepted", err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %s", err, tc.want.Code)
			}
		})
	}
}

func deep(n int) string {
	b := make([]byte, 0, 2*n)
	for range n {
		b = append(b, '[')
	}
	for range n {
		b = append(b, ']')
	}
	return string(b)
}

func TestWrapChecksURL(t *testing.T) {
	a := &Adapter{Log: slog.New(slog.DiscardHandler)}
	mux := NewMux()
	mux.Handle("GET /x/{p}", a.Wrap(func(w http.ResponseWriter, r *http.Request) error { return OK(w, Empty) }))
	for _, tc := range []struct {
		target string
		status int
	}{
		{"/x/a?b=c", 200},
		{"/x/%00", 400},
		{"/x/%FF", 400},
		{"/x/a?b=%00", 400},
		{"/x/a?b=%C3", 400},
		{"/x/a?%FF=1", 400},
	} {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest("GET", tc.target, nil))
		if rec.Code != tc.status {
			t.Errorf("%s: got %d, want %d", tc.target, rec.Code, tc.status)
		}
	}
	if got := mux.Patterns(); !slices.Equal(got, []string{"GET /x/{p}"}) {
		t.Errorf("Patterns() = %v", got)
	}
}
