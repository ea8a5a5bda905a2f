package bolt

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/sigbase/sigbase/store"
	bbolt "go.etcd.io/bbolt"
)

// onDisconnect records (store.Store.SaveDisconnect) live in their own
// bucket, room 0x00 session → the PATCH body.
var bucketDisconnect = []byte("disconnect")

func disconnectKey(room, session string) []byte { return []byte(room + "\x00" + session) }

// A record is written by the writer, in a group of its own or with others,
// so it is in the log before SaveDisconnect returns; this process alone runs
// the grace periods, so it always claims.
func (s *engine) SaveDisconnect(room, session string, patch []byte, _ time.Duration) error {
	patch = bytes.Clone(patch) // bbolt keeps it until the batch commits
	return s.submit(context.Background(), &op{run: func(t *txn) error {
		return t.put(redoDisconnect, disconnectKey(room, session), patch)
	}})
}

func (s *engine) ReleaseDisconnect(string, string) {}

func (s *engine) ClaimDisconnect(room, session string) (bool, error) {
	return true, s.DropDisconnect(room, session)
}

func (s *engine) DropDisconnect(room, session string) error {
	return s.submit(context.Background(), &op{run: func(t *txn) error {
		return t.del(redoDisconnect, disconnectKey(room, session))
	}})
}

func (s *engine) Disconnects() ([]store.DisconnectRecord, error) {
	var out []store.DisconnectRecord
	err := s.view(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketDisconnect).ForEach(func(k, v []byte) error {
			room, session, ok := strings.Cut(string(k), "\x00")
			if !ok {
				return fmt.Errorf("%w: disconnect key %q", store.ErrCorrupt, k)
			}
			out = append(out, store.DisconnectRecord{Room: room, Session: session, Patch: append([]byte(nil), v...)})
			return nil
		})
	})
	return out, err
}
