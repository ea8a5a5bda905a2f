//go:build !linux

package api

import "net"

// hangups is Linux-only; elsewhere a departed watcher is noticed at the
// next write to it (an event, or a keep-alive).
type hangups struct{}

func (h *hangups) watch(net.Conn) (<-chan struct{}, func()) { return nil, func() {} }
