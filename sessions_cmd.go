package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gatehouse/gatehouse/sessions"
)

// sessionsCmd is "gatehouse sessions list|revoke": a client of the admin
// listener's /sessions endpoints.
func sessionsCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || (args[0] != "list" && args[0] != "revoke") {
		fmt.Fprint(stderr, "usage: gatehouse sessions list -sub SUB | revoke -handle H | revoke -sub SUB  [-admin URL] [-token-file F]\n")
		return 2
	}
	verb := args[0]
	fs := flag.NewFlagSet("sessions "+verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	admin := fs.String("admin", "http://127.0.0.1:9090", "the admin listener's URL (admin.listen)")
	tokenFile := fs.String("token-file", os.Getenv("GATEHOUSE_ADMIN_TOKEN_FILE"), "file with the admin token (admin.token_file; default $GATEHOUSE_ADMIN_TOKEN_FILE)")
	sub := fs.String("sub", "", "the user's subject (sub)")
	handle := fs.String("handle", "", "a session's handle, from list")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if *tokenFile == "" {
		fmt.Fprintln(stderr, "gatehouse sessions: give -token-file (the file named by admin.token_file)")
		return 2
	}
	tok, err := os.ReadFile(*tokenFile)
	if err != nil {
		fmt.Fprintln(stderr, "gatehouse sessions:", err)
		return 1
	}
	var method, path string
	switch {
	case verb == "list" && *sub != "":
		method, path = http.MethodGet, "/sessions?sub="+url.QueryEscape(*sub)
	case verb == "revoke" && *handle != "":
		method, path = http.MethodDelete, "/sessions/"+url.PathEscape(*handle)
	case verb == "revoke" && *sub != "":
		method, path = http.MethodDelete, "/sessions?sub="+url.QueryEscape(*sub)
	default:
		fmt.Fprintf(stderr, "gatehouse sessions %s: give -sub%s\n", verb, map[bool]string{true: " or -handle"}[verb == "revoke"])
		return 2
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(*admin, "/")+path, nil)
	if err != nil {
		fmt.Fprintln(stderr, "gatehouse sessions:", err)
		return 2
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintln(stderr, "gatehouse sessions:", err)
		return 1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if resp.StatusCode != http.StatusOK {
		var e struct{ Message string }
		_ = json.Unmarshal(body, &e)
		fmt.Fprintf(stderr, "gatehouse sessions: %s: %s\n", resp.Status, e.Message)
		return 1
	}
	if *asJSON || verb == "revoke" {
		_, _ = stdout.Write(body)
		return 0
	}
	var list struct {
		Sessions []sessions.Info // the admin listener's GET /sessions answer
	}
	if err := json.Unmarshal(body, &list); err != nil {
		fmt.Fprintln(stderr, "gatehouse sessions:", err)
		return 1
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HANDLE\tUSER\tCREATED\tLAST SEEN\tCLIENT IP\tUSER AGENT")
	for _, s := range list.Sessions {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", s.Handle, s.User, s.Created.Format(time.RFC3339), s.LastSeen.Format(time.RFC3339), s.ClientIP, s.UserAgent)
	}
	_ = tw.Flush()
	return 0
}
