package room

import "time"

// PersistObserver is told how long each write transaction that stored an
// event took: kind is "local" for events of our users, "received" for
// events from other servers.
type PersistObserver func(kind string, took time.Duration)

// WithPersistObserver reports event persist latency to o (metrics).
func WithPersistObserver(o PersistObserver) Option {
	return func(s *Service) { s.observePersist = o }
}

// persisted reports the write transaction of one event begun at start.
func (s *Service) persisted(kind string, start time.Time) {
	if s.observePersist != nil {
		s.observePersist(kind, time.Since(start))
	}
}
