package clientapi

import "sync"

// uiaSessions tracks User-Interactive Auth sessions in memory.
type uiaSessions struct {
	mu sync.Mutex
}

func newUIASessions() *uiaSessions { return &uiaSessions{} }
