package store

import (
	"fmt"
	"strings"
	"sync"

	bolt "go.etcd.io/bbolt"
)

// Disconnect records: the writes a watch asked the server to make when it
// goes away (docs/API.md "onDisconnect"), kept per room and session so that
// after a restart those of streams that never came back are still applied.
// The api package decides when; the store only keeps them.

// DisconnectRecord is one session's recorded actions, as the api wrote them.
type DisconnectRecord struct {
	Room, Session string
	Actions       []byte
}

// SaveDisconnect durably records a session's actions on a room, replacing
// any it had.
func (s *Store) SaveDisconnect(room, session string, actions []byte) error {
	if err := s.be.saveDisconnect(room, session, actions); err != nil {
		return fmt.Errorf("save disconnect actions of %s/%s: %w", room, session, err)
	}
	return nil
}

// DropDisconnect forgets a session's actions.
func (s *Store) DropDisconnect(room, session string) error {
	if err := s.be.saveDisconnect(room, session, nil); err != nil {
		return fmt.Errorf("drop disconnect actions of %s/%s: %w", room, session, err)
	}
	return nil
}

// Disconnects lists the recorded sessions: on opening, those whose streams
// were open when the server stopped.
func (s *Store) Disconnects() ([]DisconnectRecord, error) { return s.be.disconnects() }

var bucketDisconnect = []byte("disconnect")

func disconnectKey(room, session string) []byte { return []byte(room + "\x00" + session) }

// saveDisconnect writes (or, with nil actions, deletes) a record in its own
// small transaction beside the writer's.
func (s *boltBackend) saveDisconnect(room, session string, actions []byte) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketDisconnect)
		if err != nil {
			return err
		}
		if actions == nil {
			return b.Delete(disconnectKey(room, session))
		}
		return b.Put(disconnectKey(room, session), actions)
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
			out = append(out, DisconnectRecord{Room: room, Session: session, Actions: append([]byte(nil), v...)})
			return nil
		})
	})
	return out, err
}

// memDisconnects keeps records in memory: the etcd backend's, for now, so
// on etcd a session's actions are this node's and do not outlive it.
type memDisconnects struct {
	mu sync.Mutex
	m  map[string]DisconnectRecord
}

func (d *memDisconnects) saveDisconnect(room, session string, actions []byte) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.m == nil {
		d.m = map[string]DisconnectRecord{}
	}
	k := string(disconnectKey(room, session))
	if actions == nil {
		delete(d.m, k)
	} else {
		d.m[k] = DisconnectRecord{Room: room, Session: session, Actions: actions}
	}
	return nil
}

func (d *memDisconnects) disconnects() ([]DisconnectRecord, error) { return nil, nil }
