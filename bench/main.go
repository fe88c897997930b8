// Command bench measures gatehouse against a bare httputil.ReverseProxy
// in front of the same upstream, on this machine, in one run, and prints
// the ratios between them.
//
//	go run ./bench                                  wrk if installed, else the Go loader
//	go run ./bench -duration 5s -rounds 1 -loader go
//	go run ./bench -store redis -local-cache 0      every request reads Redis
//	go run ./bench -compare-redis                   memory and Redis stores in one run
//	go run ./bench -redis-mode cluster              3 gatehouses on a Redis Cluster vs 1 on a single Redis
//	go run ./bench -bare-buffer-pool                the baseline pools its buffers too
//	go run ./bench -cpuprofile cpu.pprof            then: go tool pprof -top cpu.pprof
//
// One binary plays every part. The parent re-executes itself with the
// hidden -role flag to start three children: the upstream, the bare proxy
// and gatehouse, each in its own process, so that the CPU time of each
// can be read from /proc/<pid>/stat. Children listen on 127.0.0.1:0, print
// one JSON line with their address, and exit when their stdin closes, so
// they never outlive the parent. The parent then alternates the targets
// (bare, gatehouse, gatehouse-302, gatehouse-401) for a number of rounds
// and reports the median of each.
//
// Only loopback is used. Every phase is bounded in time; the flags are
// bounded so that a run cannot last more than about 87 minutes
// (10 rounds × 4 targets × (10s warm-up + 2m)).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Bounds on the flags.
const (
	maxDuration = 120 * time.Second
	maxWarmup   = 10 * time.Second
	maxRounds   = 10
	maxConns    = 256
	maxSessions = 100000
)

// options are the command line.
type options struct {
	compareRedis  bool          // add gatehouses with the Redis store
	barePool      bool          // give the bare proxy a BufferPool too
	duration      time.Duration // measured time per phase
	warmup        time.Duration // uncounted load before each phase
	rounds        int
	conns         int
	threads       int // wrk threads
	sessions      int
	loader        string // auto, wrk or go
	gatehouseGOGC string // GOGC for the gatehouse child only
	cpuProfile    string
	store         string
	redisURL      string
	localCache    int
	jsonPath      string
	redisMode     string // "", sentinel or cluster: the bench starts that Redis and three gatehouses on it

	// Hidden, for the gatehouse children of -redis-mode: a shared cookie
	// secret (hex), and the Redis to use.
	secret      string
	noSessions  bool
	redisMaster string
	redisAddrs  string

	// Hidden, for the children.
	role     string
	upstream string
}

// hidden flags are left out of -help: only the parent passes them.
var hidden = map[string]bool{"role": true, "upstream": true, "secret": true, "no-sessions": true,
	"redis-master": true, "redis-addrs": true}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "measured load per phase (at most 2m; whole seconds with wrk)")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "uncounted load before each phase (0 for none)")
	fs.IntVar(&o.rounds, "rounds", 3, "rounds over all targets (at most 10)")
	fs.IntVar(&o.conns, "connections", 32, "concurrent keep-alive connections (at most 256)")
	fs.IntVar(&o.threads, "threads", 2, "wrk threads")
	fs.IntVar(&o.sessions, "sessions", 1000, "gatehouse sessions the requests rotate through (1 = one hot session)")
	fs.StringVar(&o.loader, "loader", "auto", "load generator: auto (wrk when on PATH), wrk or go")
	fs.StringVar(&o.gatehouseGOGC, "gatehouse-gogc", "", "GOGC for the gatehouse process only (default: gatehouse's own default)")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the gatehouse process, over the whole run, to this file")
	fs.StringVar(&o.store, "store", "memory", "gatehouse's session store: memory or redis")
	fs.StringVar(&o.redisURL, "redis-url", "redis://127.0.0.1:6379/0", "Redis for -store redis (loopback only)")
	fs.IntVar(&o.localCache, "local-cache", 10000, "with -store redis: sessions in gatehouse's local cache (0: every request reads Redis)")
	fs.BoolVar(&o.barePool, "bare-buffer-pool", false, "give the bare proxy a 32 KiB BufferPool, as gatehouse has (default: httputil's allocate-per-request)")
	fs.BoolVar(&o.compareRedis, "compare-redis", false, "also measure two gatehouses with the Redis store (-redis-url): with its local cache, and reading Redis every request")
	fs.StringVar(&o.jsonPath, "json", "", "also write the results as JSON to this file")
	fs.StringVar(&o.redisMode, "redis-mode", "", "sentinel or cluster: start a single redis-server and that topology on loopback (redis-server and redis-cli needed), and compare one gatehouse on the single Redis with three on the topology, the load spread over them (Go loader)")
	fs.StringVar(&o.secret, "secret", "", "cookie secret (hex) shared by gatehouse replicas")
	fs.BoolVar(&o.noSessions, "no-sessions", false, "a replica: create no sessions, serve those another made")
	fs.StringVar(&o.redisMaster, "redis-master", "", "Sentinel's name for the master")
	fs.StringVar(&o.redisAddrs, "redis-addrs", "", "Sentinels or cluster nodes, comma-separated")
	fs.StringVar(&o.role, "role", "", "child role: upstream, bare or gatehouse")
	fs.StringVar(&o.upstream, "upstream", "", "upstream URL of a proxy child")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: go run ./bench [flags]")
		fs.VisitAll(func(f *flag.Flag) {
			if !hidden[f.Name] {
				fmt.Fprintf(stderr, "  -%s %s (default %q)\n", f.Name, f.Usage, f.DefValue)
			}
		})
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	return o, nil
}

// check refuses flags outside the bounds, naming each problem.
func (o *options) check() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if o.duration < 100*time.Millisecond || o.duration > maxDuration {
		bad("-duration: must be between 100ms and %s (got %s)", maxDuration, o.duration)
	}
	if o.warmup < 0 || o.warmup > maxWarmup {
		bad("-warmup: must be between 0 and %s (got %s)", maxWarmup, o.warmup)
	}
	if o.rounds < 1 || o.rounds > maxRounds {
		bad("-rounds: must be between 1 and %d (got %d)", maxRounds, o.rounds)
	}
	if o.conns < 1 || o.conns > maxConns {
		bad("-connections: must be between 1 and %d (got %d)", maxConns, o.conns)
	}
	if o.threads < 1 || o.threads > o.conns {
		bad("-threads: must be between 1 and -connections (got %d)", o.threads)
	}
	if o.store != "memory" && o.store != "redis" {
		bad("-store: memory or redis (got %q)", o.store)
	}
	if u, err := url.Parse(o.redisURL); err != nil || !strings.HasPrefix(u.Hostname(), "127.") && u.Hostname() != "localhost" && u.Hostname() != "::1" {
		bad("-redis-url: a loopback Redis only (got %q)", o.redisURL)
	}
	switch o.redisMode {
	case "", "sentinel", "cluster":
	default:
		bad("-redis-mode: sentinel or cluster (got %q)", o.redisMode)
	}
	if o.redisMode != "" && o.loader == "wrk" {
		bad("-redis-mode: the load is spread over three gatehouses, which wrk cannot do; use -loader go (or auto)")
	}
	if o.redisMode != "" && o.compareRedis {
		bad("-redis-mode and -compare-redis: choose one")
	}
	if o.sessions < 1 || o.sessions > maxSessions {
		bad("-sessions: must be between 1 and %d (got %d)", maxSessions, o.sessions)
	}
	switch o.loader {
	case "auto", "go", "wrk":
	default:
		bad("-loader: must be auto, wrk or go (got %q)", o.loader)
	}
	return errors.Join(errs...)
}

// pickLoader resolves -loader: auto means wrk when it is on PATH and the
// durations are whole seconds (wrk's -d takes seconds), else the Go loader.
func (o *options) pickLoader() (loader, error) {
	whole := o.duration%time.Second == 0 && o.warmup%time.Second == 0
	path, lookErr := exec.LookPath("wrk")
	switch {
	case o.loader == "go" || o.redisMode != "":
		return goLoader{}, nil
	case o.loader == "wrk" && lookErr != nil:
		return nil, fmt.Errorf("-loader wrk: wrk is not on PATH (install the wrk package, or use -loader go)")
	case o.loader == "wrk" && !whole:
		return nil, fmt.Errorf("-loader wrk: -duration and -warmup must be whole seconds (got %s and %s)", o.duration, o.warmup)
	case lookErr == nil && whole:
		return &wrkLoader{path: path, threads: o.threads}, nil
	}
	return goLoader{}, nil
}

// run is the whole program but for the process: it returns the exit code.
// 0: every phase passed; 1: a phase FAILED or the run broke; 2: bad flags.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "bench:", err)
		return 2
	}
	if o.role != "" {
		return runChild(ctx, o, stdin, stdout, stderr)
	}
	if err := o.check(); err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 2
	}
	ld, err := o.pickLoader()
	if err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 2
	}
	rep, err := runBench(ctx, o, ld, stdout, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 1
	}
	if o.jsonPath != "" {
		if err := writeJSON(o.jsonPath, rep); err != nil {
			fmt.Fprintln(stderr, "bench:", err)
			return 1
		}
	}
	if rep.Failed {
		fmt.Fprintln(stderr, "bench: at least one phase FAILED")
		return 1
	}
	return 0
}
