package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"
)

// report is a run's results, as written by -json.
type report struct {
	Machine   machine       `json:"machine"`
	Phases    []phaseResult `json:"phases"`
	Summary   []summaryRow  `json:"summary"`
	Processes []procReport  `json:"processes"`
	Failed    bool          `json:"failed"` // some phase FAILED
}

// machine describes where and how the run was made.
type machine struct {
	NProc       int     `json:"nproc"`
	CPUModel    string  `json:"cpu_model"`
	GoVersion   string  `json:"go_version"`
	Loader      string  `json:"loader"`
	Connections int     `json:"connections"`
	DurationS   float64 `json:"duration_s"`
	WarmupS     float64 `json:"warmup_s"`
	Rounds      int     `json:"rounds"`
	Sessions    int     `json:"sessions"`
	ClockTicks  float64 `json:"clock_ticks_per_s"`
	TicksSource string  `json:"clock_ticks_source"` // getconf or assumed
}

// phaseResult is one target measured once. CPU figures are of whole
// processes over the measured window.
type phaseResult struct {
	Round         int            `json:"round"`
	Target        string         `json:"target"`
	Want          int            `json:"want_status"`
	Requests      uint64         `json:"requests"`
	Wrong         uint64         `json:"wrong_status"`
	Errors        uint64         `json:"errors"`
	Statuses      map[int]uint64 `json:"statuses,omitempty"`
	ElapsedS      float64        `json:"elapsed_s"`
	ReqPerSec     float64        `json:"req_per_s"`
	P50us         float64        `json:"p50_us"`
	P99us         float64        `json:"p99_us"`
	ProxyCPUs     float64        `json:"proxy_cpu_s"`
	UpstreamCPUs  float64        `json:"upstream_cpu_s"`
	LoaderCPUs    float64        `json:"loader_cpu_s"`
	ProxyCPUus    float64        `json:"proxy_cpu_us_per_req"`
	UpstreamCPUus float64        `json:"upstream_cpu_us_per_req"`
	LoaderCPUus   float64        `json:"loader_cpu_us_per_req"`
	ProxyCPUPct   float64        `json:"proxy_cpu_pct"` // of one core
	Failed        bool           `json:"failed"`
	Reason        string         `json:"reason,omitempty"`
}

// summaryRow is the median over rounds of one target, and its ratios to
// the median of bare (zero when bare has no median).
type summaryRow struct {
	Target         string  `json:"target"`
	Rounds         int     `json:"rounds"`
	FailedRounds   int     `json:"failed_rounds"`
	ReqPerSec      float64 `json:"req_per_s"`
	P50us          float64 `json:"p50_us"`
	P99us          float64 `json:"p99_us"`
	ProxyCPUus     float64 `json:"proxy_cpu_us_per_req"`
	UpstreamCPUus  float64 `json:"upstream_cpu_us_per_req"`
	LoaderCPUus    float64 `json:"loader_cpu_us_per_req"`
	ReqPerSecRatio float64 `json:"req_per_s_ratio"`
	CPURatio       float64 `json:"cpu_per_req_ratio"`
	P99Ratio       float64 `json:"p99_ratio"`
}

// procReport is a proxy process before the first phase and after the
// last.
type procReport struct {
	Name             string `json:"name"`
	PID              int    `json:"pid"`
	RSSBeforeKB      int64  `json:"rss_before_kb"`
	RSSAfterKB       int64  `json:"rss_after_kb"`
	GoroutinesBefore int    `json:"goroutines_before"`
	GoroutinesAfter  int    `json:"goroutines_after"`
	// CanceledLogLines counts the "proxy error: context canceled" lines
	// the process logged (a loader closing connections with requests in
	// flight at the end of a phase); they are kept off the terminal.
	CanceledLogLines int `json:"canceled_log_lines"`
}

func machineInfo(o *options, ld loader, hz float64, hzSource string) machine {
	name := ld.name()
	if w, ok := ld.(*wrkLoader); ok {
		name = fmt.Sprintf("wrk -t%d (%s)", min(w.threads, o.conns), w.path)
	}
	return machine{
		NProc: runtime.NumCPU(), CPUModel: cpuModel(), GoVersion: runtime.Version(),
		Loader: name, Connections: o.conns, DurationS: o.duration.Seconds(), WarmupS: o.warmup.Seconds(),
		Rounds: o.rounds, Sessions: o.sessions, ClockTicks: hz, TicksSource: hzSource,
	}
}

// cpuModel is the first "model name" of /proc/cpuinfo.
func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	for line := range strings.Lines(string(b)) {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

func printMachine(w io.Writer, m machine) {
	fmt.Fprintf(w, "machine: nproc=%d cpu=%q go=%s loader=%s connections=%d duration=%gs warmup=%gs rounds=%d sessions=%d clk_tck=%g (%s)\n",
		m.NProc, m.CPUModel, m.GoVersion, m.Loader, m.Connections, m.DurationS, m.WarmupS, m.Rounds, m.Sessions, m.ClockTicks, m.TicksSource)
}

const phaseFormat = "%-5s  %-17s  %9s  %8s  %8s  %12s  %15s  %13s  %9s  %9s  %6s  %6s  %s\n"

func printPhaseHeader(w io.Writer) {
	fmt.Fprintf(w, phaseFormat, "round", "target", "req/s", "p50", "p99", "proxy µs/req", "upstream µs/req", "loader µs/req", "proxy cpu", "answers", "wrong", "errors", "result")
}

func printPhase(w io.Writer, p phaseResult) {
	result := "ok"
	if p.Failed {
		result = "FAILED: " + p.Reason
	}
	fmt.Fprintf(w, phaseFormat, fmt.Sprint(p.Round), p.Target, fmt.Sprintf("%.0f", p.ReqPerSec),
		fmtMicros(p.P50us), fmtMicros(p.P99us), fmt.Sprintf("%.1f", p.ProxyCPUus), fmt.Sprintf("%.1f", p.UpstreamCPUus),
		fmt.Sprintf("%.1f", p.LoaderCPUus), fmt.Sprintf("%.0f%%", p.ProxyCPUPct), fmt.Sprint(p.Requests),
		fmt.Sprint(p.Wrong), fmt.Sprint(p.Errors), result)
}

// fmtMicros prints a latency in microseconds the way time.Duration does,
// rounded to 10µs above a millisecond.
func fmtMicros(us float64) string {
	d := time.Duration(us * float64(time.Microsecond))
	if d >= time.Millisecond {
		return d.Round(10 * time.Microsecond).String()
	}
	return d.Round(time.Microsecond).String()
}

// summarize takes the median over rounds of every target, and the ratios
// of each to bare.
func summarize(targets []target, phases []phaseResult) []summaryRow {
	var rows []summaryRow
	for _, t := range targets {
		var rps, p50, p99, cpu, ups, ldr []float64
		row := summaryRow{Target: t.name}
		for _, p := range phases {
			if p.Target != t.name {
				continue
			}
			row.Rounds++
			if p.Failed {
				row.FailedRounds++
			}
			rps, p50, p99 = append(rps, p.ReqPerSec), append(p50, p.P50us), append(p99, p.P99us)
			cpu, ups, ldr = append(cpu, p.ProxyCPUus), append(ups, p.UpstreamCPUus), append(ldr, p.LoaderCPUus)
		}
		row.ReqPerSec, row.P50us, row.P99us = median(rps), median(p50), median(p99)
		row.ProxyCPUus, row.UpstreamCPUus, row.LoaderCPUus = median(cpu), median(ups), median(ldr)
		rows = append(rows, row)
	}
	bare := rows[0]
	for i := range rows {
		rows[i].ReqPerSecRatio = ratio(rows[i].ReqPerSec, bare.ReqPerSec)
		rows[i].CPURatio = ratio(rows[i].ProxyCPUus, bare.ProxyCPUus)
		rows[i].P99Ratio = ratio(rows[i].P99us, bare.P99us)
	}
	return rows
}

// median of xs, the mean of the middle two for an even count; 0 for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

const summaryFormat = "%-17s  %9s  %8s  %8s  %12s  %15s  %11s  %13s  %9s  %s\n"

func printSummary(w io.Writer, rounds int, rows []summaryRow) {
	fmt.Fprintf(w, "summary: median of %d round(s); ratios are target ÷ bare; CPU is the proxy process's\n", rounds)
	fmt.Fprintf(w, summaryFormat, "target", "req/s", "p50", "p99", "proxy µs/req", "upstream µs/req", "req/s ratio", "cpu/req ratio", "p99 ratio", "result")
	for _, r := range rows {
		result := "ok"
		if r.FailedRounds > 0 {
			result = fmt.Sprintf("FAILED in %d of %d rounds", r.FailedRounds, r.Rounds)
		}
		fmt.Fprintf(w, summaryFormat, r.Target, fmt.Sprintf("%.0f", r.ReqPerSec), fmtMicros(r.P50us), fmtMicros(r.P99us),
			fmt.Sprintf("%.1f", r.ProxyCPUus), fmt.Sprintf("%.1f", r.UpstreamCPUus),
			fmt.Sprintf("%.2f", r.ReqPerSecRatio), fmt.Sprintf("%.2f", r.CPURatio), fmt.Sprintf("%.2f", r.P99Ratio), result)
	}
}

func printProcesses(w io.Writer, procs []procReport) {
	for _, p := range procs {
		fmt.Fprintf(w, "%s process (pid %d): RSS %s → %s, goroutines %d → %d (before the first phase → after the last)\n",
			p.Name, p.PID, fmtKB(p.RSSBeforeKB), fmtKB(p.RSSAfterKB), p.GoroutinesBefore, p.GoroutinesAfter)
		if p.CanceledLogLines > 0 {
			fmt.Fprintf(w, "  %s logged %q %d times (requests in flight when a phase ended); not shown\n", p.Name, canceledLine, p.CanceledLogLines)
		}
	}
}

func fmtKB(kb int64) string {
	if kb < 0 {
		return "?"
	}
	return fmt.Sprintf("%.1f MiB", float64(kb)/1024)
}

func writeJSON(path string, rep *report) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write -json file: %w", err)
	}
	return nil
}
