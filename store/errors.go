package store

import "errors"

// Errors a caller can act on. The API maps each one to an HTTP status; wrapped
// errors keep them reachable through errors.Is.
var (
	// ErrInvalidPath: a malformed location, name or PATCH member name.
	ErrInvalidPath = errors.New("invalid path")
	// ErrInvalidValue: malformed JSON, trailing data, invalid UTF-8, a non-object
	// where an object is required, or invalid member names inside a value.
	ErrInvalidValue = errors.New("invalid value")
	// ErrConditionFailed: an If-Match precondition did not hold; the error is a
	// *ConditionError carrying the current value.
	ErrConditionFailed = errors.New("condition failed")
	// ErrInvalidQuery: a query (orderBy and its filters) that breaks
	// Firebase's rules.
	ErrInvalidQuery = errors.New("invalid query")

	// ErrValueTooLarge: one written value is over Limits.MaxValueBytes.
	ErrValueTooLarge = errors.New("value too large")
	// ErrTooManyKeys: the room would hold more than Limits.MaxKeys keys.
	ErrTooManyKeys = errors.New("too many keys in room")
	// ErrTooManyChildren: a key would hold more than Limits.MaxChildren children.
	ErrTooManyChildren = errors.New("too many children in key")
	// ErrRoomTooLarge: the room would hold more than Limits.MaxRoomBytes bytes.
	ErrRoomTooLarge = errors.New("room too large")
	// ErrDatabaseFull: the database file reached Options.MaxSize.
	ErrDatabaseFull = errors.New("database full")

	// ErrUnavailable: the storage cluster cannot be reached or keeps failing
	// (etcd engine).
	ErrUnavailable = errors.New("storage unavailable")
	// ErrBusy: the writer's queue stayed full (Options.WriteQueue writes
	// waiting) for longer than a write may wait to join it; retry shortly.
	ErrBusy = errors.New("too many writes waiting: try again")
	// ErrClosed: the store is shutting down or closed.
	ErrClosed = errors.New("store closed")
	// ErrEvicted: a watcher fell too far behind and was dropped; it should resume
	// from its last event id.
	ErrEvicted = errors.New("watcher too slow")
	// ErrCorrupt: a stored record does not decode; the engine's storage is
	// damaged.
	ErrCorrupt = errors.New("corrupt record")
	// ErrLocked: another process holds the database file.
	ErrLocked = errors.New("database file is locked by another process")
)

// ConditionError is the error of a write whose precondition failed: the
// location's current value and revision (0 when nothing is stored).
type ConditionError struct {
	Value []byte
	Rev   uint64
}

func (e *ConditionError) Error() string { return ErrConditionFailed.Error() }

// Is makes errors.Is(err, ErrConditionFailed) true.
func (e *ConditionError) Is(target error) bool { return target == ErrConditionFailed }
