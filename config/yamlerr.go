package config

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// syntaxProblem turns a YAML syntax error into a problem that shows the
// lines around it, a caret under the suspect column, and for the common
// mistakes a hint. yaml.v3 names only a line, and not always the one at
// fault: a scanner error ("mapping values are not allowed") names the
// line where the parser noticed, which may follow the badly indented one,
// and a parser error ("did not find expected key") names the line before
// the one at fault. So the excerpt starts a line early, and the suspect
// line and column are found from the message.
func syntaxProblem(data []byte, yamlErr error) Problem {
	msg := strings.TrimPrefix(yamlErr.Error(), "yaml: ")
	line := 0
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if n, after, ok := strings.Cut(rest, ": "); ok {
			if l, err := strconv.Atoi(n); err == nil {
				line, msg = l, after
			}
		}
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if line < 1 || line > len(lines)+1 {
		return Problem{Msg: "not valid YAML: " + msg}
	}
	suspect, col, hint := suspectOf(lines, line, msg)
	var b strings.Builder
	b.WriteString("not valid YAML: " + msg)
	first := max(1, suspect-2)
	last := min(len(lines), max(line, suspect))
	width := len(strconv.Itoa(last))
	for n := first; n <= last; n++ {
		fmt.Fprintf(&b, "\n    %*d | %s", width, n, displayLine(lines[n-1]))
		if n == suspect {
			// The caret lines up with the column even after tabs.
			pad := strings.Map(func(r rune) rune {
				if r == '\t' {
					return '\t'
				}
				return ' '
			}, lines[n-1][:col])
			fmt.Fprintf(&b, "\n    %*s | %s^", width, "", pad)
		}
	}
	if hint != "" {
		b.WriteString("\n    hint: " + hint)
	}
	return Problem{Line: suspect, Msg: b.String()}
}

// suspectOf finds the line (1-based) and column (0-based byte offset) most
// likely at fault for a yaml.v3 message reported at line, and a hint.
func suspectOf(lines []string, line int, msg string) (suspect, col int, hint string) {
	at := func(n int) string {
		if n >= 1 && n <= len(lines) {
			return lines[n-1]
		}
		return ""
	}
	indent := func(s string) int { return len(s) - len(strings.TrimLeft(s, " ")) }
	suspect = min(line, len(lines))
	switch {
	case strings.Contains(msg, "tab character") || strings.Contains(msg, "cannot start any token"):
		for n := line - 1; n <= line+1; n++ {
			if i := strings.IndexByte(at(n), '\t'); i >= 0 {
				return n, i, "tabs are not allowed in YAML indentation; indent with spaces"
			}
		}
		s := at(suspect)
		if i := strings.IndexAny(s, "@`"); i >= 0 {
			return suspect, i, "a value cannot start with @ or `; quote it, e.g. \"@value\""
		}
		return suspect, indent(s), ""
	case strings.HasPrefix(msg, "mapping values are not allowed"):
		s := at(suspect)
		col = strings.Index(s, ": ")
		switch {
		case col < 0:
			col = indent(s)
		case strings.Contains(s[col+2:], ": "):
			col += 2 + strings.Index(s[col+2:], ": ")
		}
		return suspect, col, fmt.Sprintf("check the indentation of line %d against the line above it (a key must line up with the keys of its mapping); quote a value that contains ': ', e.g. \"a: b\"", suspect)
	case strings.HasPrefix(msg, "did not find expected ',' or ']'"), strings.HasPrefix(msg, "did not find expected ',' or '}'"):
		suspect = min(line+1, len(lines))
		s := at(suspect)
		if i := strings.IndexAny(s, "[{"); i >= 0 {
			return suspect, i, "a [list] or {mapping} on one line must be closed on that line"
		}
		return suspect, indent(s), "a [list] or {mapping} on one line must be closed on that line"
	case strings.HasPrefix(msg, "did not find expected"):
		suspect = misindented(lines, max(1, line-1))
		if suspect == 0 {
			suspect = min(line+1, len(lines))
		}
		return suspect, indent(at(suspect)), fmt.Sprintf("check the indentation of line %d against the lines above it: the keys of one mapping (and the - of one list) start in the same column", suspect)
	case strings.Contains(msg, "end of stream"):
		hint = "a quoted value is not closed; close it with the same quote it opens with"
		for n := suspect; n >= max(1, suspect-3); n-- {
			if i := strings.Index(at(n), ": "); i >= 0 && strings.ContainsAny(at(n)[i+2:], `"'`) {
				return n, i + 2 + strings.IndexAny(at(n)[i+2:], `"'`), hint
			}
		}
		return suspect, indent(at(suspect)), hint
	}
	return suspect, indent(at(suspect)), ""
}

// misindented returns the first line from line from on whose
// indentation fits none of the lines above it: deeper than the line
// before without that line opening a block (key:, - or a block scalar),
// or shallower than it but not in the column of an enclosing key. It
// returns 0 when every line fits.
func misindented(lines []string, from int) int {
	indent := func(s string) int { return len(s) - len(strings.TrimLeft(s, " ")) }
	// column is where a line's content starts: after "- " for a list item.
	column := func(s string) int {
		t := strings.TrimLeft(s, " ")
		return indent(s) + len(t) - len(strings.TrimLeft(strings.TrimPrefix(t, "-"), " "))
	}
	blank := func(s string) bool { t := strings.TrimSpace(s); return t == "" || t[0] == '#' }
	prev := 0 // the last non-blank line, 1-based
	for n := 1; n <= len(lines); n++ {
		s := lines[n-1]
		if blank(s) {
			continue
		}
		if n >= from && prev > 0 {
			p := lines[prev-1]
			t := strings.TrimRight(p, " ")
			opens := strings.HasSuffix(t, ":") || strings.HasSuffix(t, "-") ||
				strings.HasSuffix(t, "|") || strings.HasSuffix(t, ">") || strings.HasSuffix(t, "|-") || strings.HasSuffix(t, ">-")
			switch ind := indent(s); {
			case ind > column(p) && !opens:
				return n
			case ind < indent(p) && !enclosing(lines, prev, ind, indent, blank):
				return n
			}
		}
		prev = n
	}
	return 0
}

// enclosing reports whether ind is the column of a line enclosing line
// n: the lines above it, each less indented than the one before.
func enclosing(lines []string, n, ind int, indent func(string) int, blank func(string) bool) bool {
	least := indent(lines[n-1])
	for i := n - 1; i >= 1; i-- {
		if s := lines[i-1]; !blank(s) && indent(s) < least {
			least = indent(s)
			if least == ind {
				return true
			}
		}
	}
	return ind == 0
}

var (
	// secretKey matches keys whose values stay out of error output.
	secretKey = regexp.MustCompile(`(?i)^(\s*(?:-\s+)?[\w.-]*(?:secret|password|token)[\w.-]*\s*:\s*)\S.*$`)
	// urlUserinfo matches the credentials in a URL (redis://:pw@host).
	urlUserinfo = regexp.MustCompile(`://[^/@\s]*@`)
)

// displayLine is a line of the file as error output shows it: values of
// secret keys and URL credentials are replaced, since the output of a
// failed start may end up in a log.
func displayLine(s string) string {
	s = secretKey.ReplaceAllString(s, "${1}<redacted>")
	return urlUserinfo.ReplaceAllString(s, "://<redacted>@")
}
