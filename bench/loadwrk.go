package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// wrkLoader runs wrk (https://github.com/wg/wrk) with a Lua script that
// rotates through the session cookies and counts answers by status. It
// reads requests/sec and the latency distribution from wrk's --latency
// report, and the status and error counts from the script's own line.
type wrkLoader struct {
	path    string
	threads int
}

func (*wrkLoader) name() string { return "wrk" }

func (l *wrkLoader) run(ctx context.Context, s loadSpec) (loadResult, error) {
	if len(s.addrs) > 1 {
		return loadResult{}, fmt.Errorf("wrk loads one address; spreading over %d replicas needs -loader go", len(s.addrs))
	}
	dir, err := os.MkdirTemp("", "gatehouse-bench-")
	if err != nil {
		return loadResult{}, err
	}
	defer os.RemoveAll(dir)
	script := filepath.Join(dir, "load.lua")
	lua, err := wrkScript(s)
	if err != nil {
		return loadResult{}, err
	}
	if err := os.WriteFile(script, []byte(lua), 0o600); err != nil {
		return loadResult{}, err
	}

	ctx, cancel := context.WithTimeout(ctx, s.duration+30*time.Second)
	defer cancel()
	secs := int(s.duration / time.Second)
	cmd := exec.CommandContext(ctx, l.path,
		"-t", strconv.Itoa(min(l.threads, s.conns)), "-c", strconv.Itoa(s.conns),
		"-d", strconv.Itoa(secs)+"s", "--timeout", "5s", "--latency",
		"-s", script, "http://"+s.addr+s.path)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return loadResult{}, fmt.Errorf("wrk: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	res, err := parseWrk(string(out))
	if err != nil {
		return res, fmt.Errorf("wrk output: %w\n%s", err, out)
	}
	res.Elapsed = s.duration
	res.LoaderCPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	return res, nil
}

// wrkScript is the Lua script of a phase. Each wrk thread formats every
// request once in init and hands them out in turn, from an offset of its
// own; response counts the answers with the wanted status; done adds up
// the threads' counts and prints one line for parseWrk.
func wrkScript(s loadSpec) (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "-- written by gatehouse bench\nlocal path = %q\nlocal accept = %q\nlocal want = %d\n", s.path, s.accept, s.want)
	b.WriteString("local cookies = {\n")
	for _, c := range s.cookies {
		if !cookieSafe(c) {
			return "", fmt.Errorf("cookie %.20q... has characters the Lua script does not quote", c)
		}
		fmt.Fprintf(&b, "  %q,\n", c)
	}
	b.WriteString("}\n")
	b.WriteString(wrkScriptBody)
	return b.String(), nil
}

// cookieSafe reports whether a cookie pair needs no escaping in a Lua
// string literal: Go's %q then quotes it the way Lua reads it.
func cookieSafe(c string) bool {
	for _, r := range c {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_=.+/~", r)
		if !ok {
			return false
		}
	}
	return true
}

const wrkScriptBody = `
local threads = {}
local nthreads = 0
local reqs = {}
local n = 0

function setup(thread)
  nthreads = nthreads + 1
  thread:set("id", nthreads)
  table.insert(threads, thread)
end

function init(args)
  ok, wrong = 0, 0
  local headers = { ["Accept"] = accept, ["User-Agent"] = "gatehouse-bench" }
  if #cookies == 0 then
    reqs[1] = wrk.format("GET", path, headers)
  else
    for i, c in ipairs(cookies) do
      headers["Cookie"] = c
      reqs[i] = wrk.format("GET", path, headers)
    end
  end
  n = (id * 7919) % #reqs
end

function request()
  n = n % #reqs + 1
  return reqs[n]
end

function response(status, headers, body)
  if status == want then ok = ok + 1 else wrong = wrong + 1 end
end

function done(summary, latency, requests)
  local nok, nwrong = 0, 0
  for _, t in ipairs(threads) do
    nok = nok + t:get("ok")
    nwrong = nwrong + t:get("wrong")
  end
  local e = summary.errors
  io.write(string.format("gatehouse-bench: requests=%d ok=%d wrong=%d errors=%d\n",
    summary.requests, nok, nwrong, e.connect + e.read + e.write + e.timeout))
end
`

// parseWrk reads wrk's report: "Requests/sec:", the 50% and 99% lines of
// "Latency Distribution", and the script's gatehouse-bench line.
func parseWrk(out string) (loadResult, error) {
	var res loadResult
	var haveRate, haveCounts bool
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 2 && f[0] == "Requests/sec:":
			v, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				return res, fmt.Errorf("requests/sec %q: %w", f[1], err)
			}
			res.ReqPerSec, haveRate = v, true
		case len(f) == 2 && (f[0] == "50%" || f[0] == "99%"):
			d, err := parseWrkDuration(f[1])
			if err != nil {
				return res, err
			}
			if f[0] == "50%" {
				res.P50 = d
			} else {
				res.P99 = d
			}
		case len(f) == 5 && f[0] == "gatehouse-bench:":
			var ok uint64
			_, err := fmt.Sscanf(sc.Text(), "gatehouse-bench: requests=%d ok=%d wrong=%d errors=%d",
				&res.Requests, &ok, &res.Wrong, &res.Errors)
			if err != nil {
				return res, fmt.Errorf("script line %q: %w", sc.Text(), err)
			}
			haveCounts = true
		}
	}
	switch {
	case !haveRate:
		return res, fmt.Errorf("no Requests/sec line")
	case res.P99 == 0:
		return res, fmt.Errorf("no latency distribution (was --latency given?)")
	case !haveCounts:
		return res, fmt.Errorf("no gatehouse-bench line from the script")
	}
	return res, nil
}

// parseWrkDuration reads wrk's time format: a number with us, ms, s, m or
// h, e.g. 812.00us or 1.25ms.
func parseWrkDuration(s string) (time.Duration, error) {
	units := []struct {
		suffix string
		unit   time.Duration
	}{{"us", time.Microsecond}, {"ms", time.Millisecond}, {"s", time.Second}, {"m", time.Minute}, {"h", time.Hour}}
	for _, u := range units {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			v, err := strconv.ParseFloat(num, 64)
			if err != nil {
				break
			}
			return time.Duration(v * float64(u.unit)), nil
		}
	}
	return 0, fmt.Errorf("latency %q: want a number and us, ms, s, m or h", s)
}
