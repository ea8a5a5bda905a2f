package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/sigbase/sigbase/api"
	"github.com/sigbase/sigbase/store"
)

// secretFlags name the auth secret: inline, or in a file (better: it stays
// out of the process list and the environment).
type secretFlags struct {
	secret, file string
}

func (s *secretFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&s.secret, "auth-secret", "", "turn auth on: the HS256 secret that signs tokens (at least 16 bytes)")
	fs.StringVar(&s.file, "auth-secret-file", "", "turn auth on with the secret read from this file")
}

// auth is nil when no secret is configured: auth is off.
func (s *secretFlags) auth() (*api.Auth, error) {
	secret := s.secret
	if s.file != "" {
		b, err := os.ReadFile(s.file)
		if err != nil {
			return nil, fmt.Errorf("--auth-secret-file: %w", err)
		}
		secret = strings.TrimSpace(string(b))
	}
	if secret == "" {
		return nil, nil
	}
	a, err := api.NewAuth([]byte(secret))
	if err != nil {
		return nil, fmt.Errorf("--auth-secret: %w", err)
	}
	return a, nil
}

// tokenCmd mints an access token with the server's secret.
func tokenCmd(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sigbase token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var s secretFlags
	s.register(fs)
	room := fs.String("room", "", `the room the token is for, or "*" for every room`)
	perm := fs.String("perm", "read,write", "permissions: read, write or read,write")
	ttl := fs.Duration("ttl", time.Hour, "how long the token is valid")
	if err := envFallback(fs, args, getenv); err != nil {
		return err
	}
	if *room == "" {
		return errors.New(`token: --room is required (a room name, or "*")`)
	}
	if *room != "*" {
		// The server's own rule: a token for a room it would refuse is useless.
		if _, err := store.NewPath(*room, "", ""); err != nil {
			return fmt.Errorf("token: --room: %w", err)
		}
	}
	a, err := s.auth()
	if err != nil {
		return err
	}
	if a == nil {
		return errors.New("token: no secret: set --auth-secret, --auth-secret-file or SIGBASE_AUTH_SECRET")
	}
	tok, err := a.Mint(*room, strings.Split(*perm, ","), *ttl)
	if err != nil {
		return fmt.Errorf("token: %w", err)
	}
	fmt.Fprintln(stdout, tok)
	return nil
}
