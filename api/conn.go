package api

import (
	"bytes"
	"net"
	"strconv"
	"strings"
)

// goErrorHeaders ends the status line of the few answers net/http writes
// itself, before any handler runs: a request line or headers over
// MaxHeaderBytes (431) and requests it cannot parse (400, 501, 505).
const goErrorHeaders = "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"

// JSONErrors wraps a plain-TCP listener so those answers carry the same
// {"error": "..."} body as every other error. net/http has no hook for them;
// it writes them straight to the connection in one Write, which is where
// this looks. Under TLS net/http needs the *tls.Conn itself, so a TLS
// listener is not wrapped and keeps Go's plain-text answers.
func JSONErrors(ln net.Listener) net.Listener { return jsonErrorListener{ln} }

type jsonErrorListener struct{ net.Listener }

func (l jsonErrorListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tcp, ok := c.(*net.TCPConn); ok && err == nil {
		// Embedding *net.TCPConn keeps SyscallConn (the hang-up poller),
		// ReadFrom (sendfile) and CloseWrite.
		return jsonErrorConn{tcp}, nil
	}
	return c, err
}

type jsonErrorConn struct{ *net.TCPConn }

func (c jsonErrorConn) Write(p []byte) (int, error) {
	if b, ok := rewriteGoError(p); ok {
		if _, err := c.TCPConn.Write(b); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	return c.TCPConn.Write(p)
}

// rewriteGoError turns net/http's own "HTTP/1.1 431 …" plain-text answer
// into the JSON error shape. Anything else, such as a handler's response,
// whose headers never end the status line this way, is left alone.
func rewriteGoError(p []byte) ([]byte, bool) {
	if !bytes.HasPrefix(p, []byte("HTTP/1.1 ")) {
		return nil, false
	}
	end := bytes.IndexByte(p, '\r')
	if end < 0 || !bytes.HasPrefix(p[end:], []byte(goErrorHeaders)) {
		return nil, false
	}
	status := string(p[:end])
	code, text, _ := strings.Cut(strings.TrimPrefix(status, "HTTP/1.1 "), " ")
	msg := string(p[end+len(goErrorHeaders):])
	msg = strings.TrimSpace(strings.TrimPrefix(msg, code))
	if code == "431" {
		msg = "request line and headers too large"
	}
	if msg == "" {
		msg = text
	}
	body := errorBody(msg)
	var b []byte
	b = append(b, status...)
	b = append(b, "\r\nContent-Type: "+contentTypeJSON+"\r\nConnection: close\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(body)), 10)
	b = append(b, "\r\n\r\n"...)
	return append(b, body...), true
}
