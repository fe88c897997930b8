// Command gatehouse is an authenticating reverse proxy: it signs people in
// with OpenID Connect, keeps their sessions on the server and tells the
// app behind it who they are in request headers.
//
//	gatehouse -config gatehouse.yaml        run the proxy (also: gatehouse serve -config ...)
//	gatehouse check -config gatehouse.yaml  validate a configuration
//	gatehouse demo                          everything on this machine, for a first look
//	gatehouse devidp                        the demo's development provider, on its own
//	gatehouse version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/gatehouse/gatehouse/config"
	"github.com/gatehouse/gatehouse/internal/demo"
	gserve "github.com/gatehouse/gatehouse/internal/serve"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3";
// otherwise it comes from the module's build information.
var version = ""

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `usage:
  gatehouse [serve] -config FILE   run the proxy (SIGHUP or a changed file reloads; SIGTERM drains)
  gatehouse check -config FILE     validate FILE; print every problem and exit 1, or exit 0
                  [-print]         and print the effective configuration, secrets redacted
  gatehouse demo                   run a development provider, a demo app and gatehouse on 127.0.0.1
  gatehouse devidp [-user NAME:GROUPS] [-users FILE] [-client-id ID] [-client-secret S] [-redirect-uri URI] [-listen ADDR]
                                   run the development provider alone on 127.0.0.1:4181 (loopback only)
  gatehouse schema                 print the configuration's JSON Schema (for editors)
  gatehouse sessions list -sub SUB        list a user's sessions   } through the admin listener:
  gatehouse sessions revoke -handle H     revoke one session       } -admin URL (default
  gatehouse sessions revoke -sub SUB      revoke all of a user's   } http://127.0.0.1:9090), -token-file F
  gatehouse version                print the version
`

// run is the whole program but for the process: it returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 && (!strings.HasPrefix(args[0], "-") || args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return serve(ctx, args, stderr)
	case "check":
		return check(args, stdout, stderr)
	case "demo":
		return runDemo(ctx, args, stdout, stderr)
	case "devidp":
		return devIdPCmd(ctx, args, stdout, stderr)
	case "schema":
		b, err := config.JSONSchema()
		if err != nil {
			fmt.Fprintln(stderr, "gatehouse schema:", err)
			return 1
		}
		_, _ = stdout.Write(b)
		return 0
	case "sessions":
		return sessionsCmd(ctx, args, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "gatehouse", versionString())
		return 0
	case "help", "-h", "--help", "-help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "gatehouse: unknown command %q\n%s", cmd, usage)
	return 2
}

func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}

func configFlag(name string, args []string, stderr io.Writer, extra ...func(*flag.FlagSet)) (string, bool) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", os.Getenv("GATEHOUSE_CONFIG"), "configuration file (default $GATEHOUSE_CONFIG)")
	for _, e := range extra {
		e(fs)
	}
	if err := fs.Parse(args); err != nil {
		return "", false
	}
	if *path == "" {
		fmt.Fprintf(stderr, "gatehouse %s: no configuration; pass -config FILE (see testdata/gatehouse.example.yaml)\n", name)
		return "", false
	}
	return *path, true
}

func check(args []string, stdout, stderr io.Writer) int {
	var print bool
	path, ok := configFlag("check", args, stderr, func(fs *flag.FlagSet) {
		fs.BoolVar(&print, "print", false, "print the effective configuration, secrets redacted")
	})
	if !ok {
		return 2
	}
	cfg, err := config.Load(path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintln(stdout, "warning:", w)
	}
	for _, n := range cfg.Notes() {
		fmt.Fprintln(stdout, "note:", n)
	}
	if print {
		b, err := cfg.Print()
		if err != nil {
			fmt.Fprintln(stderr, "gatehouse check:", err)
			return 1
		}
		_, _ = stdout.Write(b)
	}
	fmt.Fprintf(stdout, "%s: ok\n", path)
	fmt.Fprintf(stdout, "register at your identity provider:\n  redirect URI:             %s\n  post-logout redirect URI: %s\n", cfg.CallbackURL(), cfg.OIDC.PostLogoutRedirectURL)
	return 0
}

func serve(ctx context.Context, args []string, stderr io.Writer) int {
	path, ok := configFlag("serve", args, stderr)
	if !ok {
		return 2
	}
	err := gserve.Run(ctx, gserve.Options{ConfigPath: path, LogOutput: stderr, Version: versionString()})
	var ce *config.Error
	switch {
	case errors.As(err, &ce):
		fmt.Fprintln(stderr, err) // names the file and every problem
		return 1
	case err != nil:
		fmt.Fprintln(stderr, "gatehouse:", err)
		return 1
	}
	return 0
}

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var opts demo.Options
	fs.StringVar(&opts.Listen, "listen", "127.0.0.1:4180", "gatehouse address (loopback only)")
	fs.StringVar(&opts.IdPListen, "idp-listen", "127.0.0.1:4181", "development provider address (loopback only)")
	fs.StringVar(&opts.AppListen, "app-listen", "127.0.0.1:4182", "demo app address (loopback only)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	opts.Logger = gserve.NewLogger(stderr, config.Log{Level: "info", Format: "auto"})
	d, err := demo.Start(ctx, opts)
	if err != nil {
		fmt.Fprintln(stderr, "gatehouse demo:", err)
		return 1
	}
	d.PrintWelcome(stdout)
	<-ctx.Done()
	d.Close()
	return 0
}
