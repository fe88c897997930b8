package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

// target is one kind of traffic measured in every round.
type target struct {
	name    string
	proxy   string // the process under test: bare or gatehouse
	accept  string
	cookies bool // rotate through the gatehouse session cookies
	want    int  // the status every answer should have
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

// maxWrongPerMille is the share of wrong or missing answers (0.1%) above
// which a phase FAILED.
const maxWrongPerMille = 1

// fleet is the three children of a run.
type fleet struct {
	upstream, bare, gate *child
	bareAddr, gateAddr   string
	cookies              []string
	procs                []procReport // bare, then gatehouse
}

// startFleet starts the upstream, then the two proxies in front of it.
func startFleet(o *options, stderr io.Writer) (*fleet, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find own executable: %w", err)
	}
	f := &fleet{}
	var up, bare, gate hello
	if f.upstream, err = startChild(exe, "upstream", nil, stderr, &up); err != nil {
		return nil, err
	}
	upURL := "http://" + up.Addr
	if f.bare, err = startChild(exe, "bare", []string{"-upstream", upURL, fmt.Sprintf("-bare-buffer-pool=%t", o.barePool)}, stderr, &bare); err != nil {
		f.stop()
		return nil, err
	}
	args := []string{"-upstream", upURL, "-sessions", fmt.Sprint(o.sessions), "-store", o.store,
		"-redis-url", o.redisURL, "-local-cache", fmt.Sprint(o.localCache)}
	if o.cpuProfile != "" {
		args = append(args, "-cpuprofile", o.cpuProfile)
	}
	var env []string
	if o.gatehouseGOGC != "" {
		env = append(env, "GOGC="+o.gatehouseGOGC)
	}
	if f.gate, err = startChild(exe, "gatehouse", args, stderr, &gate, env...); err != nil {
		f.stop()
		return nil, err
	}
	if len(gate.Cookies) != o.sessions {
		f.stop()
		return nil, fmt.Errorf("gatehouse sent %d cookies, want %d", len(gate.Cookies), o.sessions)
	}
	f.bareAddr, f.gateAddr, f.cookies = bare.Addr, gate.Addr, gate.Cookies
	f.procs = []procReport{
		{Name: "bare", PID: f.bare.pid(), RSSBeforeKB: rssKB(f.bare.pid()), GoroutinesBefore: bare.Goroutines},
		{Name: "gatehouse", PID: f.gate.pid(), RSSBeforeKB: rssKB(f.gate.pid()), GoroutinesBefore: gate.Goroutines},
	}
	return f, nil
}

// stop ends every child that was started, recording the proxies' RSS and
// goroutines on the way out. It may be called more than once.
func (f *fleet) stop() error {
	var firstErr error
	for i, c := range []*child{f.bare, f.gate} {
		if c == nil {
			continue
		}
		if i < len(f.procs) {
			f.procs[i].RSSAfterKB = rssKB(c.pid())
		}
		g, err := c.stop()
		if i < len(f.procs) {
			f.procs[i].GoroutinesAfter = g.Goroutines
			f.procs[i].CanceledLogLines = c.log.dropped
		}
		if err != nil && firstErr == nil {
			firstErr = err
		}
	}
	if f.upstream != nil {
		if _, err := f.upstream.stop(); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	f.upstream, f.bare, f.gate = nil, nil, nil
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
	phases := o.rounds * len(targets)
	fmt.Fprintf(stdout, "expected duration: %s (%d rounds × %d targets × (%s warm-up + %s)), plus start-up\n",
		time.Duration(phases)*(o.warmup+o.duration), o.rounds, len(targets), o.warmup, o.duration)
	printMachine(stdout, rep.Machine)

	f, err := startFleet(o, stderr)
	if err != nil {
		return nil, err
	}
	defer f.stop()
	fmt.Fprintf(stdout, "upstream, bare (%s) and gatehouse (%s) started; %d sessions\n\n", f.bareAddr, f.gateAddr, len(f.cookies))

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
	rep.Summary = summarize(rep.Phases)
	fmt.Fprintln(stdout)
	printSummary(stdout, o.rounds, rep.Summary)
	fmt.Fprintln(stdout)
	printProcesses(stdout, rep.Processes)
	return rep, nil
}

// runPhase warms up, then measures one target: the load, and the CPU time
// the proxy under test and the upstream spent meanwhile.
func runPhase(ctx context.Context, o *options, ld loader, f *fleet, t target, hz float64) (phaseResult, error) {
	spec := loadSpec{addr: f.bareAddr, path: targetPath, accept: t.accept, want: t.want, conns: o.conns}
	proxy := f.bare
	if t.proxy == "gatehouse" {
		spec.addr, proxy = f.gateAddr, f.gate
	}
	if t.cookies {
		spec.cookies = f.cookies
	}
	if o.warmup > 0 {
		warm := spec
		warm.duration = o.warmup
		if _, err := ld.run(ctx, warm); err != nil {
			return phaseResult{}, fmt.Errorf("warm-up: %w", err)
		}
	}
	spec.duration = o.duration
	p0, err := cpuTicks(proxy.pid())
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
	p1, err := cpuTicks(proxy.pid())
	if err != nil {
		return phaseResult{}, err
	}
	u1, err := cpuTicks(f.upstream.pid())
	if err != nil {
		return phaseResult{}, err
	}
	return newPhaseResult(t, res, float64(p1-p0)/hz, float64(u1-u0)/hz), nil
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
