// Package store is sigbase's room model: a three-level JSON tree (room,
// key, child) per room, every committed write numbered by one global
// revision, a per-room change log for exact resume, and the watchers of
// each room. It knows nothing of HTTP (the api package turns it into the
// wire contract) and does no I/O of its own: an Engine keeps the rooms.
// Two engines exist, each its own package: store/bolt (one bbolt file and
// its write-ahead log; its package doc has the layout and guarantees) and
// store/etcd (an etcd cluster shared by several nodes, docs/SCALING.md).
//
// # The seam
//
// Store parses and checks each write into a Write and hands it to the
// engine (Engine.Submit). The engine loads the room (the keys Write.Needs
// says) into a Room, applies the write with Room.Apply, which is the whole
// model of a write (precondition, server values, new key values, quotas,
// the Change for watchers), stores what Room.Touched reports and the
// Change (Change.Encode), and hands committed changes to the Hub in
// revision order. Reads go through Room.ValueAt, the one read function.
//
// # Guarantees, whatever the engine
//
//   - A write returns once it is durable; its revision is above every
//     revision returned before.
//   - Watchers register before they read, so between a snapshot (or log
//     catch-up) and live changes nothing is missed or repeated. A resume
//     replays the logged changes after the given revision only when the
//     engine can show it holds every one of them; otherwise the watcher gets
//     a snapshot. A watcher whose queue overflows is evicted (ErrEvicted)
//     and resumes from the log: it never slows the writer or other watchers.
package store
