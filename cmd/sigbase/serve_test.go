package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// Settings that cannot work stop the binary before it opens the store or
// listens: exit status 1, nothing on stdout, one line on stderr naming the
// flag (or the variable that set it), and no database file.
func TestServeRefusesUnworkableSettings(t *testing.T) {
	t.Parallel()
	bin := sigbaseBinary(t)
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty-secret")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")
	for _, c := range []struct {
		name string
		args []string
		env  []string
		want string // the whole stderr line after "sigbase: "; a trailing * matches any rest
	}{
		{"turn without secret", []string{"--turn", "turn:t.example:3478"}, nil,
			"--turn needs --turn-secret: TURN servers refuse credentials minted without it"},
		{"turn secret without turn", []string{"--turn-secret", "s3cret"}, nil,
			"--turn-secret without --turn: no TURN URL to hand credentials for"},
		{"turn from env without secret", nil, []string{"SIGBASE_TURN=turn:t.example:3478"},
			"SIGBASE_TURN needs --turn-secret: TURN servers refuse credentials minted without it"},
		{"turn-ttl without turn", []string{"--turn-ttl", "5m"}, nil,
			"--turn-ttl without --turn: no TURN credentials to mint"},
		{"stun URL in --turn", []string{"--turn", "stun:t.example:3478", "--turn-secret", "s"}, nil,
			`--turn "stun:t.example:3478": want a turn: or turns: URL`},
		{"turn URL in --stun", []string{"--stun", "turn:t.example:3478"}, nil,
			`--stun "turn:t.example:3478": want a stun: or stuns: URL`},
		{"cert without key", []string{"--tls-cert", missing}, nil, "--tls-cert needs --tls-key"},
		{"key without cert", []string{"--tls-key", missing}, nil, "--tls-key needs --tls-cert"},
		{"self-signed and cert", []string{"--tls-self-signed", "--tls-cert", missing, "--tls-key", missing}, nil,
			"--tls-self-signed and --tls-cert exclude each other: give one"},
		{"self-signed and key", []string{"--tls-self-signed", "--tls-key", missing}, nil,
			"--tls-self-signed makes its own key: drop --tls-key"},
		{"tls-hosts without self-signed", []string{"--tls-hosts", "a.example"}, nil,
			"--tls-hosts names hosts for --tls-self-signed, which is not set"},
		{"redirect without TLS", []string{"--redirect-addr", ":8081"}, nil,
			"--redirect-addr redirects to HTTPS, which is off: add --tls-cert/--tls-key or --tls-self-signed"},
		{"redirect that does not parse", []string{"--tls-self-signed", "--redirect-addr", "80"}, nil,
			`--redirect-addr "80": want host:port, e.g. 127.0.0.1:8080 or :8080`},
		{"redirect on the listen address", []string{"--tls-self-signed", "--addr", "127.0.0.1:8443", "--redirect-addr", "127.0.0.1:8443"}, nil,
			"--redirect-addr 127.0.0.1:8443 is --addr too: give it another port"},
		{"cert files that do not load", []string{"--tls-cert", missing, "--tls-key", missing}, nil,
			"--tls-cert/--tls-key: open " + missing + ": no such file or directory"},
		{"addr without port", []string{"--addr", "localhost"}, nil,
			`--addr "localhost": want host:port, e.g. 127.0.0.1:8080 or :8080`},
		{"addr with a bad port", []string{"--addr", ":99999"}, nil,
			`--addr ":99999": port "99999" is not a number from 0 to 65535`},
		{"addr from env", nil, []string{"SIGBASE_ADDR=8080"},
			`SIGBASE_ADDR="8080": want host:port, e.g. 127.0.0.1:8080 or :8080`},
		{"store that is no etcd URL", []string{"--store", "http://e:2379"}, nil,
			`--store "http://e:2379": want etcd://host:port[,host:port...][/prefix]`},
		{"etcd member without port", []string{"--store", "etcd://e1:2379,e2/p"}, nil,
			`--store "etcd://e1:2379,e2/p": etcd member "e2": want host:port, e.g. etcd-1:2379`},
		{"max-db-size with etcd", []string{"--store", "etcd://e1:2379", "--max-db-size", "1MiB"}, nil,
			"--max-db-size applies to the bbolt file, not to --store etcd: drop it"},
		{"open-timeout with etcd", []string{"--store", "etcd://e1:2379"}, []string{"SIGBASE_OPEN_TIMEOUT=1s"},
			"SIGBASE_OPEN_TIMEOUT applies to the bbolt file, not to --store etcd: drop it"},
		{"empty data", []string{"--data", ""}, nil, "--data is empty: name the database file"},
		{"data is a directory", []string{"--data", dir}, nil,
			"--data " + dir + " is a directory: name the database file in it"},
		{"zero max-keys", []string{"--max-keys", "0"}, nil, "--max-keys 0: want at least 1 (0 does not mean unlimited)"},
		{"negative max-children", []string{"--max-children", "-1"}, nil, "--max-children -1: want at least 1 (0 does not mean unlimited)"},
		{"zero max-body", []string{"--max-body", "0"}, nil, "--max-body 0: want at least 1 (0 does not mean unlimited)"},
		{"zero max-room-bytes", []string{"--max-room-bytes", "0KiB"}, nil, "--max-room-bytes 0: want at least 1 (0 does not mean unlimited)"},
		{"zero max-db-size", []string{"--max-db-size", "0"}, nil, "--max-db-size 0: want at least 1 (0 does not mean unlimited)"},
		{"zero max-log-entries", []string{"--max-log-entries", "0"}, nil, "--max-log-entries 0: want at least 1 (0 does not mean unlimited)"},
		{"zero watch-queue", []string{"--watch-queue", "0"}, nil, "--watch-queue 0: want at least 1 (0 does not mean unlimited)"},
		{"zero max-streams from env", nil, []string{"SIGBASE_MAX_STREAMS=0"}, "SIGBASE_MAX_STREAMS=0: want at least 1 (0 does not mean unlimited)"},
		{"zero max-streams-per-ip", []string{"--max-streams-per-ip", "0"}, nil, "--max-streams-per-ip 0: want at least 1 (0 does not mean unlimited)"},
		{"zero max-streams-per-room", []string{"--max-streams-per-room", "0"}, nil, "--max-streams-per-room 0: want at least 1 (0 does not mean unlimited)"},
		{"zero keepalive", []string{"--keepalive", "0s"}, nil, "--keepalive 0s: want a positive duration such as 10s"},
		{"negative room-ttl", []string{"--room-ttl", "-1m"}, nil, "--room-ttl -1m0s: want a positive duration such as 10s"},
		{"zero open-timeout", []string{"--open-timeout", "0"}, nil, "--open-timeout 0s: want a positive duration such as 10s"},
		{"zero shutdown-timeout", []string{"--shutdown-timeout", "0"}, nil, "--shutdown-timeout 0s: want a positive duration such as 10s"},
		{"zero turn-ttl", []string{"--turn", "turn:t.example:3478", "--turn-secret", "s", "--turn-ttl", "0"}, nil,
			"--turn-ttl 0s: want a positive duration such as 10s"},
		{"negative rate-limit", []string{"--rate-limit", "-1"}, nil, "--rate-limit -1: want requests per second, or 0 for no limit"},
		{"rate-limit NaN", []string{"--rate-limit", "NaN"}, nil, "--rate-limit NaN: want requests per second, or 0 for no limit"},
		{"zero rate-burst", []string{"--rate-burst", "0"}, nil, "--rate-burst 0: want at least 1 request"},
		{"rate-burst without rate-limit", []string{"--rate-limit", "0", "--rate-burst", "10"}, nil,
			"--rate-burst without a --rate-limit: rate limiting is off"},
		{"empty cors-origins", []string{"--cors-origins", ""}, nil, "--cors-origins is empty: name the allowed origins, or * for any"},
		{"star with origins", []string{"--cors-origins", "*,https://a.example"}, nil,
			`--cors-origins "*,https://a.example": * allows every origin; give * alone or only origins`},
		{"origin with a path", []string{"--cors-origins", "https://a.example/"}, nil,
			`--cors-origins: "https://a.example/" is not an origin like https://app.example.org (scheme://host[:port], no path)`},
		{"origin without scheme", []string{"--cors-origins", "a.example"}, nil,
			`--cors-origins: "a.example" is not an origin like https://app.example.org (scheme://host[:port], no path)`},
		{"both auth secrets", []string{"--auth-secret", "a-long-enough-test-secret", "--auth-secret-file", empty}, nil,
			"--auth-secret and --auth-secret-file exclude each other: give one"},
		{"empty auth secret", []string{"--auth-secret="}, nil, "--auth-secret is empty: auth would be off"},
		{"empty auth secret file name", []string{"--auth-secret-file="}, nil,
			"--auth-secret-file is empty: name the file that holds the secret"},
		{"empty auth secret file", nil, []string{"SIGBASE_AUTH_SECRET_FILE=" + empty},
			"SIGBASE_AUTH_SECRET_FILE=" + empty + " is empty: auth would be off"},
		{"short auth secret", []string{"--auth-secret", "short"}, nil,
			"--auth-secret: auth secret of 5 bytes: want at least 16"},
		{"bad trusted proxy", []string{"--trusted-proxies", "10.0.0.1"}, nil,
			`--trusted-proxies: netip.ParsePrefix("10.0.0.1"): no '/'`},
		{"unknown flag", []string{"--no-such-flag"}, nil,
			"flag provided but not defined: -no-such-flag (sigbase serve -h lists the flags)"},
		{"value that does not parse", []string{"--max-body", "lots"}, nil,
			`invalid value "lots" for flag -max-body: want a byte size like 65536 or 64KiB (sigbase serve -h lists the flags)`},
		{"bad log format", []string{"--log-format", "xml"}, nil, `--log-format: want text or json, got "xml"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			data := filepath.Join(t.TempDir(), "sigbase.db")
			args := []string{"serve", "--data", data}
			if !slices.ContainsFunc(c.env, func(kv string) bool { return strings.HasPrefix(kv, "SIGBASE_ADDR=") }) {
				args = append(args, "--addr", "127.0.0.1:0") // should a check fail to refuse
			}
			args = append(args, c.args...)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, args...) // killed if it serves instead
			cmd.Env = append(cleanEnv(), c.env...)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 1 {
				t.Fatalf("sigbase %q: %v, want exit status 1; stderr:\n%s", args, err, &stderr)
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout: %q, want nothing", &stdout)
			}
			got := strings.TrimSuffix(stderr.String(), "\n")
			if want := "sigbase: " + c.want; got != want {
				t.Errorf("stderr:\n%s\nwant the one line\n%s", got, want)
			}
			if _, err := os.Stat(data); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the store was opened: %s exists (%v)", data, err)
			}
		})
	}
}

// cleanEnv is this process's environment without SIGBASE_* variables.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SIGBASE_") {
			env = append(env, kv)
		}
	}
	return env
}

// The effective configuration is logged once at startup, on one line.
func TestServeLogsItsConfigurationOnce(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		env  map[string]string
		args []string
		want map[string]string // addr and data are added
	}{
		{"defaults", nil, nil, map[string]string{
			"msg": "serving", "store": "bolt", "max_db_size": "1GiB", "tls": "off", "redirect": "off",
			"auth": "off", "turn": "off", "stun": "off", "cors_origins": "*", "trusted_proxies": "0",
			"max_body": "64KiB", "max_keys": "256", "max_children": "1000", "max_room_bytes": "1MiB",
			"max_log_entries": "1000", "room_ttl": "1h0m0s", "watch_queue": "1024",
			"max_streams_per_ip": "1000", "max_streams_per_room": "1000",
			"rate_limit": "200/s", "rate_burst": "400", "keepalive": "15s", "shutdown_timeout": "10s",
		}},
		{"configured", map[string]string{"SIGBASE_AUTH_SECRET": "a-long-enough-test-secret", "SIGBASE_MAX_KEYS": "7"}, []string{
			"--tls-self-signed", "--max-body", "32KiB", "--max-room-bytes", "100000", "--max-db-size", "2GiB",
			"--turn", "turn:t.example:3478", "--turn-secret", "s", "--stun", "stun:t.example:3478",
			"--cors-origins", "https://a.example,https://b.example", "--trusted-proxies", "10.0.0.0/8",
			"--max-streams", "50", "--max-streams-per-ip", "5", "--max-streams-per-room", "6",
			"--rate-limit", "2.5", "--rate-burst", "9", "--keepalive", "4s", "--room-ttl", "90s",
			"--shutdown-timeout", "3s", "--max-children", "11", "--max-log-entries", "12", "--watch-queue", "13",
		}, map[string]string{
			"msg": "serving", "store": "bolt", "max_db_size": "2GiB", "tls": "self-signed", "redirect": "off",
			"auth": "on", "turn": "on", "stun": "on", "cors_origins": "https://a.example,https://b.example",
			"trusted_proxies": "1", "max_body": "32KiB", "max_keys": "7", "max_children": "11",
			"max_room_bytes": "100000B", "max_log_entries": "12", "room_ttl": "1m30s", "watch_queue": "13",
			"max_streams": "50", "max_streams_per_ip": "5", "max_streams_per_room": "6",
			"rate_limit": "2.5/s", "rate_burst": "9", "keepalive": "4s", "shutdown_timeout": "3s",
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			data := filepath.Join(t.TempDir(), "sigbase.db")
			s := startServer(t, c.env, append([]string{"--data", data}, c.args...)...)
			s.stderr.waitFor(t, "msg=serving")
			var lines []string
			for _, l := range strings.Split(s.stderr.String(), "\n") {
				if strings.Contains(l, "msg=serving") || strings.Contains(l, "max_keys=") {
					lines = append(lines, l)
				}
			}
			if len(lines) != 1 {
				t.Fatalf("%d configuration lines, want 1:\n%s", len(lines), s.stderr)
			}
			got := map[string]string{}
			for _, f := range strings.Fields(lines[0]) {
				k, v, _ := strings.Cut(f, "=")
				if _, dup := got[k]; dup {
					t.Errorf("%s twice in\n%s", k, lines[0])
				}
				got[k] = v
			}
			_, addr, _ := strings.Cut(s.url, "://")
			c.want["addr"], c.want["data"], c.want["level"] = addr, data, "INFO"
			for k, v := range c.want {
				if got[k] != v {
					t.Errorf("%s=%q, want %q in\n%s", k, got[k], v, lines[0])
				}
			}
			if got["max_streams"] == "" || got["version"] == "" {
				t.Errorf("no max_streams or version in\n%s", lines[0])
			}
		})
	}
}
