package store

import (
	"fmt"
	"strings"
)

// Name limits from the wire contract.
const (
	MaxRoomName = 128
	MaxKeyName  = 64
)

// Path is an addressable location: a room, a key of the room, or a child of
// that key. Key is empty for a room location; Child is empty unless Key is set.
type Path struct {
	Room, Key, Child string
}

// NewPath validates the names of a location. key and child may be empty.
func NewPath(room, key, child string) (Path, error) {
	p := Path{Room: room, Key: key, Child: child}
	if !validName(room, MaxRoomName) {
		return Path{}, fmt.Errorf("%w: room name %q must match [A-Za-z0-9_-]{1,128}", ErrInvalidPath, clip(room))
	}
	if key == "" && child != "" {
		return Path{}, fmt.Errorf("%w: a child needs a key", ErrInvalidPath)
	}
	if key != "" && !validName(key, MaxKeyName) {
		return Path{}, fmt.Errorf("%w: key name %q must match [A-Za-z0-9_-]{1,64}", ErrInvalidPath, clip(key))
	}
	if child != "" && !validName(child, MaxKeyName) {
		return Path{}, fmt.Errorf("%w: child name %q must match [A-Za-z0-9_-]{1,64}", ErrInvalidPath, clip(child))
	}
	return p, nil
}

// check validates a Path that may not come from NewPath: its fields are
// exported, and an unchecked name (a NUL, a child without a key) would
// address records of another room or key.
func (p Path) check() error {
	_, err := NewPath(p.Room, p.Key, p.Child)
	return err
}

// Depth is 0 for a room, 1 for a key and 2 for a child.
func (p Path) Depth() int {
	switch {
	case p.Child != "":
		return 2
	case p.Key != "":
		return 1
	}
	return 0
}

// String is the location as a URL path, e.g. /rooms/r1/offer.
func (p Path) String() string {
	s := "/rooms/" + p.Room
	if p.Key != "" {
		s += "/" + p.Key
	}
	if p.Child != "" {
		s += "/" + p.Child
	}
	return s
}

// Contains reports whether q is p or below it (same room).
func (p Path) Contains(q Path) bool {
	if p.Room != q.Room {
		return false
	}
	switch p.Depth() {
	case 0:
		return true
	case 1:
		return p.Key == q.Key
	}
	return p.Key == q.Key && p.Child == q.Child
}

// relative is the path of q below p ("/" when equal), for event paths.
// It assumes p.Contains(q).
func (p Path) relative(q Path) string {
	var parts []string
	if p.Depth() < 1 && q.Key != "" {
		parts = append(parts, q.Key)
	}
	if p.Depth() < 2 && q.Child != "" {
		parts = append(parts, q.Child)
	}
	return "/" + strings.Join(parts, "/")
}

// inRoom is the location's name inside its room: "", "key" or "key/child".
func (p Path) inRoom() string {
	if p.Child != "" {
		return p.Key + "/" + p.Child
	}
	return p.Key
}

func validName(s string, max int) bool {
	if len(s) == 0 || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !nameByte(s[i]) {
			return false
		}
	}
	return true
}

func nameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// clip keeps error messages about hostile names short.
func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
