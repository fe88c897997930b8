package proxy_test

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/testenv"
)

// tomcatHome is where Debian's tomcat10 package puts Tomcat.
const tomcatHome = "/usr/share/tomcat10"

// tomcatFiles are the static files the test's Tomcat serves, each with a
// marker no other file holds; the admin files are padded to sizes no
// other answer has, so Tomcat's access log tells when one was served.
var tomcatFiles = map[string]string{
	"admin/secret.html": "ADMIN-SECRET-MARKER " + strings.Repeat("s", 1500) + "\n",
	"admin/index.html":  "ADMIN-INDEX-MARKER " + strings.Repeat("i", 1700) + "\n",
	"public/index.html": "PUBLIC-INDEX-MARKER\n",
}

// tomcat is a Tomcat started for one test.
type tomcat struct {
	URL       string // http://127.0.0.1:port
	accessLog string // "%s %b %r" per request, unbuffered
}

// startTomcat runs Tomcat from Debian's tomcat10 package with its own
// CATALINA_BASE in a temporary directory: one HTTP connector on a free
// loopback port, no shutdown port, no AJP, the ROOT webapp holding
// tomcatFiles. It waits until Tomcat answers and stops it at the end of
// the test. Without tomcat10 the test is skipped, unless CI is set (CI
// installs it).
func startTomcat(t *testing.T) *tomcat {
	t.Helper()
	catalina := filepath.Join(tomcatHome, "bin", "catalina.sh")
	if _, err := os.Stat(catalina); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s not found; CI must install Tomcat (apt-get install tomcat10)", catalina)
		}
		t.Skipf("Tomcat not installed (%s not found); apt-get install tomcat10 to run the Tomcat path test", catalina)
	}
	base := t.TempDir()
	for _, d := range []string{"conf", "logs", "temp", "work", "webapps/ROOT/admin", "webapps/ROOT/public"} {
		if err := os.MkdirAll(filepath.Join(base, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	webXML, err := os.ReadFile("/etc/tomcat10/web.xml")
	if err != nil {
		webXML, err = os.ReadFile(filepath.Join(tomcatHome, "etc", "web.xml"))
	}
	if err != nil {
		t.Fatalf("Tomcat's default web.xml: %v", err)
	}
	addr := freeLoopbackAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	serverXML := `<?xml version="1.0" encoding="UTF-8"?>
<Server port="-1" shutdown="SHUTDOWN">
  <Service name="Catalina">
    <Connector address="127.0.0.1" port="` + port + `" protocol="HTTP/1.1" connectionTimeout="20000"/>
    <Engine name="Catalina" defaultHost="localhost">
      <Host name="localhost" appBase="webapps" unpackWARs="false" autoDeploy="false">
        <Valve className="org.apache.catalina.valves.AccessLogValve" directory="logs" prefix="access" suffix=".log"
               rotatable="false" buffered="false" pattern="%s %b %r"/>
      </Host>
    </Engine>
  </Service>
</Server>
`
	files := map[string]string{"conf/server.xml": serverXML, "conf/web.xml": string(webXML)}
	for name, body := range tomcatFiles {
		files["webapps/ROOT/"+name] = body
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(base, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	output, err := os.Create(filepath.Join(base, "logs", "catalina.out"))
	if err != nil {
		t.Fatal(err)
	}
	defer output.Close() // Tomcat holds its own copy
	cmd := exec.Command(catalina, "run")
	cmd.Dir = base
	cmd.Env = append(os.Environ(), "CATALINA_HOME="+tomcatHome, "CATALINA_BASE="+base,
		"CATALINA_TMPDIR="+filepath.Join(base, "temp"), "JAVA_OPTS=-Xmx128m -XX:TieredStopAtLevel=1 -Djava.awt.headless=true")
	cmd.Stdout, cmd.Stderr = output, output
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // catalina.sh execs java; the group holds anything else it starts
	if err := cmd.Start(); err != nil {
		t.Fatalf("start Tomcat: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	logs := func() string {
		out, _ := os.ReadFile(filepath.Join(base, "logs", "catalina.out"))
		return string(out)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		if t.Failed() {
			t.Logf("Tomcat's output:\n%s", logs())
		}
	})
	tc := &tomcat{URL: "http://" + addr, accessLog: filepath.Join(base, "logs", "access.log")}
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := client.Get(tc.URL + "/public/index.html")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return tc
			}
		}
		select {
		case err := <-done:
			done <- err // for the cleanup
			t.Fatalf("Tomcat exited before answering: %v\n%s", err, logs())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("Tomcat did not answer on %s within 60s: %v", addr, err)
		}
	}
}

// adminServed waits until Tomcat's access log has logged a request for
// sentinel (sent last), then counts the successful answers whose size is
// one of the admin files'.
func (tc *tomcat) adminServed(t *testing.T, sentinel string) (n int, log string) {
	t.Helper()
	sizes := map[string]bool{}
	for name, body := range tomcatFiles {
		if strings.HasPrefix(name, "admin/") {
			sizes[strconv.Itoa(len(body))] = true
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(tc.accessLog)
		log = string(b)
		if strings.Contains(log, sentinel) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Tomcat's access log has no line for %s after 10s:\n%s", sentinel, log)
		}
		time.Sleep(20 * time.Millisecond) // polling a file Tomcat writes: nothing to wait on
	}
	for line := range strings.SplitSeq(log, "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "200" && sizes[f[1]] {
			n++
		}
	}
	return n, log
}

// TestTomcat_PathReadings puts gatehouse in front of a real Tomcat (a
// catch-all public route, /admin protected) and sends every ambiguous
// form of an /admin address without a session, and as a signed-in user
// outside /admin's group: Tomcat serves nothing under /admin to them,
// while the legitimate forms (a ";jsessionid=" inside one route, /admin
// with a session) still work.
func TestTomcat_PathReadings(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Tomcat (a few seconds); skipped with -short")
	}
	t.Parallel()
	tc := startTomcat(t)
	e := testenv.New(t, testenv.Options{NoUpstream: true, YAML: fmt.Sprintf(`routes:
  - name: site
    upstream: %[1]s
    public: [/]
    allow: {groups: [staff, admins]}
  - name: admin
    match: {path_prefix: /admin}
    upstream: %[1]s
    allow: {groups: [admins]}
`, tc.URL)})
	anon := e.NewBrowser()
	staff := e.NewBrowser()
	staff.Login(testenv.User("sam", "sam@example.com", "staff"), "/_gatehouse/start?rd=/public/index.html")
	admin := e.NewBrowser()
	admin.Login(testenv.User("ada", "ada@example.com", "admins"), "/_gatehouse/start?rd=/public/index.html")

	// Legitimate forms first: they must work, and they are the only
	// admin answers Tomcat may log.
	for _, tcase := range []struct {
		name   string
		b      *testenv.Browser
		raw    string
		marker string
	}{
		{"public with a path parameter", anon, "/public/index.html;jsessionid=ABC", "PUBLIC-INDEX-MARKER"},
		{"admin with a session", admin, "/admin/secret.html", "ADMIN-SECRET-MARKER"},
		{"admin with a session and a path parameter", admin, "/admin/secret.html;jsessionid=XYZ", "ADMIN-SECRET-MARKER"},
	} {
		r := rawDo(t, e, tcase.b, tcase.raw)
		if r.StatusCode != 200 || !strings.Contains(r.Body, tcase.marker) {
			t.Errorf("%s: GET %s: status %d, %.120q; want 200 with %s from Tomcat", tcase.name, tcase.raw, r.StatusCode, r.Body, tcase.marker)
		}
	}
	const legitimateAdmin = 2

	forms := []string{
		"/admin/secret.html", "/admin/", "/ADMIN/secret.html",
		"/admin;jsessionid=1/secret.html", "/admin;x/secret.html", "/admin;x/", "/admin;/secret.html",
		"/ADMIN;x/secret.html", "/Admin;jsessionid=1/", "/admin;x=1;y=2/secret.html",
		"/admin%3bx/secret.html", "/admin%3Bx/secret.html", "/admin%3b/",
		"/admin./secret.html", "/admin../secret.html", "/admin%2e/secret.html", "/admin%2E/secret.html",
		"/admin%20/secret.html", "/admin.%20/secret.html", "/admin%09/secret.html",
		"/admin%23/secret.html", "/admin%3f/secret.html", "/admin%3F/",
		"/public/..%23/admin/secret.html", "/public/..;/admin/secret.html", "/public/..%3b/admin/secret.html",
		"/public/../admin/secret.html", "/public/%2e%2e/admin/secret.html", "/public;x/../admin/secret.html",
		"//admin;x//secret.html", "//admin%3bx//secret.html", "/x/../admin;x/secret.html",
		"/admin.;x/secret.html", "/admin;x./secret.html", "/admin%2e%3bx/secret.html",
		"/public%2f..%2fadmin/secret.html", "/admin%5csecret.html", "/admin\\secret.html",
		"/admin%252e/secret.html", "/%61dmin;x/secret.html",
	}
	for _, who := range []struct {
		name string
		b    *testenv.Browser
	}{{"anonymous", anon}, {"outside /admin's group", staff}} {
		for _, raw := range forms {
			r := rawDo(t, e, who.b, raw)
			if strings.Contains(r.Body, "ADMIN-") || r.StatusCode == 200 {
				t.Errorf("%s: GET %s: status %d, %.120q; Tomcat served /admin content", who.name, raw, r.StatusCode, r.Body)
			}
		}
	}

	sentinel := "/public/index.html?end-of-test"
	if r := anon.Get(sentinel); r.StatusCode != 200 {
		t.Fatalf("sentinel: status %d", r.StatusCode)
	}
	if n, log := tc.adminServed(t, sentinel); n != legitimateAdmin {
		t.Errorf("Tomcat's access log shows %d answers with an admin file, want the %d with a session:\n%s", n, legitimateAdmin, log)
	}
}
