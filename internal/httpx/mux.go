package httpx

import (
	"net/http"
	"slices"
	"sync"
)

// Router is what the APIs register their routes on: *http.ServeMux or a
// *Mux.
type Router interface {
	Handle(pattern string, h http.Handler)
	HandleFunc(pattern string, h func(http.ResponseWriter, *http.Request))
}

// Mux is an http.ServeMux that remembers the patterns registered on it, so
// that the route table can be listed (a test sends bad input to every
// route, including routes added later, without a hand-kept list).
type Mux struct {
	mux      *http.ServeMux
	mu       sync.Mutex
	patterns []string
}

// NewMux returns an empty Mux.
func NewMux() *Mux { return &Mux{mux: http.NewServeMux()} }

// Handle registers h for pattern, as http.ServeMux.Handle.
func (m *Mux) Handle(pattern string, h http.Handler) {
	m.mux.Handle(pattern, h)
	m.mu.Lock()
	m.patterns = append(m.patterns, pattern)
	m.mu.Unlock()
}

// HandleFunc registers h for pattern, as http.ServeMux.HandleFunc.
func (m *Mux) HandleFunc(pattern string, h func(http.ResponseWriter, *http.Request)) {
	m.Handle(pattern, http.HandlerFunc(h))
}

// Handler returns the handler and pattern that would serve r, as
// http.ServeMux.Handler.
func (m *Mux) Handler(r *http.Request) (http.Handler, string) { return m.mux.Handler(r) }

// ServeHTTP dispatches r to the handler of the pattern that matches it.
func (m *Mux) ServeHTTP(w http.ResponseWriter, r *http.Request) { m.mux.ServeHTTP(w, r) }

// Patterns returns every registered pattern ("METHOD /path/{param}"), in
// registration order.
func (m *Mux) Patterns() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.patterns)
}
