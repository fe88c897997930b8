// Command gatehouse is an authenticating reverse proxy: it signs people in
// with OpenID Connect, keeps their sessions on the server and tells the
// app behind it who they are in request headers.
//
//	gatehouse -config gatehouse.yaml        run the proxy (also: gatehouse serve -config ...)
//	gatehouse check gatehouse.yaml          validate a configuration and prove it against the identity provider
//	gatehouse demo                          everything on this machine, for a first look
//	gatehouse devidp                        the demo's development provider, on its own
//	gatehouse version                       (also: --version)
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
	"slices"
	"strings"
	"syscall"

	"github.com/gatehouse/gatehouse/config"
	"github.com/gatehouse/gatehouse/internal/demo"
	"github.com/gatehouse/gatehouse/internal/preflight"
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
  gatehouse check [-config] FILE   validate FILE and prove it against the identity provider
                                   (discovery, client credentials, scopes); print every
                                   problem and exit 1, or exit 0 (warnings allowed)
                  [-offline]       validate the file only; do not contact the provider
                  [-print]         and print the effective configuration, secrets redacted
  gatehouse demo [-tls]            run a development provider, a demo app and gatehouse on 127.0.0.1
                                   (-tls: gatehouse on https, with a throwaway CA's certificate)
  gatehouse devidp [-user NAME:GROUPS] [-users FILE] [-client-id ID] [-client-secret S] [-redirect-uri URI] [-listen ADDR]
                                   run the development provider alone on 127.0.0.1:4181 (loopback only)
  gatehouse schema                 print the configuration's JSON Schema (for editors)
  gatehouse sessions list -sub SUB        list a user's sessions   } through the admin listener:
  gatehouse sessions revoke -handle H     revoke one session       } -admin URL (default
  gatehouse sessions revoke -sub SUB      revoke all of a user's   } http://127.0.0.1:9090), -token-file F
  gatehouse version                print the version (also: --version)
`

// run is the whole program but for the process: it returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 && (!strings.HasPrefix(args[0], "-") || slices.Contains(ownFlags, args[0])) {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return serve(ctx, args, stderr)
	case "check":
		return check(ctx, args, stdout, stderr)
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
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, "gatehouse", versionString())
		return 0
	case "help", "-h", "--help", "-help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "gatehouse: unknown command %q\n%s", cmd, usage)
	return 2
}

// ownFlags are the flags that are commands of their own rather than
// flags of serve.
var ownFlags = []string{"-h", "--help", "-help", "-version", "--version"}

func versionString() string {
	if version != "" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	return buildVersion(bi)
}

// buildVersion is the module version ("devel" for a build from a
// checkout), then the VCS revision the binary was built from, marked
// -dirty when the tree had changes, and its commit time:
// "v1.2.3 (0123456789ab, 2026-01-02T03:04:05Z)".
func buildVersion(bi *debug.BuildInfo) string {
	v := bi.Main.Version
	if v == "" || v == "(devel)" {
		v = "devel"
	}
	var rev, at string
	dirty := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			at = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return v
	}
	rev = rev[:min(len(rev), 12)]
	if dirty {
		rev += "-dirty"
	}
	if at == "" {
		return fmt.Sprintf("%s (%s)", v, rev)
	}
	return fmt.Sprintf("%s (%s, %s)", v, rev, at)
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
	// The file may also be given as an argument, before or after flags:
	// gatehouse check -offline FILE, gatehouse check FILE -print.
	file := ""
	for fs.NArg() > 0 { // each round consumes an argument
		if file != "" {
			fmt.Fprintf(stderr, "gatehouse %s: one configuration file, got %q and %q\n", name, file, fs.Arg(0))
			return "", false
		}
		file = fs.Arg(0)
		if err := fs.Parse(fs.Args()[1:]); err != nil {
			return "", false
		}
	}
	if file != "" {
		explicit := false
		fs.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "config" })
		if explicit {
			fmt.Fprintf(stderr, "gatehouse %s: give the configuration file once, with -config or as an argument, not both (got %q and %q)\n", name, *path, file)
			return "", false
		}
		*path = file
	}
	if *path == "" {
		fmt.Fprintf(stderr, "gatehouse %s: no configuration; give the file: gatehouse %s FILE, -config FILE or $GATEHOUSE_CONFIG (gatehouse schema describes every key)\n", name, name)
		return "", false
	}
	return *path, true
}

func check(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var print, offline bool
	path, ok := configFlag("check", args, stderr, func(fs *flag.FlagSet) {
		fs.BoolVar(&print, "print", false, "print the effective configuration, secrets redacted")
		fs.BoolVar(&offline, "offline", false, "validate the file only; do not contact the identity provider")
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
	var problems []preflight.Finding
	if !offline {
		for _, f := range preflight.Check(ctx, cfg, preflight.Options{}) {
			switch f.Severity {
			case preflight.Info:
				fmt.Fprintln(stdout, "identity provider:", f)
			case preflight.Warning:
				fmt.Fprintln(stdout, "warning:", f)
			default:
				problems = append(problems, f)
			}
		}
	}
	if len(problems) == 0 {
		fmt.Fprintf(stdout, "%s: ok\n", path)
	}
	fmt.Fprintf(stdout, "register at your identity provider:\n  redirect URI:             %s\n  post-logout redirect URI: %s\n", cfg.CallbackURL(), cfg.OIDC.PostLogoutRedirectURL)
	if len(problems) > 0 {
		fmt.Fprintf(stderr, "%s: %d identity provider problem(s):\n", path, len(problems))
		for _, p := range problems {
			fmt.Fprintln(stderr, " ", p)
		}
		return 1
	}
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
	fs.BoolVar(&opts.TLS, "tls", false, "serve gatehouse over HTTPS with a certificate from a throwaway local CA")
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
