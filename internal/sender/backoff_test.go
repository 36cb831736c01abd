package sender

import (
	"testing"
	"time"
)

func TestBackoffDelay(t *testing.T) {
	tests := []struct {
		failures int
		want     time.Duration
	}{
		{0, 2 * time.Second},
		{1, 2 * time.Second},
		{2, 4 * time.Second},
		{3, 8 * time.Second},
		{11, 2048 * time.Second},
		{12, time.Hour}, // 4096s is over the cap
		{1000, time.Hour},
	}
	for _, tc := range tests {
		if got := backoffDelay(DefaultMinBackoff, DefaultMaxBackoff, tc.failures); got != tc.want {
			t.Errorf("backoffDelay after %d failures = %v, want %v", tc.failures, got, tc.want)
		}
	}
}

func TestStatusErrorRefused(t *testing.T) {
	for status, want := range map[int]bool{400: true, 401: true, 403: true, 413: true, 404: false, 408: false, 429: false, 500: false, 502: false} {
		if got := (&StatusError{Status: status}).refused(); got != want {
			t.Errorf("status %d refused = %v, want %v", status, got, want)
		}
	}
}
