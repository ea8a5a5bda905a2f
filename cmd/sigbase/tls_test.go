package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// httpsClient trusts the certificate in certFile and speaks HTTP/2.
func httpsClient(t *testing.T, certFile string) *http.Client {
	t.Helper()
	pem, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatal("no certificate in", certFile)
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}}
}

func peerSerial(t *testing.T, c *http.Client, url string) string {
	t.Helper()
	res, err := c.Get(url + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res.TLS.PeerCertificates[0].SerialNumber.String()
}

// Self-signed HTTPS: HTTP/2 by ALPN, streams flush over it and end with
// cancel on shutdown, and a restart reuses the certificate.
func TestSelfSignedHTTP2(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	data := filepath.Join(dir, "sigbase.db")
	s := startServer(t, nil, "--data", data, "--tls-self-signed", "--tls-hosts", "sigbase.test")
	if !strings.HasPrefix(s.url, "https://127.0.0.1:") {
		t.Fatalf("url %s", s.url)
	}
	s.stdout.waitFor(t, "sha256 fingerprint ")
	certFile := filepath.Join(dir, "sigbase-tls.crt")
	c := httpsClient(t, certFile)
	res, err := c.Get(s.url + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.Proto != "HTTP/2.0" || res.TLS.NegotiatedProtocol != "h2" {
		t.Fatalf("protocol %s, ALPN %q: want HTTP/2", res.Proto, res.TLS.NegotiatedProtocol)
	}
	if err := res.TLS.PeerCertificates[0].VerifyHostname("sigbase.test"); err != nil {
		t.Errorf("--tls-hosts not in the certificate: %v", err)
	}

	req, _ := http.NewRequest("GET", s.url+"/rooms/r1", nil)
	req.Header.Set("Accept", "text/event-stream")
	stream, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Body.Close()
	if stream.Proto != "HTTP/2.0" {
		t.Fatalf("stream over %s", stream.Proto)
	}
	got := &syncBuffer{}
	go io.Copy(got, bufio.NewReader(stream.Body))
	got.waitFor(t, `"data":null}`)
	wreq, _ := http.NewRequest("PUT", s.url+"/rooms/r1/offer", strings.NewReader(`"o"`))
	if res, err := c.Do(wreq); err != nil || res.StatusCode != 200 {
		t.Fatalf("PUT over h2: %v %v", res, err)
	}
	got.waitFor(t, `{"path":"/offer","data":"o"}`)
	before, _ := os.ReadFile(certFile)
	s.stop(t)
	got.waitFor(t, "event: cancel")

	s = startServer(t, nil, "--data", data, "--tls-self-signed", "--tls-hosts", "sigbase.test")
	s.stdout.waitFor(t, "sha256 fingerprint ")
	after, _ := os.ReadFile(certFile)
	if string(before) != string(after) {
		t.Fatal("the self-signed certificate was not reused across a restart")
	}
}

// A renewed certificate is served to new connections without a restart.
func TestCertificateReload(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	if _, err := ensureSelfSigned(cert, key, []string{"127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, nil, "--data", filepath.Join(dir, "db"), "--tls-cert", cert, "--tls-key", key)
	first := peerSerial(t, httpsClient(t, cert), s.url)
	old, _ := os.ReadFile(cert)

	os.Remove(cert) // so ensureSelfSigned makes a new one
	if _, err := ensureSelfSigned(cert, key, []string{"127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	renewed, _ := os.ReadFile(cert)
	both := filepath.Join(dir, "both.pem") // trust old and new while the switch happens
	if err := os.WriteFile(both, append(old, renewed...), 0o600); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		time.Sleep(300 * time.Millisecond)
		if peerSerial(t, httpsClient(t, both), s.url) != first {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the renewed certificate was never served")
		}
	}
}

func TestRedirectToHTTPS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := startServer(t, nil, "--data", filepath.Join(dir, "db"), "--tls-self-signed", "--redirect-addr", "127.0.0.1:0")
	s.stdout.waitFor(t, "to https")
	line := s.stdout.String()
	i := strings.Index(line, "redirecting http://")
	addr := strings.Fields(line[i:])[1]
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := c.Get(addr + "/rooms/r1?print=pretty")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusPermanentRedirect || res.Header.Get("Location") != s.url+"/rooms/r1?print=pretty" {
		t.Fatalf("redirect: %d to %q, want 308 to %s/rooms/r1?print=pretty", res.StatusCode, res.Header.Get("Location"), s.url)
	}
}
