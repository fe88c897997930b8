// Command gatehouse is an authenticating reverse proxy: it signs people in
// with OpenID Connect, keeps their sessions on the server and tells the
// app behind it who they are in request headers.
//
//	gatehouse -config gatehouse.yaml        run the proxy (also: gatehouse serve -config ...)
//	gatehouse check -config gatehouse.yaml  validate a configuration
//	gatehouse demo                          everything on this machine, for a first look
//	gatehouse version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/gatehouse/gatehouse/config"
	"github.com/gatehouse/gatehouse/internal/demo"
	"github.com/gatehouse/gatehouse/proxy"
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
  gatehouse [serve] -config FILE   run the proxy
  gatehouse check -config FILE     validate FILE; print every problem and exit 1, or exit 0
  gatehouse demo                   run a development provider, a demo app and gatehouse on 127.0.0.1
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

func configFlag(name string, args []string, stderr io.Writer) (string, bool) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", os.Getenv("GATEHOUSE_CONFIG"), "configuration file (default $GATEHOUSE_CONFIG)")
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
	path, ok := configFlag("check", args, stderr)
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
	fmt.Fprintf(stdout, "%s: ok\n", path)
	fmt.Fprintf(stdout, "register at your identity provider:\n  redirect URI:             %s\n  post-logout redirect URI: %s\n", cfg.CallbackURL(), cfg.OIDC.PostLogoutRedirectURL)
	return 0
}

// newLogger logs JSON, or text when stderr is a terminal.
func newLogger(w io.Writer) *slog.Logger {
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			return slog.New(slog.NewTextHandler(w, nil))
		}
	}
	return slog.New(slog.NewJSONHandler(w, nil))
}

func serve(ctx context.Context, args []string, stderr io.Writer) int {
	path, ok := configFlag("serve", args, stderr)
	if !ok {
		return 2
	}
	log := newLogger(stderr)
	cfg, err := config.Load(path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	gw, err := proxy.New(cfg, proxy.Options{Logger: log})
	if err != nil {
		log.Error("start", "err", err)
		return 1
	}
	runCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go gw.Run(runCtx)
	srv := gw.Server()
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	log.Info("gatehouse listening", "addr", cfg.Listen, "external_url", cfg.ExternalURL, "upstream", cfg.UpstreamURL.Redacted(), "version", versionString())
	select {
	case err := <-errc:
		log.Error("listen", "addr", cfg.Listen, "err", err)
		return 1
	case <-ctx.Done():
	}
	log.Info("shutting down", "timeout", cfg.Server.ShutdownTimeout)
	sctx, scancel := context.WithTimeout(context.Background(), cfg.Server.ShutdownTimeout)
	defer scancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("shutdown incomplete", "err", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("serve", "err", err)
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
	opts.Logger = newLogger(stderr)
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
