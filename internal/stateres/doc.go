// Package stateres resolves the state of a room from several state sets:
// the algorithm of room version 1, state resolution v2 (room versions 2 to
// 11) and v2.1 (room version 12, MSC4297). See Resolve.
//
// It owns the algorithms only. It loads events through a Fetcher and
// applies the authorisation rules with mautrix's federation/eventauth. It
// imports internal/pdu and mautrix and nothing else from Myelin, and must
// not import storage or room: room calls Resolve when the prev_events of an
// event disagree on the state, and its store implements Fetcher (and
// ideally AuthChainer).
//
// # Cost
//
// The unconflicted state is taken as it is and not loaded: only the
// conflicted events, their auth chains and the few state entries their auth
// checks read are. One exception: the auth difference (v2, v2.1) must know
// whether an event found in the auth chains of some state sets' conflicted
// events but not others' is in the auth chain of the unconflicted state.
// When there are such events (typically a state set that changed the same
// key twice), Resolve asks the AuthChainer for the unconflicted state's auth
// chain, or else walks it, stopping as soon as every such event was found.
// A store with an auth chain index makes that cheap; without one it costs a
// load of every unconflicted event.
//
// # Event IDs
//
// eventauth reads the create event's ID with mautrix's PDU.GetEventID,
// which cannot compute the IDs of room versions 1 and 2. The server must
// set mautrix pdu.UseInternalMetaForGetEventID (and fill InternalMeta.EventID,
// as pdu.Parse does); Resolve refuses versions 1 and 2 otherwise. For later
// versions it saves hashing the create event for every join checked.
//
// # Choices where implementations differ
//
// The spec's prose is followed, except where Synapse and Ruma, which the
// network's rooms converged on, read it more narrowly; each such place says
// so: the power events (isPowerEvent), the events added to them from their
// auth chains (closeWithin), and the details of the v1 algorithm
// (resolveV1).
package stateres
