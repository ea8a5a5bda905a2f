package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// tlsFlags configure HTTPS: a certificate from files (reloaded when they
// change), or a self-signed one for trying the demo on a LAN.
type tlsFlags struct {
	cert, key    string
	selfSigned   bool
	hosts        listFlag
	redirectAddr string
}

func (t *tlsFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&t.cert, "tls-cert", "", "serve HTTPS (and HTTP/2) with this certificate file (PEM, full chain); reloaded when it changes")
	fs.StringVar(&t.key, "tls-key", "", "the private key of --tls-cert (PEM)")
	fs.BoolVar(&t.selfSigned, "tls-self-signed", false, "serve HTTPS with a self-signed certificate kept beside --data (for trying the demo on a LAN)")
	fs.Var(&t.hosts, "tls-hosts", "extra host names or IPs for the self-signed certificate, comma-separated")
	fs.StringVar(&t.redirectAddr, "redirect-addr", "", "also listen for plain HTTP here and redirect it to HTTPS (e.g. :80)")
}

func (t *tlsFlags) enabled() bool { return t.cert != "" || t.selfSigned }

// mode is how HTTPS is served: off, cert (files) or self-signed.
func (t *tlsFlags) mode() string {
	switch {
	case t.selfSigned:
		return "self-signed"
	case t.cert != "":
		return "cert"
	}
	return "off"
}

// check refuses TLS settings that contradict each other, and certificate
// files that do not load, before anything listens. addr is --addr.
func (t *tlsFlags) check(g given, addr string) error {
	switch {
	case t.selfSigned && t.cert != "":
		return fmt.Errorf("%s and %s exclude each other: give one", g.name("tls-self-signed"), g.name("tls-cert"))
	case t.selfSigned && t.key != "":
		return fmt.Errorf("%s makes its own key: drop %s", g.name("tls-self-signed"), g.name("tls-key"))
	case t.cert != "" && t.key == "":
		return fmt.Errorf("%s needs --tls-key", g.name("tls-cert"))
	case t.key != "" && t.cert == "":
		return fmt.Errorf("%s needs --tls-cert", g.name("tls-key"))
	case len(t.hosts.items) > 0 && !t.selfSigned:
		return fmt.Errorf("%s names hosts for --tls-self-signed, which is not set", g.name("tls-hosts"))
	case t.redirectAddr != "" && !t.enabled():
		return fmt.Errorf("%s redirects to HTTPS, which is off: add --tls-cert/--tls-key or --tls-self-signed", g.name("redirect-addr"))
	case g.has("tls-cert") && t.cert == "":
		return fmt.Errorf("%s is empty: name the certificate file", g.name("tls-cert"))
	}
	if t.redirectAddr != "" {
		if err := checkAddr(g, "redirect-addr", t.redirectAddr); err != nil {
			return err
		}
		if _, port, _ := net.SplitHostPort(addr); t.redirectAddr == addr && port != "0" {
			return fmt.Errorf("%s is --addr too: give it another port", g.is("redirect-addr", t.redirectAddr))
		}
	}
	if t.cert != "" {
		if _, err := tls.LoadX509KeyPair(t.cert, t.key); err != nil {
			return fmt.Errorf("%s/%s: %w", g.name("tls-cert"), g.name("tls-key"), err)
		}
	}
	return nil
}

// tlsConfig builds the server's TLS configuration; HTTP/2 is offered by
// ALPN. note describes a self-signed certificate for the user.
func (t *tlsFlags) tlsConfig(addr, dataFile string, log *slog.Logger) (cfg *tls.Config, note string, err error) {
	certFile, keyFile := t.cert, t.key
	if t.selfSigned {
		if certFile != "" {
			return nil, "", errors.New("--tls-self-signed and --tls-cert exclude each other")
		}
		dir := filepath.Dir(dataFile)
		certFile, keyFile = filepath.Join(dir, "sigbase-tls.crt"), filepath.Join(dir, "sigbase-tls.key")
		names := certNames(addr, t.hosts.items)
		fp, err := ensureSelfSigned(certFile, keyFile, names)
		if err != nil {
			return nil, "", err
		}
		note = fmt.Sprintf("tls: self-signed certificate for %s, sha256 fingerprint %s", strings.Join(names, ", "), fp)
	} else if keyFile == "" {
		return nil, "", errors.New("--tls-cert needs --tls-key")
	}
	r := &certReloader{certFile: certFile, keyFile: keyFile, log: log}
	if err := r.load(); err != nil {
		return nil, "", err
	}
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		NextProtos:     []string{"h2", "http/1.1"},
		GetCertificate: r.get,
	}, note, nil
}

// certReloader serves a certificate from files and loads them again when
// their modification time changes (checked at most once a second, on a
// handshake), so a renewed certificate needs no restart.
type certReloader struct {
	certFile, keyFile string
	log               *slog.Logger

	mu      sync.Mutex
	cert    *tls.Certificate
	stamp   [2]time.Time // modification times of the loaded files
	checked time.Time
}

func (r *certReloader) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if time.Since(r.checked) >= time.Second {
		r.checked = time.Now()
		if stamp, err := r.stamps(); err == nil && stamp != r.stamp {
			if err := r.loadLocked(); err != nil {
				r.log.Error("tls: keeping the old certificate", "err", err)
			} else {
				r.log.Info("tls: certificate reloaded", "cert", r.certFile)
			}
		}
	}
	return r.cert, nil
}

func (r *certReloader) stamps() ([2]time.Time, error) {
	var s [2]time.Time
	for i, f := range []string{r.certFile, r.keyFile} {
		st, err := os.Stat(f)
		if err != nil {
			return s, err
		}
		s[i] = st.ModTime()
	}
	return s, nil
}

func (r *certReloader) load() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.loadLocked()
}

func (r *certReloader) loadLocked() error {
	stamp, err := r.stamps()
	if err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	r.cert, r.stamp = &cert, stamp
	return nil
}

// certNames are the names a self-signed certificate covers: the listening
// host (or, on a wildcard address, every local address), localhost, and
// the extra names given.
func certNames(addr string, extra []string) []string {
	names := []string{"localhost", "127.0.0.1", "::1"}
	host, _, _ := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		if addrs, err := net.InterfaceAddrs(); err == nil {
			for _, a := range addrs {
				if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLinkLocalUnicast() {
					names = append(names, ipn.IP.String())
				}
			}
		}
	} else {
		names = append(names, host)
	}
	names = append(names, extra...)
	slices.Sort(names)
	return slices.Compact(names)
}

// ensureSelfSigned reuses the certificate in certFile when it covers names
// and is valid for another week; otherwise it makes a new one (ECDSA P-256,
// one year). It returns the SHA-256 fingerprint.
func ensureSelfSigned(certFile, keyFile string, names []string) (string, error) {
	if pair, err := tls.LoadX509KeyPair(certFile, keyFile); err == nil {
		if leaf, err := x509.ParseCertificate(pair.Certificate[0]); err == nil && covers(leaf, names) &&
			time.Until(leaf.NotAfter) > 7*24*time.Hour {
			return fingerprint(leaf.Raw), nil
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "sigbase self-signed", Organization: []string{"sigbase"}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return "", err
	}
	if err := writePEM(keyFile, "EC PRIVATE KEY", keyDER, 0o600); err != nil {
		return "", err
	}
	if err := writePEM(certFile, "CERTIFICATE", der, 0o644); err != nil {
		return "", err
	}
	return fingerprint(der), nil
}

func covers(cert *x509.Certificate, names []string) bool {
	for _, n := range names {
		if cert.VerifyHostname(n) != nil {
			return false
		}
	}
	return true
}

func fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	hex := fmt.Sprintf("% X", sum[:])
	return strings.ReplaceAll(hex, " ", ":")
}

// writePEM writes atomically, so a reloader never reads half a file.
func writePEM(path, kind string, der []byte, mode os.FileMode) error {
	var buf bytes.Buffer
	if err := pem.Encode(&buf, &pem.Block{Type: kind, Bytes: der}); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, buf.Bytes(), mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// redirectToHTTPS answers plain HTTP with a permanent redirect to the same
// path on the HTTPS port.
func redirectToHTTPS(httpsAddr string) http.Handler {
	_, port, _ := net.SplitHostPort(httpsAddr)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if h, _, err := net.SplitHostPort(r.Host); err == nil {
			host = h
		}
		if port != "443" {
			host = net.JoinHostPort(host, port)
		}
		http.Redirect(w, r, "https://"+host+r.URL.RequestURI(), http.StatusPermanentRedirect)
	})
}
