package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/steadymqtt/steadymqtt/internal/testsupport/broker"
	"github.com/steadymqtt/steadymqtt/mqtttest"
)

// doctor is the command built once for the tests that run the real binary.
var doctor string

func TestMain(m *testing.M) {
	os.Exit(buildAndRun(m))
}

func buildAndRun(m *testing.M) int {
	dir, err := os.MkdirTemp("", "mqttdoctor-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	}
	doctor = filepath.Join(dir, "mqttdoctor")
	if out, err := exec.Command(goBin, "build", "-o", doctor, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// result is one run of the binary.
type result struct {
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// runDoctor runs the binary with args and extra environment variables.
func runDoctor(t *testing.T, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, doctor, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	default:
		t.Fatalf("run %s: %v", doctor, err)
	}
	return r
}

// The JSON report, read with its documented field names only.
type jsonDiagnosis struct {
	OK      bool         `json:"ok"`
	Reports []jsonReport `json:"reports"`
}

type jsonReport struct {
	Broker string     `json:"broker"`
	OK     bool       `json:"ok"`
	Steps  []jsonStep `json:"steps"`
}

type jsonStep struct {
	Name       string   `json:"name"`
	Status     string   `json:"status"`
	DurationMS float64  `json:"duration_ms"`
	Cause      string   `json:"cause"`
	Hint       string   `json:"hint"`
	Details    []string `json:"details"`
	Error      string   `json:"error"`
}

func (r jsonReport) names() []string {
	var names []string
	for _, s := range r.Steps {
		names = append(names, s.Name)
	}
	return names
}

func (r jsonReport) failed() *jsonStep {
	for i := range r.Steps {
		if r.Steps[i].Status == "failed" {
			return &r.Steps[i]
		}
	}
	return nil
}

var allSteps = []string{"interface", "address", "dns", "route", "tcp", "tls", "connect", "roundtrip", "keepalive"}

// decodeJSON checks that stdout is one JSON document of exactly the
// documented shape (no other field names) and returns it.
func decodeJSON(t *testing.T, r result) jsonDiagnosis {
	t.Helper()
	var raw map[string]any
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &raw), "%s", r)
	requireKeys(t, raw, []string{"ok", "reports"}, []string{"ok", "reports"})
	for _, rep := range raw["reports"].([]any) {
		rm := rep.(map[string]any)
		requireKeys(t, rm, []string{"broker", "ok", "steps"}, []string{"broker", "ok", "steps"})
		for _, st := range rm["steps"].([]any) {
			requireKeys(t, st.(map[string]any), []string{"name", "status", "duration_ms"},
				[]string{"name", "status", "duration_ms", "cause", "hint", "details", "error"})
		}
	}
	var d jsonDiagnosis
	dec := json.NewDecoder(strings.NewReader(r.stdout))
	dec.DisallowUnknownFields()
	require.NoError(t, dec.Decode(&d))
	for _, rep := range d.Reports {
		for _, s := range rep.Steps {
			require.Contains(t, []string{"ok", "warning", "failed", "skipped"}, s.Status, s.Name)
			require.GreaterOrEqual(t, s.DurationMS, 0.0)
		}
	}
	return d
}

func requireKeys(t *testing.T, m map[string]any, must, may []string) {
	t.Helper()
	for _, k := range must {
		require.Contains(t, m, k)
	}
	for k := range m {
		require.Contains(t, may, k, "unexpected JSON field %q", k)
	}
}

// requireFailedAt checks a failed walk: exit 1, the step that failed, and
// every later step skipped.
func requireFailedAt(t *testing.T, r result, step string) jsonStep {
	t.Helper()
	require.Equal(t, 1, r.code, "%s", r)
	d := decodeJSON(t, r)
	require.False(t, d.OK)
	require.Len(t, d.Reports, 1)
	rep := d.Reports[0]
	require.False(t, rep.OK)
	require.Equal(t, allSteps, rep.names())
	f := rep.failed()
	require.NotNil(t, f, "%s", r)
	require.Equal(t, step, f.Name, "%s", r)
	require.NotEmpty(t, f.Cause)
	require.NotEmpty(t, f.Error)
	after := false
	for _, s := range rep.Steps {
		if after {
			require.Equal(t, "skipped", s.Status, s.Name)
		}
		after = after || s.Name == step
	}
	return *f
}

// freePort is a loopback port on which nothing listens.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close())
	return port
}

func TestEmbeddedHealthy(t *testing.T) {
	r := runDoctor(t, nil, "-embedded", "-json")
	require.Equal(t, 0, r.code, "%s", r)
	require.Empty(t, r.stderr)
	d := decodeJSON(t, r)
	require.True(t, d.OK)
	require.Len(t, d.Reports, 1)
	rep := d.Reports[0]
	require.True(t, rep.OK)
	require.True(t, strings.HasPrefix(rep.Broker, "tcp://127.0.0.1:"), rep.Broker)
	require.Equal(t, allSteps, rep.names())
	want := map[string]string{"interface": "skipped", "address": "skipped", "dns": "ok", "route": "ok",
		"tcp": "ok", "tls": "skipped", "connect": "ok", "roundtrip": "ok", "keepalive": "ok"}
	for _, s := range rep.Steps {
		require.Equal(t, want[s.Name], s.Status, "%s: %+v", s.Name, s)
		require.NotEmpty(t, s.Details, s.Name)
	}

	human := runDoctor(t, nil, "-embedded")
	require.Equal(t, 0, human.code, "%s", human)
	require.Contains(t, strings.SplitN(human.stdout, "\n", 2)[0], "  OK")
	require.NotContains(t, human.stdout, "failed at step")
	require.NotContains(t, human.stdout, "\x1b[", "no colour when stdout is not a terminal")
}

func TestConnectionRefused(t *testing.T) {
	url := fmt.Sprintf("tcp://127.0.0.1:%d", freePort(t))
	r := runDoctor(t, nil, "-json", url)
	f := requireFailedAt(t, r, "tcp")
	require.Contains(t, f.Cause, "connection refused")
	require.NotEmpty(t, f.Hint)

	human := runDoctor(t, nil, url)
	require.Equal(t, 1, human.code, "%s", human)
	lines := strings.Split(strings.TrimRight(human.stdout, "\n"), "\n")
	require.Contains(t, lines[0], "FAILED")
	require.True(t, strings.HasPrefix(lines[len(lines)-1], "failed at step tcp: connection refused"), lines[len(lines)-1])
}

func TestUnknownHost(t *testing.T) {
	r := runDoctor(t, nil, "-json", "-timeout", "3s", "tcp://nosuch-broker.invalid:1883")
	f := requireFailedAt(t, r, "dns")
	require.Contains(t, f.Cause, "nosuch-broker.invalid")
}

func TestTLSToPlainPort(t *testing.T) {
	b := mqtttest.NewBroker(t)
	url := strings.Replace(b.URL(), "tcp://", "mqtts://", 1)
	r := runDoctor(t, nil, "-json", url)
	f := requireFailedAt(t, r, "tls")
	require.Contains(t, f.Cause, "did not answer with TLS")
}

func TestWrongPasswordEmbedded(t *testing.T) {
	b := mqtttest.NewBroker(t, mqtttest.WithUser("gateway", "right"))
	const wrong = "Wr0ng-env-pass"
	r := runDoctor(t, []string{"DOCTOR_PW=" + wrong}, b.URL(), "-json", "-username", "gateway", "-password-env", "DOCTOR_PW")
	f := requireFailedAt(t, r, "connect")
	require.Contains(t, f.Cause, "CONNACK code 4")
	require.NotContains(t, r.stdout+r.stderr, wrong)

	ok := runDoctor(t, []string{"DOCTOR_PW=right"}, b.URL(), "-username", "gateway", "-password-env", "DOCTOR_PW")
	require.Equal(t, 0, ok.code, "%s", ok)
}

func TestPasswordFile(t *testing.T) {
	b := mqtttest.NewBroker(t, mqtttest.WithUser("gateway", "right"))
	file := filepath.Join(t.TempDir(), "password")
	require.NoError(t, os.WriteFile(file, []byte("right\r\nsecond line\n"), 0o600))
	r := runDoctor(t, nil, "-json", "-username", "gateway", "-password-file", file, b.URL())
	require.Equal(t, 0, r.code, "%s", r)
	require.True(t, decodeJSON(t, r).OK)

	noNewline := filepath.Join(t.TempDir(), "password")
	require.NoError(t, os.WriteFile(noNewline, []byte("right"), 0o600))
	r = runDoctor(t, nil, "-username", "gateway", "-password-file", noNewline, b.URL())
	require.Equal(t, 0, r.code, "%s", r)
}

func TestWrongPasswordMosquitto(t *testing.T) {
	if _, err := broker.Look("mosquitto"); err != nil {
		if os.Getenv("STEADYMQTT_REQUIRE_INTEROP") == "1" {
			t.Fatalf("STEADYMQTT_REQUIRE_INTEROP=1: %v", err)
		}
		t.Skipf("skipped: %v", err)
	}
	const right = "Mosq-r1ght-secret"
	p, err := broker.StartMosquitto(t.TempDir(), broker.MosquittoConfig{Users: map[string]string{"gateway": right}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Stop() })

	const wrong = "Mosq-wr0ng-secret"
	const inURL = "Url-wr0ng-secret"
	env := []string{"MQTT_PASSWORD=" + wrong}
	r := runDoctor(t, env, p.URL(), "-json", "-username", "gateway", "-password-env", "MQTT_PASSWORD")
	f := requireFailedAt(t, r, "connect")
	require.Contains(t, f.Cause, "refused the connection")
	require.NotContains(t, r.stdout+r.stderr, wrong)

	human := runDoctor(t, env, p.URL(), "-username", "gateway", "-password-env", "MQTT_PASSWORD")
	require.Equal(t, 1, human.code, "%s", human)
	require.Contains(t, human.stdout, "failed at step connect: ")
	require.NotContains(t, human.stdout+human.stderr, wrong)

	withURL := strings.Replace(p.URL(), "tcp://", "tcp://gateway:"+inURL+"@", 1)
	r = runDoctor(t, nil, "-json", withURL)
	requireFailedAt(t, r, "connect")
	require.NotContains(t, r.stdout+r.stderr, inURL)

	good := runDoctor(t, []string{"MQTT_PASSWORD=" + right}, p.URL(), "-json", "-username", "gateway", "-password-env", "MQTT_PASSWORD")
	require.Equal(t, 0, good.code, "%s", good)
	require.True(t, decodeJSON(t, good).OK)
	require.NotContains(t, good.stdout+good.stderr, right)
}

// Passwords given by -password-env or in the URL appear in no output, in
// any outcome: healthy, refused by the broker, no broker, invalid options.
func TestPasswordsNeverShown(t *testing.T) {
	const envSecret = "Env-S3cret-pw"
	const urlSecret = "Url-S3cret-pw"
	env := []string{"DOCTOR_SECRET=" + envSecret}
	creds := []string{"-username", "gateway", "-password-env", "DOCTOR_SECRET"}

	accepting := mqtttest.NewBroker(t, mqtttest.WithUser("gateway", envSecret))
	refusing := mqtttest.NewBroker(t, mqtttest.WithUser("gateway", "other"))
	inURL := func(u string) string { return strings.Replace(u, "tcp://", "tcp://gateway:"+urlSecret+"@", 1) }
	refused := fmt.Sprintf("tcp://127.0.0.1:%d", freePort(t))

	cases := []struct {
		name string
		args []string
		code int
	}{
		{"healthy", append([]string{accepting.URL()}, creds...), 0},
		{"healthy, in the URL", []string{strings.Replace(accepting.URL(), "tcp://", "tcp://gateway:"+envSecret+"@", 1)}, 0},
		{"wrong password", append([]string{refusing.URL()}, creds...), 1},
		{"wrong password in the URL", []string{inURL(refusing.URL())}, 1},
		{"connection refused", append([]string{inURL(refused)}, creds...), 1},
		{"TLS to a plain port", append([]string{strings.Replace(inURL(refusing.URL()), "tcp://", "mqtts://", 1)}, creds...), 1},
		{"invalid port", append([]string{"tcp://gateway:" + urlSecret + "@127.0.0.1:99999"}, creds...), 2},
		{"TLS flag on a plain URL", append([]string{inURL(refusing.URL()), "-server-name", "x"}, creds...), 2},
		{"bad flag", append([]string{inURL(refusing.URL()), "-nosuchflag"}, creds...), 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, format := range [][]string{nil, {"-json"}} {
				r := runDoctor(t, env, append(format, c.args...)...)
				require.Equal(t, c.code, r.code, "%s", r)
				out := r.stdout + r.stderr
				require.NotContains(t, out, envSecret)
				require.NotContains(t, out, urlSecret)
				if strings.Contains(strings.Join(c.args, " "), urlSecret) && c.code != 2 {
					require.Contains(t, out, "gateway:xxxxx@", "the URL is shown redacted")
				}
			}
		})
	}
}

func TestInterfaceMissing(t *testing.T) {
	b := mqtttest.NewBroker(t)
	r := runDoctor(t, nil, "-json", "-interface", "nosuch0,nosuch1", b.URL())
	if runtime.GOOS != "linux" && runtime.GOOS != "darwin" {
		require.Equal(t, 2, r.code, "%s", r) // binding to an interface is not available
		return
	}
	f := requireFailedAt(t, r, "interface")
	require.Contains(t, f.Cause, "nosuch0 does not exist")
}

func TestUsageErrors(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name string
		env  []string
		args []string
		want string // in stderr
	}{
		{"no URL", nil, nil, "no broker URL"},
		{"only flags", nil, []string{"-json", "-timeout", "1s"}, "no broker URL"},
		{"unknown flag", nil, []string{"-nosuch", "tcp://127.0.0.1:1883"}, "flag provided but not defined: -nosuch"},
		{"bad duration", nil, []string{"-timeout", "soon", "tcp://127.0.0.1:1883"}, "-timeout"},
		{"unreadable password file", nil, []string{"-username", "u", "-password-file", filepath.Join(dir, "missing"), "tcp://127.0.0.1:1883"}, "-password-file"},
		{"password directory", nil, []string{"-username", "u", "-password-file", dir, "tcp://127.0.0.1:1883"}, "-password-file"},
		{"unset password variable", nil, []string{"-username", "u", "-password-env", "DOCTOR_NOT_SET_ANYWHERE", "tcp://127.0.0.1:1883"}, "DOCTOR_NOT_SET_ANYWHERE is not set"},
		{"both password sources", []string{"DOCTOR_PW=x"}, []string{"-username", "u", "-password-env", "DOCTOR_PW", "-password-file", "/dev/null", "tcp://127.0.0.1:1883"}, "not both"},
		{"password without user", []string{"DOCTOR_PW=x"}, []string{"-password-env", "DOCTOR_PW", "tcp://127.0.0.1:1883"}, "-username"},
		{"cert without key", nil, []string{"-cert", "c.pem", "mqtts://127.0.0.1:8883"}, "-cert and -key"},
		{"bad source IP", nil, []string{"-source-ip", "10.0.0.300", "tcp://127.0.0.1:1883"}, "-source-ip"},
		{"bad family", nil, []string{"-family", "ipx", "tcp://127.0.0.1:1883"}, "-family"},
		{"bad scheme", nil, []string{"http://127.0.0.1:1883"}, "unsupported scheme"},
		{"bad port", nil, []string{"tcp://127.0.0.1:0"}, "WithBroker (BROKER-URL)"},
		{"zero timeout", nil, []string{"-timeout", "0s", "tcp://127.0.0.1:1883"}, "WithConnectTimeout (-timeout)"},
		{"missing CA file", nil, []string{"-ca", filepath.Join(dir, "ca.pem"), "mqtts://127.0.0.1:8883"}, "WithCAFile (-ca)"},
		{"TLS flag on tcp://", nil, []string{"-server-name", "broker", "tcp://127.0.0.1:1883"}, "not a TLS URL"},
		{"both source IP and interface", nil, []string{"-source-ip", "127.0.0.1", "-interface", "lo", "tcp://127.0.0.1:1883"}, "WithSourceIP"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, format := range [][]string{nil, {"-json"}} {
				r := runDoctor(t, c.env, append(format, c.args...)...)
				require.Equal(t, 2, r.code, "%s", r)
				require.Empty(t, r.stdout, "no report for a usage error")
				require.Contains(t, r.stderr, c.want)
				require.True(t, strings.HasPrefix(r.stderr, "mqttdoctor: "), r.stderr)
			}
		})
	}
}

func TestHelp(t *testing.T) {
	r := runDoctor(t, nil, "-h")
	require.Equal(t, 0, r.code, "%s", r)
	for _, f := range []string{"-interface", "-source-ip", "-ca", "-cert", "-key", "-server-name", "-username",
		"-password-env", "-password-file", "-client-id", "-timeout", "-family", "-embedded", "-json"} {
		require.Regexp(t, `(?m)^  `+f+`( |$)`, r.stderr)
	}
}

// Flags may come before, between and after the URLs; "--" ends them.
func TestParseOrder(t *testing.T) {
	cmd, err := parse([]string{"tcp://a:1883", "-json", "-interface", "eth0,wwan0", "tcp://b:1883", "-interface", "wlan0", "-timeout", "2s"}, nil)
	require.NoError(t, err)
	require.Equal(t, []string{"tcp://a:1883", "tcp://b:1883"}, cmd.brokers)
	require.True(t, cmd.json)

	cmd, err = parse([]string{"-embedded", "--", "tcp://a:1883", "-json"}, nil)
	require.NoError(t, err)
	require.Equal(t, []string{"tcp://a:1883", "-json"}, cmd.brokers)
	require.False(t, cmd.json)
	require.True(t, cmd.embedded)

	var l listFlag
	require.NoError(t, l.Set("eth0, wwan0"))
	require.NoError(t, l.Set("wlan0"))
	require.Equal(t, listFlag{"eth0", "wwan0", "wlan0"}, l)
}

// run, in this process: the embedded walk and two brokers in one run.
func TestRunInProcess(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"-embedded"}, &stdout, &stderr)
	require.Equal(t, 0, code, "%s\n%s", stdout.String(), stderr.String())
	require.NotContains(t, stdout.String(), "\x1b[")

	stdout.Reset()
	refused := fmt.Sprintf("tcp://127.0.0.1:%d", freePort(t))
	code = run(context.Background(), []string{"-embedded", refused}, &stdout, &stderr)
	require.Equal(t, 1, code, stdout.String())
	out := stdout.String()
	require.Contains(t, out, "  OK\n")
	require.Contains(t, out, refused+"  FAILED\n")
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	require.Equal(t, "failed at step tcp: connection refused: nothing listens on "+strings.TrimPrefix(refused, "tcp://")+" ("+refused+")", lines[len(lines)-1])
	require.Empty(t, stderr.String())
}
