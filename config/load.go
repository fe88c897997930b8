package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// MaxFileBytes bounds the size of a configuration file.
const MaxFileBytes = 1 << 20

// Problem is one thing wrong with a configuration: where it is and what to
// do about it.
type Problem struct {
	Path string // YAML path, e.g. cookie.secret or routes[2].upstream
	Line int    // 1-based line in the file; 0 when the key is absent
	Msg  string // what is wrong and how to fix it
}

func (p Problem) String() string {
	switch {
	case p.Path == "" && p.Line == 0:
		return p.Msg
	case p.Path == "":
		return fmt.Sprintf("line %d: %s", p.Line, p.Msg)
	case p.Line == 0:
		return fmt.Sprintf("%s: %s", p.Path, p.Msg)
	}
	return fmt.Sprintf("%s (line %d): %s", p.Path, p.Line, p.Msg)
}

// Error lists every problem found in a configuration. Load and Parse
// return it, so that an operator sees all problems at once.
type Error struct {
	File     string
	Problems []Problem
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		fmt.Fprintf(&b, "%s: ", e.File)
	}
	fmt.Fprintf(&b, "%d configuration problem(s):", len(e.Problems))
	for _, p := range e.Problems {
		b.WriteString("\n  ")
		b.WriteString(p.String())
	}
	return b.String()
}

// Load reads, expands, decodes and validates the configuration file at
// path. Secret files it names are read relative to the working directory.
// The error, when not nil, is an *Error listing every problem, or an
// error reading the file.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read config %s: %w", path, err)
	}
	if len(data) > MaxFileBytes {
		return nil, fmt.Errorf("read config %s: larger than %d bytes", path, MaxFileBytes)
	}
	cfg, err := Parse(data, os.LookupEnv)
	var ce *Error
	if errors.As(err, &ce) {
		ce.File = path
	}
	return cfg, err
}

// Parse decodes and validates a configuration from YAML. lookupEnv
// resolves ${VAR} references (os.LookupEnv in production); a reference to
// an unset variable is a problem.
func Parse(data []byte, lookupEnv func(string) (string, bool)) (*Config, error) {
	d := &decoder{lookupEnv: lookupEnv, lines: map[string]int{}, null: map[string]bool{}}
	cfg := &Config{}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc, extra yaml.Node
	if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		return nil, &Error{Problems: []Problem{syntaxProblem(data, err)}}
	}
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		line := extra.Line
		if err != nil {
			line = 0
		}
		return nil, &Error{Problems: []Problem{{Line: line, Msg: "a second YAML document (after ---); keep the configuration in one document"}}}
	}
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		d.decode(doc.Content[0], reflect.ValueOf(cfg).Elem(), "")
	} else if doc.Kind != 0 {
		d.add("", doc.Line, "expected one YAML document holding a mapping")
	}
	if len(d.problems) == 0 {
		cfg.applyDefaults(func(path string) bool { return d.lines[path] != 0 && !d.null[path] })
		v := &validator{lines: d.lines, null: d.null}
		v.validate(cfg)
		d.problems = append(d.problems, v.problems...)
	}
	if len(d.problems) > maxProblems {
		more := len(d.problems) - maxProblems
		d.problems = append(d.problems[:maxProblems:maxProblems], Problem{Msg: fmt.Sprintf("... and %d more problems", more)})
	}
	if len(d.problems) > 0 {
		return nil, &Error{Problems: d.problems}
	}
	return cfg, nil
}

// maxProblems bounds the problems reported for one file.
const maxProblems = 100

// decoder walks the YAML node tree into the typed structs itself, rather
// than through yaml.Node.Decode, so that every problem carries its YAML
// path and line, unknown keys get a "did you mean", ${VAR} is expanded in
// every scalar, and all problems are reported, not the first.
type decoder struct {
	lookupEnv func(string) (string, bool)
	lines     map[string]int  // YAML path → line, for validation messages
	null      map[string]bool // paths given with no value
	problems  []Problem
}

func (d *decoder) add(path string, line int, format string, args ...any) {
	d.problems = append(d.problems, Problem{Path: path, Line: line, Msg: fmt.Sprintf(format, args...)})
}

var durationType = reflect.TypeOf(time.Duration(0))

func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind == yaml.AliasNode || n.Anchor != "" {
		d.add(path, n.Line, "YAML anchors and aliases are not supported; write the value out")
		return
	}
	if path != "" {
		d.lines[path] = n.Line
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		d.null[path] = true
		return // key present with no value: as if absent, the default holds
	}
	switch {
	case v.Kind() == reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		d.decode(n, p.Elem(), path)
		v.Set(p)
	case v.Kind() == reflect.Struct:
		d.decodeStruct(n, v, path)
	case v.Kind() == reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.add(path, n.Line, "expected a list, e.g. [a, b] or one \"- item\" per line")
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			d.decode(item, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
		v.Set(s)
	case v.Kind() == reflect.Map:
		d.decodeMap(n, v, path)
	default:
		d.decodeScalar(n, v, path)
	}
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.add(path, n.Line, "expected a mapping of keys to values")
		return
	}
	fields := yamlFields(v.Type())
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		kp := join(path, k.Value)
		if k.Kind != yaml.ScalarNode || k.Value == "<<" {
			d.add(kp, k.Line, "merge keys and complex keys are not supported")
			continue
		}
		idx, ok := fields[k.Value]
		if !ok {
			d.add(kp, k.Line, "unknown key%s", suggest(k.Value, fields))
			continue
		}
		if seen[k.Value] {
			d.add(kp, k.Line, "key given twice; keep one")
			continue
		}
		seen[k.Value] = true
		d.decode(val, v.Field(idx), kp)
	}
}

func (d *decoder) decodeMap(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.add(path, n.Line, "expected a mapping of names to values")
		return
	}
	m := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		kp := join(path, k.Value)
		if k.Kind != yaml.ScalarNode || k.Value == "" {
			d.add(kp, k.Line, "expected a plain name as key")
			continue
		}
		if m.MapIndex(reflect.ValueOf(k.Value)).IsValid() {
			d.add(kp, k.Line, "key given twice; keep one")
			continue
		}
		ev := reflect.New(v.Type().Elem()).Elem()
		d.decode(val, ev, kp)
		m.SetMapIndex(reflect.ValueOf(k.Value), ev)
	}
	v.Set(m)
}

func (d *decoder) decodeScalar(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.ScalarNode {
		d.add(path, n.Line, "expected a single value, not a list or mapping")
		return
	}
	s, err := expandEnv(n.Value, d.lookupEnv)
	if err != nil {
		d.add(path, n.Line, "%v", err)
		return
	}
	switch {
	case v.Type() == durationType:
		dur, err := time.ParseDuration(s)
		if err != nil {
			d.add(path, n.Line, "%q is not a duration; write a Go duration such as 90s, 30m or 12h", s)
			return
		}
		v.SetInt(int64(dur))
	case v.Kind() == reflect.String:
		v.SetString(s)
	case v.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			d.add(path, n.Line, "%q is not true or false", s)
			return
		}
		v.SetBool(b)
	case v.Kind() == reflect.Int:
		i, err := strconv.Atoi(strings.ReplaceAll(s, "_", ""))
		if err != nil {
			d.add(path, n.Line, "%q is not a whole number", s)
			return
		}
		v.SetInt(int64(i))
	default:
		d.add(path, n.Line, "internal: no decoder for %s", v.Type())
	}
}

// yamlFields maps the yaml tag of each exported field of t to its index.
func yamlFields(t reflect.Type) map[string]int {
	m := map[string]int{}
	for i := range t.NumField() {
		tag := strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0]
		if tag != "" && tag != "-" {
			m[tag] = i
		}
	}
	return m
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// suggest names the closest known key, for typos.
func suggest(key string, fields map[string]int) string {
	best, bestDist := "", 3
	names := make([]string, 0, len(fields))
	for name := range fields {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if dist := editDistance(key, name); dist < bestDist {
			best, bestDist = name, dist
		}
	}
	if best != "" {
		return fmt.Sprintf("; did you mean %s?", best)
	}
	return "; known keys here: " + strings.Join(names, ", ")
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// expandEnv replaces ${VAR} with the variable's value. "$${" stands for a
// literal "${". A bare $ is left alone, so secrets may contain it. An unset
// variable is an error; a variable set to "" expands to "".
func expandEnv(s string, lookup func(string) (string, bool)) (string, error) {
	if !strings.Contains(s, "${") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		switch {
		case strings.HasPrefix(s[i:], "$${"):
			b.WriteString("${")
			i += 3
		case strings.HasPrefix(s[i:], "${"):
			end := strings.IndexByte(s[i:], '}')
			if end < 0 {
				// The value may be a secret: do not quote it.
				return "", errors.New("unclosed ${ (at character " + strconv.Itoa(i+1) + "); write ${NAME}, or $${ for a literal ${")
			}
			name := s[i+2 : i+end]
			if !validEnvName(name) {
				return "", fmt.Errorf("%q is not a variable name; use letters, digits and _ as in ${COOKIE_SECRET}", name)
			}
			val, ok := lookup(name)
			if !ok {
				return "", fmt.Errorf("environment variable %s is not set; export it or change the value", name)
			}
			b.WriteString(val)
			i += end + 1
		default:
			b.WriteByte(s[i])
			i++
		}
	}
	return b.String(), nil
}

func validEnvName(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		if !(c == '_' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}
