package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Waits on children; each is bounded.
const (
	startTimeout = 60 * time.Second // 100000 sessions take a few seconds
	stopTimeout  = 5 * time.Second
)

// child is one role running in its own process.
type child struct {
	role  string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan []byte // stdout lines; closed at EOF
	log   *stderrFilter
}

// startChild re-executes exe with -role=role and args, and decodes its
// first stdout line into h.
func startChild(exe, role string, args []string, stderr io.Writer, h *hello, env ...string) (*child, error) {
	cmd := exec.Command(exe, append([]string{"-role=" + role}, args...)...)
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	log := &stderrFilter{w: stderr}
	cmd.Stderr = log
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", role, err)
	}
	c := &child{role: role, cmd: cmd, stdin: stdin, lines: make(chan []byte, 1), log: log}
	go func() {
		defer close(c.lines)
		r := bufio.NewReader(stdout)
		for {
			line, err := r.ReadBytes('\n')
			if len(bytes.TrimSpace(line)) > 0 {
				c.lines <- line
			}
			if err != nil {
				return
			}
		}
	}()
	if err := c.readLine(startTimeout, h); err != nil {
		c.kill()
		return nil, fmt.Errorf("%s did not start: %w", role, err)
	}
	return c, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

func (c *child) readLine(timeout time.Duration, v any) error {
	select {
	case line, ok := <-c.lines:
		if !ok {
			return fmt.Errorf("%s closed its stdout", c.role)
		}
		return json.Unmarshal(line, v)
	case <-time.After(timeout):
		return fmt.Errorf("no line from %s within %s", c.role, timeout)
	}
}

// stop closes the child's stdin, reads its goodbye line and waits for it
// to exit, killing it after stopTimeout.
func (c *child) stop() (goodbye, error) {
	var g goodbye
	c.stdin.Close()
	err := c.readLine(stopTimeout, &g)
	done := make(chan error, 1)
	go func() { done <- c.cmd.Wait() }()
	select {
	case werr := <-done:
		if err == nil {
			err = werr
		}
	case <-time.After(stopTimeout):
		c.kill()
		<-done
		err = fmt.Errorf("%s did not exit within %s; killed", c.role, stopTimeout)
	}
	return g, err
}

func (c *child) kill() {
	_ = c.cmd.Process.Kill()
}

// cpuTicks returns utime+stime of a process in clock ticks, from fields
// 14 and 15 of /proc/<pid>/stat (proc(5)). The command name in field 2
// may hold spaces, so fields are counted after its closing parenthesis.
func cpuTicks(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStatTicks(string(b))
}

func parseStatTicks(stat string) (uint64, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("parse /proc stat: no ')' in %q", stat)
	}
	f := strings.Fields(stat[i+1:])
	// f[0] is field 3 (state), so utime (14) is f[11] and stime (15) f[12].
	if len(f) < 13 {
		return 0, fmt.Errorf("parse /proc stat: %d fields after the command name, want at least 13", len(f))
	}
	u, err1 := strconv.ParseUint(f[11], 10, 64)
	s, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("parse /proc stat: utime %q stime %q", f[11], f[12])
	}
	return u + s, nil
}

// rssKB returns VmRSS of a process in KiB, from /proc/<pid>/status, or -1.
func rssKB(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				return -1
			}
			return n
		}
	}
	return -1
}

// clockTicks returns the kernel's clock ticks per second (CLK_TCK), from
// getconf, assuming 100 (the value on every common Linux build) when
// getconf is missing.
func clockTicks() (hz float64, source string) {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(out))); err == nil && n > 0 {
			return float64(n), "getconf"
		}
	}
	return 100, "assumed"
}

// canceledLine is what a bare httputil.ReverseProxy logs when a client
// closes its connection with a request in flight, as wrk does at the end
// of every phase.
const canceledLine = "http: proxy error: context canceled"

// stderrFilter passes a child's stderr on, line by line, but drops and
// counts the canceledLine noise. Only the exec package's copying
// goroutine writes to it; read dropped after the child is waited for.
type stderrFilter struct {
	w       io.Writer
	partial []byte
	dropped int
}

func (f *stderrFilter) Write(p []byte) (int, error) {
	f.partial = append(f.partial, p...)
	rest := f.partial
	for {
		line, after, ok := bytes.Cut(rest, []byte("\n"))
		if !ok {
			break
		}
		rest = after
		if bytes.Contains(line, []byte(canceledLine)) {
			f.dropped++
		} else if _, err := f.w.Write(append(line, '\n')); err != nil {
			return len(p), err
		}
	}
	f.partial = f.partial[:copy(f.partial, rest)]
	return len(p), nil
}

// lockedWriter serializes the writes of several children's stderr
// copiers to one writer.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
