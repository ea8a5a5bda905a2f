// Command sigbase is the signaling server and its command-line tools.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "sigbase:", err)
		os.Exit(1)
	}
}

const usage = `usage: sigbase [command] [flags]

commands:
  serve           run the server (the default when no command is given)
  watch URL       print the events of a location, resuming across disconnects
  token           mint an access token for a room (when auth is on)
  health [ADDR]   exit 0 when the server at ADDR (a URL or host:port) answers /healthz
  version         print the version
  help            print this list

sigbase COMMAND -h lists the flags of a command.
`

// run is the whole program; main only supplies the OS.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cmd := "serve"
	if len(args) > 0 {
		switch args[0] {
		case "-h", "-help", "--help":
			cmd, args = "help", args[1:]
		case "-version", "--version":
			cmd, args = "version", args[1:]
		default:
			if args[0] != "" && args[0][0] != '-' {
				cmd, args = args[0], args[1:]
			}
		}
	}
	err := dispatch(ctx, cmd, args, getenv, stdout, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil // -h: the flag set printed its usage, as asked
	}
	return err
}

func dispatch(ctx context.Context, cmd string, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	switch cmd {
	case "serve":
		return serve(ctx, args, getenv, stdout, stderr)
	case "watch":
		return watchCmd(ctx, args, getenv, stdout, stderr)
	case "token":
		return tokenCmd(args, getenv, stdout, stderr)
	case "health":
		return healthCmd(ctx, args, getenv, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "sigbase", version())
		return nil
	case "help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q (sigbase help lists them)", cmd)
}
