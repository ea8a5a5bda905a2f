// Package bolt is the bbolt engine of the store: every room in one file,
// written by one goroutine, with a write-ahead log beside it (path.wal).
//
// # Bucket layout (bbolt)
//
//	meta    Sequence() = the last revision; "schema" = layout version (3);
//	        "rooms" = the number of rooms
//	rooms   room 0x00 BE(rev) → change (location, data, what changed below it)
//	        room 0x01 key     → the key whole, one record: uvarint(rev)
//	                            string(leaf) uvarint(n), then n × (string(child)
//	                            uvarint(rev) string(JSON)), children in name
//	                            order (records.go)
//	        room 0x02         → roomMeta: incarnation (created), resume floor,
//	                            last revision, key count, bytes, log size, expiry
//	expiry  BE(indexed unix ns) room → (empty)
//	disconnect  room 0x00 session → an onDisconnect record (a room PATCH)
//
// Beside the file, path.wal holds the groups logged since the last batch
// commit (redo.go, the wal package). Emptying the log writes a new epoch in
// its header rather than truncating it, so later groups overwrite the file in
// place, which syncs faster than an append that grows it; the file stays at
// the largest size the log reached (about 16 MiB at most with the defaults).
//
// Names are [A-Za-z0-9_-], all above 0x02, so a room's log and its keys are
// each one contiguous range, and a room's entries are
// contiguous too: a write appends to the log just before the data and meta
// it changes, so a commit of many rooms writes about one page per room.
// The expiry entry moves only when it lags the room's real expiry (in its
// meta) by an eighth of the TTL; the sweeper re-reads the meta when it
// comes due.
//
// # Guarantees
//
//   - Durable: a write returns only after its group's redo record (the
//     group's puts, deletes and sequence, redo.go) is in the write-ahead log
//     and fdatasynced: one sync per group. One writer goroutine takes
//     everything queued (up to 1000 writes) as a group and applies it to the
//     batch, one bbolt write transaction that collects groups; every 100 ms,
//     or at 16 MiB of log, the batch is committed (bbolt syncs it) and the
//     log emptied. Readers of the batch wait while a group is being logged,
//     so nothing is read or sent to a watcher before it is durable. Open
//     replays the log; replaying a group twice is harmless. A failed
//     precondition or quota is that write's result; only a failed group
//     (storage) fails the whole group.
//   - A log that is damaged (a bad checksum or length inside it, not just a
//     cut-off last record) makes Open fail with an error naming the offset,
//     rather than drop what may have been acknowledged; a cut-off last
//     record was never acknowledged and is dropped (wal package).
//   - Near Options.MaxSize, after a log failure, and for a group larger than
//     the whole log, groups commit to bbolt directly, each with bbolt's own
//     syncs, so that the write that does not fit fails alone.
//   - Revisions come from the meta bucket's sequence in the same transaction
//     as the change they name: strictly increasing and gap-free across
//     restarts. Each record keeps the revision of its last change, which is
//     the ETag of its location.
//   - Watchers register before they read, so between a snapshot (or log
//     catch-up) and live changes nothing is missed or repeated. A resume
//     replays the log after the given revision only when the room's log
//     provably holds every change after it; otherwise the watcher gets a
//     snapshot. A watcher whose queue overflows is evicted (ErrEvicted) and
//     resumes from the log: it never slows the writer or other watchers.
//   - Rooms expire RoomTTL after their last write, never while watched, and
//     not before RoomTTL after their last watcher left. The sweeper visits the
//     expiry index in order, at most 1000 rooms per transaction.
//
// # Caveats
//
//   - Deleting a room (or emptying it) deletes its log: resuming across that
//     gets a snapshot. Trimming a room's log (Limits.MaxLogEntries,
//     MaxLogBytes) raises the revision below which resumes get a snapshot.
//   - Who watched a room is kept in memory only: after a restart no room
//     expires until RoomTTL has passed.
//   - The file never shrinks (bbolt); Limits and Options.MaxSize bound it.
//     A database at MaxSize fails writes with ErrDatabaseFull; reads go on.
//   - Only one process may open the file; another waits OpenTimeout and fails
//     with ErrLocked.
package bolt
