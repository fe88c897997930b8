package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/redistest"
)

// TestMain lets the run re-execute this test binary for its children, as
// the command re-executes itself: the parent always passes -role first.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && strings.HasPrefix(os.Args[1], "-role=") {
		os.Exit(run(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// TestRun_GoLoader runs the whole program, children included, for one
// short round with the built-in loader.
func TestRun_GoLoader(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three processes and loads them for about 5s")
	}
	checkRun(t, targets)
}

// TestRun_CompareRedis adds the two gatehouses with the Redis store, and
// checks that the run leaves none of its sessions in Redis.
func TestRun_CompareRedis(t *testing.T) {
	if testing.Short() {
		t.Skip("starts five processes and loads them for about 7s")
	}
	redistest.Require(t, redistest.Addr)
	checkRun(t, append(slices.Clip(targets), redisTargets...), "-compare-redis", "-redis-url", "redis://"+redistest.Addr+"/0")
	if keys, err := redistest.Keys(redistest.Addr, "gatehouse-bench-"); err != nil || len(keys) != 0 {
		t.Errorf("after the run Redis holds %d bench keys (%v), want none", len(keys), err)
	}
}

// TestRun_RedisModes runs three gatehouses on a Sentinel-managed Redis
// and on a Redis Cluster the run starts itself, next to one on a single
// Redis, and checks that every phase passed (each answer 200: the
// replicas that did not make the sessions serve them from Redis).
func TestRun_RedisModes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Redis topologies and six processes, and loads them for about 4s each")
	}
	for _, mode := range []string{"sentinel", "cluster"} {
		t.Run(mode, func(t *testing.T) {
			redistest.Start(t) // skips without redis-server (fails under CI)
			checkRun(t, append(slices.Clip(targets[:2]), topoTargets(mode)...), "-redis-mode", mode)
		})
	}
}

// checkRun runs the program for one short round with extra flags, and
// checks every phase of want, the JSON report and the summary table.
func checkRun(t *testing.T, want []target, extra ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	jsonPath := filepath.Join(t.TempDir(), "bench.json")
	args := append([]string{"-duration", "1s", "-warmup", "0", "-rounds", "1", "-loader", "go",
		"-connections", "8", "-sessions", "50", "-json", jsonPath}, extra...)
	var stdout, stderr bytes.Buffer
	code := run(ctx, args, strings.NewReader(""), &stdout, &stderr)
	t.Logf("output:\n%s", stdout.String())
	if code != 0 {
		t.Fatalf("run(%q) = %d, want 0; stderr:\n%s", args, code, stderr.String())
	}

	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	var rep report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatalf("-json file does not parse: %v", err)
	}
	if len(rep.Phases) != len(want) {
		t.Fatalf("got %d phases, want %d", len(rep.Phases), len(want))
	}
	for i, p := range rep.Phases {
		want := want[i]
		switch {
		case p.Target != want.name:
			t.Errorf("phase %d: target %q, want %q", i, p.Target, want.name)
		case p.Failed:
			t.Errorf("%s: FAILED: %s", p.Target, p.Reason)
		case p.Requests == 0:
			t.Errorf("%s: no requests", p.Target)
		case p.Statuses[want.want] != p.Requests || p.Wrong != 0:
			t.Errorf("%s: statuses %v (wrong %d), want all %d answers %d", p.Target, p.Statuses, p.Wrong, p.Requests, want.want)
		case p.ProxyCPUs <= 0:
			t.Errorf("%s: proxy CPU %gs, want > 0", p.Target, p.ProxyCPUs)
		}
	}
	procs := map[string]bool{}
	for _, tg := range want { // gatehouse-302 and -401 share gatehouse's process
		procs[tg.proxy] = true
		for _, g := range tg.group {
			procs[g] = true
		}
	}
	if len(rep.Processes) != len(procs) {
		t.Errorf("got %d processes, want %d", len(rep.Processes), len(procs))
	}
	for _, p := range rep.Processes {
		if p.RSSBeforeKB <= 0 || p.RSSAfterKB <= 0 || p.GoroutinesBefore <= 0 || p.GoroutinesAfter <= 0 {
			t.Errorf("process %+v: want RSS and goroutines before and after", p)
		}
	}

	rows := parseSummary(t, stdout.String())
	for _, tg := range want {
		r, ok := rows[tg.name]
		if !ok {
			t.Errorf("summary has no row for %s", tg.name)
			continue
		}
		if r.reqPerSec <= 0 || r.p99 <= 0 || r.rpsRatio <= 0 || r.cpuRatio <= 0 || r.p99Ratio <= 0 || r.result != "ok" {
			t.Errorf("summary row %s = %+v, want positive figures and ok", tg.name, r)
		}
	}
	if r := rows["bare"]; r.rpsRatio != 1 || r.cpuRatio != 1 || r.p99Ratio != 1 {
		t.Errorf("bare ratios = %+v, want 1.00 each", r)
	}
}

type summaryLine struct {
	reqPerSec                    float64
	p99                          time.Duration
	rpsRatio, cpuRatio, p99Ratio float64
	result                       string
}

// parseSummary reads the rows under the "summary:" line, up to the blank
// line that ends the table, as a reader of the output would.
func parseSummary(t *testing.T, out string) map[string]summaryLine {
	t.Helper()
	rows := map[string]summaryLine{}
	sc := bufio.NewScanner(strings.NewReader(out))
	in := false
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "summary:") {
			in = true
			sc.Scan() // the column header
			continue
		}
		if !in {
			continue
		}
		f := strings.Fields(line)
		if len(f) == 0 {
			break
		}
		if len(f) < 10 || !isTarget(f[0]) {
			t.Errorf("summary line %q: want a target and 9 columns", line)
			continue
		}
		var r summaryLine
		var errs [5]error
		r.reqPerSec, errs[0] = strconv.ParseFloat(f[1], 64)
		r.p99, errs[1] = time.ParseDuration(f[3])
		r.rpsRatio, errs[2] = strconv.ParseFloat(f[6], 64)
		r.cpuRatio, errs[3] = strconv.ParseFloat(f[7], 64)
		r.p99Ratio, errs[4] = strconv.ParseFloat(f[8], 64)
		for _, err := range errs {
			if err != nil {
				t.Errorf("summary line %q: %v", line, err)
			}
		}
		r.result = f[9]
		rows[f[0]] = r
	}
	if !in {
		t.Fatal("no summary: line in the output")
	}
	return rows
}

func TestOptions_Check(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string // in the error; "" for none
	}{
		{"defaults", nil, ""},
		{"duration too long", []string{"-duration", "121s"}, "-duration"},
		{"too many rounds", []string{"-rounds", "11"}, "-rounds"},
		{"too many connections", []string{"-connections", "257"}, "-connections"},
		{"unknown loader", []string{"-loader", "ab"}, "-loader"},
		{"too many sessions", []string{"-sessions", "100001"}, "-sessions"},
		{"unknown redis mode", []string{"-redis-mode", "replicas"}, "-redis-mode: sentinel or cluster"},
		{"redis mode with wrk", []string{"-redis-mode", "cluster", "-loader", "wrk"}, "use -loader go"},
		{"redis mode and compare-redis", []string{"-redis-mode", "sentinel", "-compare-redis"}, "choose one"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := parseFlags(tt.args, &bytes.Buffer{})
			if err != nil {
				t.Fatal(err)
			}
			err = o.check()
			if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Errorf("check(%q) = %v, want an error naming %q", tt.args, err, tt.want)
			}
		})
	}
}

// wrkOutput is wrk 4.1's report with --latency and the script's line.
const wrkOutput = `Running 2s test @ http://127.0.0.1:42009/app/page?x=1
  2 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     0.86ms    2.86ms  40.48ms   95.43%
    Req/Sec    31.18k    14.40k   65.76k    75.61%
  Latency Distribution
     50%   76.00us
     75%  477.00us
     90%    1.97ms
     99%   16.03ms
  127220 requests in 2.16s, 15.29MB read
  Non-2xx or 3xx responses: 3
Requests/sec:  58994.81
Transfer/sec:      7.09MB
gatehouse-bench: requests=127220 ok=127217 wrong=3 errors=2
`

func TestParseWrk(t *testing.T) {
	res, err := parseWrk(wrkOutput)
	if err != nil {
		t.Fatal(err)
	}
	want := loadResult{Requests: 127220, Wrong: 3, Errors: 2, ReqPerSec: 58994.81,
		P50: 76 * time.Microsecond, P99: 16030 * time.Microsecond}
	if res.Requests != want.Requests || res.Wrong != want.Wrong || res.Errors != want.Errors ||
		res.ReqPerSec != want.ReqPerSec || res.P50 != want.P50 || res.P99 != want.P99 {
		t.Errorf("parseWrk = %+v, want %+v", res, want)
	}
	if _, err := parseWrk(strings.Replace(wrkOutput, "gatehouse-bench:", "other:", 1)); err == nil {
		t.Error("parseWrk without the script line: no error")
	}
}

func TestParseWrkDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"812.00us", 812 * time.Microsecond},
		{"1.25ms", 1250 * time.Microsecond},
		{"2.00s", 2 * time.Second},
		{"1.50m", 90 * time.Second},
	}
	for _, tt := range tests {
		if got, err := parseWrkDuration(tt.in); err != nil || got != tt.want {
			t.Errorf("parseWrkDuration(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
	if _, err := parseWrkDuration("12xs"); err == nil {
		t.Error(`parseWrkDuration("12xs"): no error`)
	}
}

func TestHistogram_Quantile(t *testing.T) {
	var h histogram
	for i := 1; i <= 1000; i++ {
		h.record(time.Duration(i) * time.Microsecond)
	}
	for _, tt := range []struct {
		q    float64
		want time.Duration
	}{{0.50, 500 * time.Microsecond}, {0.99, 990 * time.Microsecond}, {1, 1000 * time.Microsecond}} {
		got := h.quantile(tt.q)
		if diff := float64(got-tt.want) / float64(tt.want); diff < -0.04 || diff > 0.04 {
			t.Errorf("quantile(%g) = %v, want %v within 4%%", tt.q, got, tt.want)
		}
	}
	for _, v := range []uint64{0, 1, 63, 64, 65, 127, 128, 1 << 40, 1<<64 - 1} {
		i := histIndex(v)
		if i < 0 || i >= histBuckets {
			t.Fatalf("histIndex(%d) = %d, out of range", v, i)
		}
		if mid := histValue(i); v >= histExact && (float64(mid) < float64(v)*0.96 || float64(mid) > float64(v)*1.04) {
			t.Errorf("histValue(histIndex(%d)) = %d, more than 4%% off", v, mid)
		}
	}
	var empty histogram
	if got := empty.quantile(0.5); got != 0 {
		t.Errorf("empty quantile = %v, want 0", got)
	}
}

func TestParseStatTicks(t *testing.T) {
	// A command name with spaces and parentheses, as comm may hold.
	stat := "4242 (my (odd) proc) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 75 0 0 20 0 8 0 12345 0 0"
	got, err := parseStatTicks(stat)
	if err != nil || got != 325 {
		t.Errorf("parseStatTicks = %d, %v; want 325", got, err)
	}
	if _, err := parseStatTicks("4242 (x) S 1"); err == nil {
		t.Error("short stat line: no error")
	}
}

func TestStderrFilter(t *testing.T) {
	var out bytes.Buffer
	f := &stderrFilter{w: &out}
	for _, chunk := range []string{"2026/01/01 00:00:00 http: proxy error: context ", "canceled\nkeep ", "this\n", "partial"} {
		if _, err := f.Write([]byte(chunk)); err != nil {
			t.Fatal(err)
		}
	}
	if out.String() != "keep this\n" || f.dropped != 1 {
		t.Errorf("passed %q, dropped %d; want %q and 1", out.String(), f.dropped, "keep this\n")
	}
}

func isTarget(name string) bool {
	all := append(slices.Clip(targets), redisTargets...)
	all = append(append(all, topoTargets("sentinel")...), topoTargets("cluster")...)
	for _, t := range all {
		if t.name == name {
			return true
		}
	}
	return false
}
