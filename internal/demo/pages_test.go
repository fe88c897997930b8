package demo

// gatehouse's own pages in a real browser, at a phone's and a desktop's
// width, in light and dark: they must be styled (the stylesheet passes
// the CSP), readable (contrast, font size, no sideways scrolling on a
// phone) and usable from a keyboard (a visible focus ring). With
// -update-screenshots the test also writes the PNGs in docs/screenshots.

import (
	"bytes"
	"context"
	"flag"
	"image/png"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	bt "github.com/gatehouse/gatehouse/internal/browsertest"
)

var updateScreenshots = flag.Bool("update-screenshots", false, "write docs/screenshots/*.png from TestBrowser_PagesLookFinished")

// pagesYAML gives the demo a title, a route alice may not use, a route
// whose app is down, and the two readings of an ambiguous address.
const pagesYAML = `ui:
  title: Team wiki
routes:
  - name: private
    match: {path_prefix: /private}
    upstream: http://127.0.0.1:1
    allow: {groups: [auditors]}
  - name: down
    match: {path_prefix: /down}
    upstream: http://127.0.0.1:1
    public: [/down]
`

// variant is a way of looking at a page: a viewport and a colour scheme.
type variant struct {
	name          string
	width, height int64
	mobile        bool
	scheme        string
}

var variants = []variant{
	{"phone-light", 375, 720, true, "light"},
	{"phone-dark", 375, 720, true, "dark"},
	{"desktop-light", 1024, 680, false, "light"},
	{"desktop-dark", 1024, 680, false, "dark"},
}

// screenshots are the page/variant pairs written to docs/screenshots: a
// few, so the repository stays small, covering every page once and each
// variant more than once.
var screenshots = map[string]bool{
	"signed-out/phone-light":        true,
	"signout-confirm/desktop-light": true,
	"forbidden/desktop-light":       true,
	"forbidden/phone-dark":          true,
	"login-denied/phone-light":      true,
	"error/desktop-dark":            true,
	"upstream-502/phone-light":      true,
	"upstream-502/desktop-dark":     true,
	"ambiguous-400/phone-dark":      true,
}

// pageFacts is what pageFactsJS measures on the rendered page.
type pageFacts struct {
	Lang         string
	H1s          int
	Site         string
	Title        string
	Styled       bool    // the stylesheet applied: main has its 4px top border
	BodyLum      float64 // relative luminance of the page's background
	MinContrast  float64
	LowContrast  []string // text below 4.5:1, described
	DetailPx     float64
	ScrollWidth  int
	ClientWidth  int
	SmallTargets []string // buttons under 44px high
	Controls     int
}

// pageFactsJS measures the page: every element with its own text is
// checked for contrast against the background it is drawn on (WCAG 2.x
// relative luminance).
const pageFactsJS = `(() => {
	const rgba = s => { const m = s.match(/rgba?\(([^)]+)\)/); if (!m) return null; const p = m[1].split(/[\s,\/]+/).filter(Boolean).map(Number); return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1]; };
	const lin = c => { c /= 255; return c <= 0.04045 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4); };
	const lum = c => 0.2126 * lin(c[0]) + 0.7152 * lin(c[1]) + 0.0722 * lin(c[2]);
	const bg = el => { for (; el; el = el.parentElement) { const c = rgba(getComputedStyle(el).backgroundColor); if (c && c[3] > 0) return c; } return [255, 255, 255, 1]; };
	const ratio = (a, b) => { const x = lum(a), y = lum(b); return (Math.max(x, y) + 0.05) / (Math.min(x, y) + 0.05); };
	let min = 99; const low = [];
	for (const el of document.body.querySelectorAll("*")) {
		const own = [...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim() !== "");
		if (!own || el.getClientRects().length === 0) continue;
		const r = ratio(rgba(getComputedStyle(el).color), bg(el));
		min = Math.min(min, r);
		if (r < 4.5) low.push(el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") + " " + r.toFixed(2) + ":1");
	}
	const small = [...document.querySelectorAll("button, a.button")].filter(b => b.getBoundingClientRect().height < 44).map(b => b.textContent + " " + b.getBoundingClientRect().height + "px");
	const main = document.querySelector("main");
	const detail = document.getElementById("detail");
	const site = document.getElementById("site");
	return {
		Lang: document.documentElement.lang,
		H1s: document.querySelectorAll("h1").length,
		Site: site ? site.textContent : "",
		Title: document.title,
		Styled: !!main && getComputedStyle(main).borderTopWidth === "4px",
		BodyLum: lum(bg(document.body)),
		MinContrast: min, LowContrast: low,
		DetailPx: detail ? parseFloat(getComputedStyle(detail).fontSize) : 0,
		ScrollWidth: document.documentElement.scrollWidth,
		ClientWidth: document.documentElement.clientWidth,
		SmallTargets: small,
		Controls: document.querySelectorAll("a[href], button").length,
	};
})()`

// focusJS describes the focused element's outline after a Tab.
const focusJS = `(() => {
	const el = document.activeElement;
	if (!el || el === document.body) return "nothing focused";
	const s = getComputedStyle(el);
	return el.tagName.toLowerCase() + " outline " + s.outlineStyle + " " + s.outlineWidth;
})()`

// emulate sets the tab's viewport and colour scheme.
func emulate(t *testing.T, ctx context.Context, v variant) {
	t.Helper()
	opts := []chromedp.EmulateViewportOption{}
	if v.mobile {
		opts = append(opts, chromedp.EmulateMobile, chromedp.EmulateTouch)
	}
	bt.Do(t, ctx, "emulate "+v.name, chromedp.EmulateViewport(v.width, v.height, opts...),
		chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
				Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: v.scheme}},
			})
			return err
		}))
}

// checkPage checks the page the browser shows in every variant, and
// writes the chosen screenshots when asked to.
func checkPage(t *testing.T, ctx context.Context, name string, status, gotStatus int64) {
	t.Helper()
	if gotStatus != status {
		bt.Failf(t, ctx, "%s: status %d, want %d", name, gotStatus, status)
	}
	for _, v := range variants {
		emulate(t, ctx, v)
		f := bt.Run(t, ctx, "measure "+name, chromedp.Evaluate[pageFacts](pageFactsJS))
		where := name + " (" + v.name + ")"
		switch {
		case !f.Styled:
			bt.Failf(t, ctx, "%s: the stylesheet did not apply (blocked by the CSP?)", where)
		case f.Lang != "en" || f.H1s != 1:
			t.Errorf("%s: lang %q and %d h1 headings; want lang en and one h1", where, f.Lang, f.H1s)
		case f.Site != "Team wiki" || !strings.HasSuffix(f.Title, " · Team wiki"):
			t.Errorf("%s: site %q, title %q; want the ui.title, Team wiki", where, f.Site, f.Title)
		}
		if len(f.LowContrast) > 0 {
			t.Errorf("%s: text below 4.5:1 contrast: %s", where, strings.Join(f.LowContrast, ", "))
		}
		if dark := f.BodyLum < 0.05; dark != (v.scheme == "dark") {
			t.Errorf("%s: page background luminance %.3f, want a %s page", where, f.BodyLum, v.scheme)
		}
		if f.DetailPx < 16 {
			t.Errorf("%s: the explanation is %.1fpx, want at least 16px", where, f.DetailPx)
		}
		if f.ScrollWidth > f.ClientWidth {
			t.Errorf("%s: the page scrolls sideways (%dpx wide in a %dpx viewport)", where, f.ScrollWidth, f.ClientWidth)
		}
		if len(f.SmallTargets) > 0 {
			t.Errorf("%s: buttons under 44px high: %s", where, strings.Join(f.SmallTargets, ", "))
		}
		if f.Controls > 0 {
			// Tab until a control has the focus: from the last one, the
			// first Tab leaves the page.
			got := "nothing focused"
			for i := 0; i <= f.Controls && got == "nothing focused"; i++ {
				bt.Do(t, ctx, "press Tab", chromedp.KeyEvent("\t"))
				got = bt.Run(t, ctx, "read the focus", chromedp.Evaluate[string](focusJS))
			}
			if !strings.Contains(got, "outline solid 3px") {
				t.Errorf("%s: after Tab: %s; want a 3px solid focus outline", where, got)
			}
			bt.Do(t, ctx, "blur", chromedp.Evaluate[chromedp.Void](`document.activeElement && document.activeElement.blur()`))
		}
		t.Logf("%s: lowest text contrast %.2f:1", where, f.MinContrast)
		if *updateScreenshots && screenshots[name+"/"+v.name] {
			writeScreenshot(t, ctx, name+"-"+v.name+".png")
		}
	}
	bt.Do(t, ctx, "reset the emulation", chromedp.EmulateReset())
}

// writeScreenshot saves the viewport as docs/screenshots/file, recompressed.
func writeScreenshot(t *testing.T, ctx context.Context, file string) {
	t.Helper()
	raw := bt.Run(t, ctx, "screenshot "+file, chromedp.CaptureScreenshot())
	img, err := png.Decode(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("screenshot %s: %v", file, err)
	}
	var b bytes.Buffer
	if err := (&png.Encoder{CompressionLevel: png.BestCompression}).Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join("..", "..", "docs", "screenshots")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, file), b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s (%d bytes)", file, b.Len())
}

func TestBrowser_PagesLookFinished(t *testing.T) {
	d := startDemo(t, pagesYAML)
	ctx := bt.New(t)

	// Pages without a session.
	resp := bt.Load(t, ctx, "open the signed-out page", chromedp.Navigate(d.URL+"/_gatehouse/signed-out"))
	checkPage(t, ctx, "signed-out", http.StatusOK, resp.Status)
	resp = bt.Load(t, ctx, "open a stale callback", chromedp.Navigate(d.URL+"/_gatehouse/callback?code=stale&state=stale"))
	checkPage(t, ctx, "error", http.StatusBadRequest, resp.Status)
	resp = bt.Load(t, ctx, "open the app that is down", chromedp.Navigate(d.URL+"/down/"))
	checkPage(t, ctx, "upstream-502", http.StatusBadGateway, resp.Status)
	resp = bt.Load(t, ctx, "open an ambiguous address", chromedp.Navigate(d.URL+"/private;jsessionid=1/x"))
	if got := bt.TextOf(t, ctx, "title"); got != "Ambiguous address" {
		bt.Failf(t, ctx, "title %q, want the ambiguous address page", got)
	}
	checkPage(t, ctx, "ambiguous-400", http.StatusBadRequest, resp.Status)

	// bob: no route allows him, so the callback refuses him.
	resp = browserSignIn(t, ctx, d, "bob", "/")
	checkPage(t, ctx, "login-denied", http.StatusForbidden, resp.Status)

	// alice: signed in, denied by one route, then asked to confirm sign-out.
	resp = browserSignIn(t, ctx, d, "alice", "/")
	if resp.Status != http.StatusOK {
		bt.Failf(t, ctx, "alice: status %d, want the app", resp.Status)
	}
	resp = bt.Load(t, ctx, "open a route alice may not use", chromedp.Navigate(d.URL+"/private/"))
	if got := bt.TextOf(t, ctx, "title"); got != "You do not have access" {
		bt.Failf(t, ctx, "title %q, want the 403 page", got)
	}
	checkPage(t, ctx, "forbidden", http.StatusForbidden, resp.Status)
	resp = bt.Load(t, ctx, "open the sign-out page", chromedp.Navigate(d.URL+"/_gatehouse/logout"))
	if got := bt.TextOf(t, ctx, "title"); got != "Sign out?" {
		bt.Failf(t, ctx, "title %q, want the sign-out confirmation", got)
	}
	checkPage(t, ctx, "signout-confirm", http.StatusOK, resp.Status)
	signOut(t, ctx, d)

	if *updateScreenshots {
		var total int64
		files, _ := filepath.Glob(filepath.Join("..", "..", "docs", "screenshots", "*.png"))
		for _, f := range files {
			if fi, err := os.Stat(f); err == nil {
				total += fi.Size()
			}
		}
		if total > 1<<20 {
			t.Errorf("docs/screenshots holds %d bytes of PNG, want under 1 MiB", total)
		}
		t.Logf("docs/screenshots: %d files, %d bytes", len(files), total)
	}
}
