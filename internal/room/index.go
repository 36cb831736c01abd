package room

import (
	"context"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/storage"
)

// Indexer keeps data derived from accepted timeline events (such as the
// relations index) in the transaction that stores them, so it can never
// disagree with the events. room calls it; it never calls room back
// inside the transaction.
type Indexer interface {
	// EventStored is called for each accepted, non-outlier event, local
	// or received, in the transaction that stores it. st.StreamPos may
	// not be allocated yet; st.NID is.
	EventStored(ctx context.Context, tx *storage.Tx, st *Stored) error
	// EventRedacted is called in the transaction that redacts target.
	EventRedacted(ctx context.Context, tx *storage.Tx, target id.EventID) error
}

// WithIndexer adds an Indexer to the persist path.
func WithIndexer(ix Indexer) Option { return func(s *Service) { s.indexers = append(s.indexers, ix) } }

// indexStored runs the indexers for an accepted event.
func (s *Service) indexStored(ctx context.Context, tx *storage.Tx, st *Stored) error {
	for _, ix := range s.indexers {
		if err := ix.EventStored(ctx, tx, st); err != nil {
			return err
		}
	}
	return nil
}

// indexRedacted runs the indexers for a redacted event.
func (s *Service) indexRedacted(ctx context.Context, tx *storage.Tx, target id.EventID) error {
	for _, ix := range s.indexers {
		if err := ix.EventRedacted(ctx, tx, target); err != nil {
			return err
		}
	}
	return nil
}
