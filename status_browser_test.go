package steadymqtt

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The status page in a real browser: headless Chromium (Debian package
// chromium). Without it the test skips with a reason, unless
// STEADYMQTT_REQUIRE_BROWSER=1 (CI) makes that a failure. The screenshot
// goes to STEADYMQTT_SCREENSHOT_DIR/status-page.png when that is set (CI
// keeps it as an artifact; docs/status-page.png is one), else to the
// test's temporary directory.

func findChromium(t *testing.T) string {
	t.Helper()
	required := os.Getenv("STEADYMQTT_REQUIRE_BROWSER") == "1"
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			if testing.Short() && !required {
				t.Skip("skipping in -short mode: starts a browser")
			}
			return p
		}
	}
	if required {
		t.Fatal("chromium is not installed (apt-get install -y chromium) and STEADYMQTT_REQUIRE_BROWSER=1")
	}
	t.Skip("skipping: chromium is not installed (apt-get install -y chromium; set STEADYMQTT_REQUIRE_BROWSER=1 to make this a failure)")
	return ""
}

// chromium runs the browser headless on url with the extra flags and
// returns what it printed on stdout.
func chromium(t *testing.T, browser, url string, flags ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	// Even headless, Chromium reaches for Google's hosts: a proxy that
	// answers nothing and a resolver that finds nothing keep it on
	// loopback (which bypasses the proxy), where the page is.
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	deadAddr := dead.Addr().String()
	require.NoError(t, dead.Close())
	args := append([]string{
		"--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--no-first-run", "--no-default-browser-check", "--disable-extensions", "--hide-scrollbars",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--proxy-server=http://" + deadAddr, "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
		"--user-data-dir=" + t.TempDir(),
	}, flags...)
	cmd := exec.CommandContext(ctx, browser, append(args, url)...)
	// Its helpers are processes of their own: end the whole group.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	defer func() {
		if cmd.Process != nil {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
	}()
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err = cmd.Run()
	t.Logf("chromium %s: %v", strings.Join(flags, " "), time.Since(start).Round(time.Millisecond))
	require.NoError(t, err, "chromium: %s", stderr.String())
	return stdout.String()
}

// browserStatus: a short window, so the sparklines of a few seconds fill
// part of it.
var browserStatus = statusConfig{window: 15 * time.Second, step: 250 * time.Millisecond, events: 50, refresh: 2 * time.Second, diagnose: 30 * time.Second}

func TestStatusPageInChromium(t *testing.T) {
	leakCheck(t)
	browser := findChromium(t)
	up, down := startEmbedded(t), startEmbedded(t)
	telemetry := rttClient(t, "gateway-telemetry", up.URL())
	control := rttClient(t, "gateway-control", down.URL())
	h := newStatusHandler(browserStatus, telemetry, control)
	r := record(control)
	connect(t, telemetry)
	connect(t, control)
	mux := http.NewServeMux()
	mux.Handle("/", h)
	mux.HandleFunc("/probe.html", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = io.WriteString(w, probePage)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	// A few seconds of traffic: acknowledged publishes on both, and idle
	// time between them, when the keepalive measures the round trip.
	ctx := t.Context()
	for i := range 3 {
		for _, c := range []*Client{telemetry, control} {
			require.NoError(t, c.Publish(ctx, "gateway/"+c.ClientID(), []byte(fmt.Sprint(i)), WithQoS(1)))
		}
		time.Sleep(1500 * time.Millisecond)
	}

	down.Stop()
	r.next(t, 5*time.Second, "reconnecting", to(StateReconnecting))
	// Publishes while it is down wait in the outbox.
	for i := range 6 {
		control.PublishAsync(ctx, "gateway/control", []byte(fmt.Sprint(i)), WithQoS(1))
		time.Sleep(200 * time.Millisecond)
	}
	require.Equal(t, StateReconnecting, control.State())
	require.Equal(t, 6, control.Health().Outbox)

	dom := chromium(t, browser, srv.URL+"/", "--dump-dom")
	require.Contains(t, dom, `<section class="client" data-client="gateway-control" data-state="reconnecting">`, dom)
	require.Contains(t, dom, `<section class="client" data-client="gateway-telemetry" data-state="connected">`)
	require.Contains(t, dom, `<span class="badge">reconnecting</span> <span class="id">gateway-control</span>`)
	require.Contains(t, dom, "connected → reconnecting")
	require.NotContains(t, dom, `class="stale"`, "the page's script ran without trouble")

	dir := os.Getenv("STEADYMQTT_SCREENSHOT_DIR")
	if dir == "" {
		dir = t.TempDir()
	}
	require.NoError(t, os.MkdirAll(dir, 0o755))
	shot := filepath.Join(dir, "status-page.png")
	_ = os.Remove(shot)
	chromium(t, browser, srv.URL+"/", "--screenshot="+shot, "--window-size=1280,800")
	png, err := os.ReadFile(shot)
	require.NoError(t, err)
	require.True(t, bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")), "a PNG")
	require.Greater(t, len(png), 10_000, "more than a blank page")
	t.Logf("screenshot: %s (%d bytes)", shot, len(png))

	// The page's script: the diagnosis button shows the report in the
	// card, and the refresh swaps in fresh data and keeps the report.
	dom = chromium(t, browser, srv.URL+"/probe.html", "--dump-dom", "--virtual-time-budget=30000")
	m := regexp.MustCompile(`<pre id="result">([^<]*)</pre>`).FindStringSubmatch(dom)
	require.NotNil(t, m, dom)
	require.Equal(t, "diagnosis ok=false failed=tcp refreshed kept", m[1])
}

// probePage opens the status page in a frame, presses the diagnosis button
// of gateway-control, waits for the report and for a refresh, and writes
// what it saw into #result.
const probePage = `<!DOCTYPE html>
<html><body>
<iframe id="f" src="./" width="1280" height="900"></iframe>
<pre id="result">pending</pre>
<script>
var f = document.getElementById("f"), result = document.getElementById("result");
function wait(cond, then, what) {
  var tries = 0;
  (function poll() {
    var v = cond();
    if (v) { then(v); return; }
    if (++tries > 400) { result.textContent = "timeout waiting for " + what; return; }
    setTimeout(poll, 50);
  })();
}
f.addEventListener("load", function () {
  var d = f.contentDocument, sel = 'section.client[data-client="gateway-control"] ';
  var before = d.getElementById("generated").getAttribute("datetime");
  d.querySelector(sel + "form.diagnose button").click();
  wait(function () { return d.querySelector(sel + ".diag-out #diagnosis"); }, function (rep) {
    var failed = rep.querySelector('tr.step-row[data-status="failed"]');
    var text = "diagnosis ok=" + rep.getAttribute("data-ok") + " failed=" + (failed ? failed.getAttribute("data-step") : "none");
    wait(function () { return d.getElementById("generated").getAttribute("datetime") !== before; }, function () {
      text += " refreshed";
      text += d.querySelector(sel + ".diag-out #diagnosis") ? " kept" : " lost";
      result.textContent = text;
    }, "a refresh");
  }, "the report");
}, { once: true });
</script>
</body></html>`
