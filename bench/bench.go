package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"
)

// target is one kind of traffic measured in every round.
type target struct {
	name    string
	proxy   string // the process under test: bare, or a gatehouse's name
	accept  string
	cookies bool // rotate through the gatehouse session cookies
	want    int  // the status every answer should have
	// group, when set, names replicas (proxy first) that the load is
	// spread over; their CPU times add up.
	group []string
}

// targetPath is the request target of every phase.
const targetPath = "/app/page?x=1"

// targets in the order each round runs them.
var targets = []target{
	{name: "bare", proxy: "bare", accept: "text/html", want: http.StatusOK},
	{name: "gatehouse", proxy: "gatehouse", accept: "text/html", cookies: true, want: http.StatusOK},
	{name: "gatehouse-302", proxy: "gatehouse", accept: "text/html", want: http.StatusFound},
	{name: "gatehouse-401", proxy: "gatehouse", accept: "application/json", want: http.StatusUnauthorized},
}

// redisTargets are added by -compare-redis: authenticated requests
// through two more gatehouse processes that keep their sessions in Redis,
// one with its local cache and one reading Redis for every request.
var redisTargets = []target{
	{name: "redis-cached", proxy: "redis-cached", accept: "text/html", cookies: true, want: http.StatusOK},
	{name: "redis-uncached", proxy: "redis-uncached", accept: "text/html", cookies: true, want: http.StatusOK},
}

// topoTargets are the targets of -redis-mode: authenticated requests
// through one gatehouse on a single Redis, and through three on the
// Sentinel or Cluster topology, the connections spread over them. Both
// use the local cache (-local-cache).
func topoTargets(mode string) []target {
	reps := topoReplicas(mode)
	return []target{
		{name: "redis-single", proxy: "redis-single", accept: "text/html", cookies: true, want: http.StatusOK},
		{name: "redis-" + mode + "-x3", proxy: reps[0], group: reps, accept: "text/html", cookies: true, want: http.StatusOK},
	}
}

// topoReplicas names the three gatehouses of -redis-mode.
func topoReplicas(mode string) []string {
	return []string{"redis-" + mode + "-a", "redis-" + mode + "-b", "redis-" + mode + "-c"}
}

// runTargets are the targets of a run.
func runTargets(o *options) []target {
	if o.redisMode != "" {
		return append(slices.Clip(targets[:2]), topoTargets(o.redisMode)...)
	}
	if o.compareRedis {
		return append(slices.Clip(targets), redisTargets...)
	}
	return targets
}

// maxWrongPerMille is the share of wrong or missing answers (0.1%) above
// which a phase FAILED.
const maxWrongPerMille = 1

// proxyProc is one proxy under test: bare, or a gatehouse.
type proxyProc struct {
	name    string
	c       *child
	addr    string
	cookies []string // a gatehouse's session cookies
}

// fleet is the children of a run: the upstream, then the proxies in front
// of it (bare first, then gatehouse, then any others).
type fleet struct {
	upstream *child
	proxies  []*proxyProc
	procs    []procReport // one per proxy, in the same order
	redis    *redisTopo   // -redis-mode's servers, or nil
}

// proxy returns the proxy of that name.
func (f *fleet) proxy(name string) *proxyProc {
	for _, p := range f.proxies {
		if p.name == name {
			return p
		}
	}
	return nil
}

// startFleet starts the upstream, then the proxies in front of it.
func startFleet(o *options, stderr io.Writer) (*fleet, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find own executable: %w", err)
	}
	f := &fleet{}
	// Children write their stderr lines from copying goroutines of their
	// own: one at a time.
	stderr = &lockedWriter{w: stderr}
	var up hello
	if f.upstream, err = startChild(exe, "upstream", nil, stderr, &up); err != nil {
		return nil, err
	}
	upURL := "http://" + up.Addr
	start := func(name, role string, args, env []string) error {
		var h hello
		c, err := startChild(exe, role, append([]string{"-upstream", upURL}, args...), stderr, &h, env...)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		f.proxies = append(f.proxies, &proxyProc{name: name, c: c, addr: h.Addr, cookies: h.Cookies})
		f.procs = append(f.procs, procReport{Name: name, PID: c.pid(), RSSBeforeKB: rssKB(c.pid()), GoroutinesBefore: h.Goroutines})
		if role == "gatehouse" && len(h.Cookies) != o.sessions && !slices.Contains(args, "-no-sessions") {
			return fmt.Errorf("%s sent %d cookies, want %d", name, len(h.Cookies), o.sessions)
		}
		return nil
	}
	var env []string
	if o.gatehouseGOGC != "" {
		env = append(env, "GOGC="+o.gatehouseGOGC)
	}
	gate := func(store string, localCache int) []string {
		return []string{"-sessions", fmt.Sprint(o.sessions), "-store", store,
			"-redis-url", o.redisURL, "-local-cache", fmt.Sprint(localCache)}
	}
	main := gate(o.store, o.localCache)
	if o.cpuProfile != "" {
		main = append(main, "-cpuprofile", o.cpuProfile)
	}
	err = start("bare", "bare", []string{fmt.Sprintf("-bare-buffer-pool=%t", o.barePool)}, nil)
	if err == nil {
		err = start("gatehouse", "gatehouse", main, env)
	}
	if err == nil && o.compareRedis {
		err = start("redis-cached", "gatehouse", gate("redis", max(o.localCache, o.sessions)), env)
		if err == nil {
			err = start("redis-uncached", "gatehouse", gate("redis", 0), env)
		}
	}
	if err == nil && o.redisMode != "" {
		err = f.startTopo(o, start, gate, env)
	}
	if err != nil {
		f.stop()
		return nil, err
	}
	return f, nil
}

// startTopo starts -redis-mode's Redis servers, one gatehouse on the
// single Redis and three sharing a cookie secret on the topology (the
// first makes the sessions, the others serve them).
func (f *fleet) startTopo(o *options, start func(name, role string, args, env []string) error, gate func(string, int) []string, env []string) error {
	var err error
	if f.redis, err = startRedisTopo(o.redisMode); err != nil {
		return err
	}
	cache := o.localCache // 0: every request reads Redis
	if cache > 0 {
		cache = max(cache, o.sessions)
	}
	single := gate("redis", cache)
	single = append(single, "-redis-url", "redis://"+f.redis.single+"/0")
	if err := start("redis-single", "gatehouse", single, env); err != nil {
		return err
	}
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	topo := append(gate("redis", cache), "-secret", hex.EncodeToString(secret),
		"-redis-master", f.redis.master, "-redis-addrs", strings.Join(f.redis.addrs, ","))
	for i, name := range topoReplicas(o.redisMode) {
		args := topo
		if i > 0 {
			args = append(slices.Clip(topo), "-no-sessions")
		}
		if err := start(name, "gatehouse", args, env); err != nil {
			return err
		}
	}
	return nil
}

// stop ends every child that was started, recording the proxies' RSS and
// goroutines on the way out. It may be called more than once.
func (f *fleet) stop() error {
	var firstErr error
	for i, p := range f.proxies {
		f.procs[i].RSSAfterKB = rssKB(p.c.pid())
		g, err := p.c.stop()
		f.procs[i].GoroutinesAfter = g.Goroutines
		f.procs[i].CanceledLogLines = p.c.log.dropped
		if err != nil && firstErr == nil {
			firstErr = err
		}
	}
	if f.upstream != nil {
		if _, err := f.upstream.stop(); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	f.upstream, f.proxies = nil, nil
	if f.redis != nil {
		f.redis.stop()
		f.redis = nil
	}
	return firstErr
}

// runBench starts the children, runs every phase and prints the tables.
func runBench(ctx context.Context, o *options, ld loader, stdout, stderr io.Writer) (*report, error) {
	hz, hzSource := clockTicks()
	if g, ok := ld.(goLoader); ok {
		g.hz = hz
		ld = g
	}
	rep := &report{Machine: machineInfo(o, ld, hz, hzSource)}
	targets := runTargets(o)
	phases := o.rounds * len(targets)
	fmt.Fprintf(stdout, "expected duration: %s (%d rounds × %d targets × (%s warm-up + %s)), plus start-up\n",
		time.Duration(phases)*(o.warmup+o.duration), o.rounds, len(targets), o.warmup, o.duration)
	printMachine(stdout, rep.Machine)

	f, err := startFleet(o, stderr)
	if err != nil {
		return nil, err
	}
	defer f.stop()
	fmt.Fprint(stdout, "upstream")
	for _, p := range f.proxies {
		fmt.Fprintf(stdout, ", %s (%s)", p.name, p.addr)
	}
	fmt.Fprintf(stdout, " started; %d sessions\n\n", o.sessions)

	printPhaseHeader(stdout)
	for round := 1; round <= o.rounds; round++ {
		for _, t := range targets {
			p, err := runPhase(ctx, o, ld, f, t, hz)
			if err != nil {
				return nil, fmt.Errorf("round %d, %s: %w", round, t.name, err)
			}
			p.Round = round
			printPhase(stdout, p)
			rep.Phases = append(rep.Phases, p)
			rep.Failed = rep.Failed || p.Failed
		}
	}
	if err := f.stop(); err != nil {
		fmt.Fprintln(stderr, "bench: stopping children:", err)
	}
	rep.Processes = f.procs
	rep.Summary = summarize(targets, rep.Phases)
	fmt.Fprintln(stdout)
	printSummary(stdout, o.rounds, rep.Summary)
	fmt.Fprintln(stdout)
	printProcesses(stdout, rep.Processes)
	return rep, nil
}

// runPhase warms up, then measures one target: the load, and the CPU time
// the proxy under test and the upstream spent meanwhile.
func runPhase(ctx context.Context, o *options, ld loader, f *fleet, t target, hz float64) (phaseResult, error) {
	pp := f.proxy(t.proxy)
	if pp == nil {
		return phaseResult{}, fmt.Errorf("no proxy %q in this run", t.proxy)
	}
	procs := []*child{pp.c}
	spec := loadSpec{addr: pp.addr, path: targetPath, accept: t.accept, want: t.want, conns: o.conns}
	if t.cookies {
		spec.cookies = pp.cookies
	}
	for _, name := range t.group {
		r := f.proxy(name)
		if r == nil {
			return phaseResult{}, fmt.Errorf("no proxy %q in this run", name)
		}
		spec.addrs = append(spec.addrs, r.addr)
		if r != pp {
			procs = append(procs, r.c)
		}
	}
	if o.warmup > 0 {
		warm := spec
		warm.duration = o.warmup
		if _, err := ld.run(ctx, warm); err != nil {
			return phaseResult{}, fmt.Errorf("warm-up: %w", err)
		}
	}
	spec.duration = o.duration
	p0, err := groupTicks(procs)
	if err != nil {
		return phaseResult{}, err
	}
	u0, err := cpuTicks(f.upstream.pid())
	if err != nil {
		return phaseResult{}, err
	}
	res, err := ld.run(ctx, spec)
	if err != nil {
		return phaseResult{}, err
	}
	p1, err := groupTicks(procs)
	if err != nil {
		return phaseResult{}, err
	}
	u1, err := cpuTicks(f.upstream.pid())
	if err != nil {
		return phaseResult{}, err
	}
	return newPhaseResult(t, res, float64(p1-p0)/hz, float64(u1-u0)/hz), nil
}

// groupTicks returns the CPU ticks of the processes together.
func groupTicks(procs []*child) (uint64, error) {
	var sum uint64
	for _, c := range procs {
		n, err := cpuTicks(c.pid())
		if err != nil {
			return 0, err
		}
		sum += n
	}
	return sum, nil
}

// newPhaseResult derives the per-request figures and the verdict. CPU
// times are in seconds.
func newPhaseResult(t target, res loadResult, proxyCPU, upstreamCPU float64) phaseResult {
	p := phaseResult{
		Target: t.name, Want: t.want,
		Requests: res.Requests, Wrong: res.Wrong, Errors: res.Errors, Statuses: res.Statuses,
		ElapsedS: res.Elapsed.Seconds(), ReqPerSec: res.ReqPerSec,
		P50us: micros(res.P50), P99us: micros(res.P99),
		ProxyCPUs: proxyCPU, UpstreamCPUs: upstreamCPU, LoaderCPUs: res.LoaderCPU.Seconds(),
	}
	if n := float64(res.Requests); n > 0 {
		p.ProxyCPUus = proxyCPU / n * 1e6
		p.UpstreamCPUus = upstreamCPU / n * 1e6
		p.LoaderCPUus = res.LoaderCPU.Seconds() / n * 1e6
	}
	if p.ElapsedS > 0 {
		p.ProxyCPUPct = proxyCPU / p.ElapsedS * 100
	}
	total, bad := res.Requests+res.Errors, res.Wrong+res.Errors
	switch {
	case res.Requests == 0:
		p.Failed, p.Reason = true, "no answers"
	case bad*1000 > total*maxWrongPerMille:
		p.Failed = true
		p.Reason = fmt.Sprintf("%d of %d answers wrong or missing (%.2f%%, limit 0.1%%)", bad, total, float64(bad)/float64(total)*100)
	}
	if p.Failed && len(res.Statuses) > 0 {
		p.Reason += "; statuses " + formatStatuses(res.Statuses)
	}
	return p
}

func micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
