package store

import (
	"fmt"
	"time"
)

// Disconnect records: the write (a room PATCH) a watch's session asked the
// server to make when it goes away (docs/API.md "onDisconnect"), kept per
// room and session so that a restart, or on etcd a node that dies, still
// has it applied. The api package runs the grace period; the store keeps
// the records and says who applies one (ClaimDisconnect).

// DisconnectRecord is one session's recorded PATCH of its room.
type DisconnectRecord struct {
	Room, Session string
	Patch         []byte
}

// SaveDisconnect durably records a session's PATCH of its room, replacing
// any, while the session's stream is open. grace is how long the record may
// wait after ReleaseDisconnect: on etcd, a node that dies leaves its records
// to expire after about that long, and another node applies them.
func (s *Store) SaveDisconnect(room, session string, patch []byte, grace time.Duration) error {
	if err := s.eng.SaveDisconnect(room, session, patch, grace); err != nil {
		return fmt.Errorf("save disconnect actions of %s/%s: %w", room, session, err)
	}
	return nil
}

// ReleaseDisconnect says the session's last stream ended: its record now
// waits out the grace period.
func (s *Store) ReleaseDisconnect(room, session string) { s.eng.ReleaseDisconnect(room, session) }

// ClaimDisconnect takes a session's record once its grace period passed:
// true means the caller applies it; false that it is gone or another node
// holds it now.
func (s *Store) ClaimDisconnect(room, session string) (bool, error) {
	mine, err := s.eng.ClaimDisconnect(room, session)
	if err != nil {
		return false, fmt.Errorf("claim disconnect actions of %s/%s: %w", room, session, err)
	}
	return mine, nil
}

// DropDisconnect forgets a session's record without applying it.
func (s *Store) DropDisconnect(room, session string) error {
	if err := s.eng.DropDisconnect(room, session); err != nil {
		return fmt.Errorf("drop disconnect actions of %s/%s: %w", room, session, err)
	}
	return nil
}

// Disconnects lists the records this server should schedule on opening:
// on bbolt, those of the streams that were open when it stopped.
func (s *Store) Disconnects() ([]DisconnectRecord, error) { return s.eng.Disconnects() }
