package store

import (
	"fmt"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
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
	if err := s.be.saveDisconnect(room, session, patch, grace); err != nil {
		return fmt.Errorf("save disconnect actions of %s/%s: %w", room, session, err)
	}
	return nil
}

// ReleaseDisconnect says the session's last stream ended: its record now
// waits out the grace period.
func (s *Store) ReleaseDisconnect(room, session string) { s.be.releaseDisconnect(room, session) }

// ClaimDisconnect takes a session's record once its grace period passed:
// true means the caller applies it; false that it is gone or another node
// holds it now.
func (s *Store) ClaimDisconnect(room, session string) (bool, error) {
	mine, err := s.be.claimDisconnect(room, session)
	if err != nil {
		return false, fmt.Errorf("claim disconnect actions of %s/%s: %w", room, session, err)
	}
	return mine, nil
}

// DropDisconnect forgets a session's record without applying it.
func (s *Store) DropDisconnect(room, session string) error {
	if err := s.be.dropDisconnect(room, session); err != nil {
		return fmt.Errorf("drop disconnect actions of %s/%s: %w", room, session, err)
	}
	return nil
}

// Disconnects lists the records this server should schedule on opening:
// on bbolt, those of the streams that were open when it stopped.
func (s *Store) Disconnects() ([]DisconnectRecord, error) { return s.be.disconnects() }

var bucketDisconnect = []byte("disconnect")

func disconnectKey(room, session string) []byte { return []byte(room + "\x00" + session) }

// A bbolt record is written in its own small transaction beside the
// writer's; this process alone runs the grace periods, so it always claims.
func (s *boltBackend) saveDisconnect(room, session string, patch []byte, _ time.Duration) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketDisconnect)
		if err != nil {
			return err
		}
		return b.Put(disconnectKey(room, session), patch)
	})
}

func (s *boltBackend) releaseDisconnect(string, string) {}

func (s *boltBackend) claimDisconnect(room, session string) (bool, error) {
	return true, s.dropDisconnect(room, session)
}

func (s *boltBackend) dropDisconnect(room, session string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketDisconnect); b != nil {
			return b.Delete(disconnectKey(room, session))
		}
		return nil
	})
}

func (s *boltBackend) disconnects() ([]DisconnectRecord, error) {
	var out []DisconnectRecord
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketDisconnect)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			room, session, ok := strings.Cut(string(k), "\x00")
			if !ok {
				return fmt.Errorf("%w: disconnect key %q", errCorrupt, k)
			}
			out = append(out, DisconnectRecord{Room: room, Session: session, Patch: append([]byte(nil), v...)})
			return nil
		})
	})
	return out, err
}
