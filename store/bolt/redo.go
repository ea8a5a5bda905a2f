package bolt

import (
	"encoding/binary"
	"fmt"

	"github.com/sigbase/sigbase/store"
	bbolt "go.etcd.io/bbolt"
)

// A group's redo record: what its transaction did to the buckets, in order,
// so that replaying it onto bbolt as of any earlier checkpoint gives the
// same buckets. It is physical (puts, deletes, the sequence) rather than
// the writes themselves: replay needs no clock, no push ids and no model,
// and replaying a group twice is harmless, since each mutation sets a key
// to what it was after that group.
//
//	version byte, then mutations:
//	'P' bucket string(key) string(value)   put
//	'D' bucket string(key)                 delete
//	'S' bucket uvarint(sequence)           set the bucket's sequence
const redoVersion = 1

// The buckets a mutation names.
const (
	redoMeta byte = iota
	redoRooms
	redoExpiry
	redoDisconnect
	redoBucketCount
)

var redoBuckets = [redoBucketCount][]byte{redoMeta: bucketMeta, redoRooms: bucketRooms, redoExpiry: bucketExpiry, redoDisconnect: bucketDisconnect}

// redo collects a group's mutations while its transaction makes them.
type redo struct {
	b []byte
	n int // mutations
}

func (r *redo) reset() { r.b, r.n = append(r.b[:0], redoVersion), 0 }

func (r *redo) put(bucket byte, k, v []byte) {
	r.b = append(r.b, 'P', bucket)
	r.b = appendBytes(appendBytes(r.b, k), v)
	r.n++
}

func (r *redo) delete(bucket byte, k []byte) {
	r.b = appendBytes(append(r.b, 'D', bucket), k)
	r.n++
}

func (r *redo) sequence(bucket byte, seq uint64) {
	r.b = binary.AppendUvarint(append(r.b, 'S', bucket), seq)
	r.n++
}

func appendBytes(b, s []byte) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// replayRedo applies a redo record to tx.
func replayRedo(tx *bbolt.Tx, rec []byte) error {
	if len(rec) == 0 || rec[0] != redoVersion {
		return fmt.Errorf("redo record version: %w", store.ErrCorrupt)
	}
	b := rec[1:]
	field := func() ([]byte, error) {
		n, w := binary.Uvarint(b)
		if w <= 0 || n > uint64(len(b)-w) {
			return nil, fmt.Errorf("redo record field: %w", store.ErrCorrupt)
		}
		f := b[w : w+int(n)]
		b = b[w+int(n):]
		return f, nil
	}
	for len(b) > 0 {
		if len(b) < 2 || int(b[1]) >= len(redoBuckets) {
			return fmt.Errorf("redo record mutation: %w", store.ErrCorrupt)
		}
		kind, bucket := b[0], tx.Bucket(redoBuckets[b[1]])
		b = b[2:]
		switch kind {
		case 'P':
			k, err := field()
			if err != nil {
				return err
			}
			v, err := field()
			if err != nil {
				return err
			}
			if err := bucket.Put(k, v); err != nil {
				return err
			}
		case 'D':
			k, err := field()
			if err != nil {
				return err
			}
			if err := bucket.Delete(k); err != nil {
				return err
			}
		case 'S':
			seq, w := binary.Uvarint(b)
			if w <= 0 {
				return fmt.Errorf("redo record sequence: %w", store.ErrCorrupt)
			}
			b = b[w:]
			if err := bucket.SetSequence(seq); err != nil {
				return err
			}
		default:
			return fmt.Errorf("redo record mutation %q: %w", kind, store.ErrCorrupt)
		}
	}
	return nil
}
