package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/gatehouse/gatehouse/config"
	"github.com/gatehouse/gatehouse/internal/devidp"
	gserve "github.com/gatehouse/gatehouse/internal/serve"
)

// listFlag is a flag that may be given several times.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// devIdPCmd is "gatehouse devidp": the development OpenID provider of
// `gatehouse demo`, on its own, on a loopback address, until ctx ends.
func devIdPCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("devidp", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var opts devidp.ServerOptions
	var users, redirects listFlag
	var usersFile string
	fs.StringVar(&opts.Listen, "listen", devidp.DefaultListen, "address (loopback only)")
	fs.StringVar(&opts.ClientID, "client-id", devidp.DefaultClientID, "the client ID gatehouse uses (oidc.client_id)")
	fs.StringVar(&opts.ClientSecret, "client-secret", "", "the client secret (oidc.client_secret); default a fresh random one at every start")
	fs.Var(&redirects, "redirect-uri", "an allowed redirect URI, repeatable (default "+devidp.DefaultRedirectURI+")")
	fs.Var(&users, "user", "a user NAME[:GROUP,GROUP...], repeatable, e.g. -user alice:admins,staff (default alice and bob)")
	fs.StringVar(&usersFile, "users", "", "a YAML file of users: users: [{name, email, display_name, groups, email_verified}]")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "gatehouse devidp: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	for _, v := range users {
		u, err := devidp.ParseUserFlag(v)
		if err != nil {
			fmt.Fprintln(stderr, "gatehouse devidp:", err)
			return 2
		}
		opts.Users = append(opts.Users, u)
	}
	if usersFile != "" {
		us, err := devidp.LoadUsers(usersFile)
		if err != nil {
			fmt.Fprintln(stderr, "gatehouse devidp:", err)
			return 1
		}
		opts.Users = append(opts.Users, us...)
	}
	opts.RedirectURIs = redirects
	opts.Logger = gserve.NewLogger(stderr, config.Log{Level: "info", Format: "auto"})
	s, err := devidp.Listen(opts)
	if err != nil {
		fmt.Fprintln(stderr, "gatehouse devidp:", err)
		return 1
	}
	if err := s.PrintWelcome(stdout); err != nil {
		fmt.Fprintln(stderr, "gatehouse devidp:", err)
		return 1
	}
	if err := s.Serve(ctx); err != nil {
		fmt.Fprintln(stderr, "gatehouse devidp:", err)
		return 1
	}
	return 0
}
