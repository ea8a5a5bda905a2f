package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
)

// loopbackURL parses the target and refuses anything but a loopback
// address: 127.0.0.0/8 or [::1] (localhost means 127.0.0.1). No name is
// resolved, so what is checked is what is dialled.
func loopbackURL(raw string) (*url.URL, netip.AddrPort, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, netip.AddrPort{}, fmt.Errorf("target %q: %w", raw, err)
	}
	if u.Scheme != "http" {
		return nil, netip.AddrPort{}, fmt.Errorf("target %q: want an http:// URL", raw)
	}
	if u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return nil, netip.AddrPort{}, fmt.Errorf("target %q: want scheme, host and port only", raw)
	}
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = "80"
	}
	if strings.EqualFold(host, "localhost") {
		host = "127.0.0.1"
	}
	addr, err := netip.ParseAddr(host)
	if err != nil || addr.Zone() != "" {
		return nil, netip.AddrPort{}, fmt.Errorf("target %q: want a loopback IP address (127.0.0.0/8 or [::1]), not a name", raw)
	}
	if !isLoopback(addr) {
		return nil, netip.AddrPort{}, fmt.Errorf("target %q: %s is not a loopback address; sigbench only loads this machine (127.0.0.0/8, [::1])", raw, addr)
	}
	ap, err := netip.ParseAddrPort(net.JoinHostPort(addr.Unmap().String(), port))
	if err != nil || ap.Port() == 0 {
		return nil, netip.AddrPort{}, fmt.Errorf("target %q: bad port %q", raw, port)
	}
	return &url.URL{Scheme: "http", Host: ap.String()}, ap, nil
}

// isLoopback is 127.0.0.0/8 or ::1 (also as ::ffff:127.x.y.z).
func isLoopback(a netip.Addr) bool {
	a = a.Unmap()
	if a.Is4() {
		return a.As4()[0] == 127
	}
	return a == netip.IPv6Loopback()
}

// dialer connects to loopback addresses only. Watcher connections take
// their source address in turn from a list (127.0.0.2, 127.0.0.3, ...), so
// per-IP stream limits of the server are not what a run measures.
type dialer struct {
	base    net.Dialer
	sources []*net.TCPAddr // nil for an IPv6 target: ::1 is the only source
	next    atomic.Uint64
}

func newDialer(target netip.Addr, n int) *dialer {
	d := &dialer{}
	if target.Unmap().Is4() {
		d.sources = sourceAddrs(n)
	}
	return d
}

// sourceAddrs lists n loopback addresses from 127.0.0.2 on, skipping any
// whose last octet is 0 or 255.
func sourceAddrs(n int) []*net.TCPAddr {
	out := make([]*net.TCPAddr, 0, n)
	for v := uint32(127<<24 | 2); len(out) < n && v < 128<<24; v++ {
		if b := byte(v); b == 0 || b == 255 {
			continue
		}
		a := netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
		out = append(out, net.TCPAddrFromAddrPort(netip.AddrPortFrom(a, 0)))
	}
	return out
}

// dial connects from the default source address.
func (d *dialer) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if err := checkDialAddr(addr); err != nil {
		return nil, err
	}
	return d.base.DialContext(ctx, network, addr)
}

// dialSpread connects from the next source address in turn.
func (d *dialer) dialSpread(ctx context.Context, network, addr string) (net.Conn, error) {
	if err := checkDialAddr(addr); err != nil {
		return nil, err
	}
	if len(d.sources) == 0 {
		return d.base.DialContext(ctx, network, addr)
	}
	nd := d.base
	nd.LocalAddr = d.sources[d.next.Add(1)%uint64(len(d.sources))]
	return nd.DialContext(ctx, network, addr)
}

// checkDialAddr is the last guard before a connect: loopback IPs only.
func checkDialAddr(addr string) error {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return fmt.Errorf("dial %q: want a loopback IP:port", addr)
	}
	if !isLoopback(ap.Addr()) {
		return fmt.Errorf("dial %s: refused, not a loopback address", addr)
	}
	return nil
}
