// Command mqttdoctor walks a connection to MQTT brokers step by step, with
// the client's own stages and options, and says which step fails, why, and
// what to check next:
//
//	go run ./cmd/mqttdoctor -embedded                  # a healthy report, at once
//	go run ./cmd/mqttdoctor mqtts://broker:8883 -ca ca.pem -username gw -password-env MQTT_PASSWORD
//
// The steps are interface, address, dns, route, tcp, tls, connect,
// roundtrip and keepalive (steadymqtt.Diagnose). Flags and broker URLs may
// come in any order. With -json the report is the JSON of
// steadymqtt.Diagnosis:
//
//	{"ok":bool,"reports":[{"broker":"…","ok":bool,"steps":[{"name":"dns","status":"failed",
//	  "duration_ms":1.5,"cause":"…","hint":"…","details":["…"],"error":"…"}]}]}
//
// Exit status: 0 when no step failed (warnings allowed), 1 when a step
// failed, 2 for a usage error: no broker, a bad flag, a password that
// cannot be read, or options that steadymqtt.New would refuse.
//
// Passwords are taken from an environment variable (-password-env) or a
// file (-password-file), never from the command line, and appear in no
// output; a password in a broker URL is redacted.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/steadymqtt/steadymqtt"
	"github.com/steadymqtt/steadymqtt/mqtttest"
)

// Exit statuses.
const (
	exitOK     = 0 // every step passed (warnings allowed)
	exitFailed = 1 // a step failed
	exitUsage  = 2 // the command line or the options are wrong
)

// DefaultTimeout bounds each network step of the walk (the connect timeout).
const DefaultTimeout = 5 * time.Second

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// usageError is a mistake on the command line: exit status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// listFlag is a repeatable flag whose values may also be comma lists.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(v string) error {
	for _, name := range strings.Split(v, ",") {
		if name = strings.TrimSpace(name); name != "" {
			*l = append(*l, name)
		}
	}
	return nil
}

// command is what the command line asks for.
type command struct {
	brokers  []string
	embedded bool
	json     bool
	opts     []steadymqtt.Option
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmd, err := parse(args, stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case err != nil:
		fmt.Fprintf(stderr, "mqttdoctor: %v\n", err)
		fmt.Fprintln(stderr, "run mqttdoctor -h for the flags")
		return exitUsage
	}
	brokers := cmd.brokers
	if cmd.embedded {
		b, err := mqtttest.Start()
		if err != nil {
			fmt.Fprintf(stderr, "mqttdoctor: %v\n", err)
			return exitFailed
		}
		defer b.Close()
		brokers = append([]string{b.URL()}, brokers...)
	}
	opts := append([]steadymqtt.Option{steadymqtt.WithBroker(brokers...)}, cmd.opts...)
	d := steadymqtt.Diagnose(ctx, opts...)
	if msg, bad := invalidOptions(d); bad {
		fmt.Fprintf(stderr, "mqttdoctor: %s\n", withFlagNames(msg))
		return exitUsage
	}
	if cmd.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(d); err != nil {
			fmt.Fprintf(stderr, "mqttdoctor: %v\n", err)
			return exitFailed
		}
	} else {
		writeHuman(stdout, d, useColour(stdout))
	}
	if !d.OK {
		return exitFailed
	}
	return exitOK
}

// invalidOptions: a diagnosis that could walk nothing because New would
// refuse the options is a usage error, not a failed step.
func invalidOptions(d steadymqtt.Diagnosis) (string, bool) {
	if len(d.Reports) != 1 || len(d.Reports[0].Steps) != 1 {
		return "", false
	}
	s := d.Reports[0].Steps[0]
	if s.Name != steadymqtt.StepOptions || s.Status != steadymqtt.StepFailed {
		return "", false
	}
	return s.Cause, true
}

// optionFlags names the flag behind each option, for the option errors.
var optionFlags = []struct{ option, flag string }{
	{"WithBroker", "BROKER-URL"},
	{"WithInterfaces", "-interface"},
	{"WithSourceIP", "-source-ip"},
	{"WithAddressFamily", "-family"},
	{"WithCAFile", "-ca"},
	{"WithClientCertFiles", "-cert, -key"},
	{"WithServerName", "-server-name"},
	{"WithClientID", "-client-id"},
	{"WithConnectTimeout", "-timeout"},
	{"TLS options", "-ca, -cert, -key, -server-name"},
}

// withFlagNames adds to an option error the flag that set the option.
func withFlagNames(msg string) string {
	for _, o := range optionFlags {
		if i := strings.Index(msg, o.option+":"); i >= 0 {
			j := i + len(o.option)
			return msg[:j] + " (" + o.flag + ")" + msg[j:]
		}
	}
	return msg
}

func parse(args []string, stderr io.Writer) (*command, error) {
	fs := flag.NewFlagSet("mqttdoctor", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported once, by run
	fs.Usage = func() {}
	var (
		interfaces   listFlag
		sourceIP     = fs.String("source-ip", "", "bind to this local `address` (not with -interface)")
		caFile       = fs.String("ca", "", "trust the CAs of this PEM `file` instead of the system's")
		certFile     = fs.String("cert", "", "client certificate PEM `file` for mutual TLS (with -key)")
		keyFile      = fs.String("key", "", "client key PEM `file` for mutual TLS (with -cert)")
		serverName   = fs.String("server-name", "", "check the broker's certificate against this `name`")
		username     = fs.String("username", "", "user `name` sent in CONNECT")
		passwordEnv  = fs.String("password-env", "", "read the password from this environment `variable`")
		passwordFile = fs.String("password-file", "", "read the password from the first line of this `file`")
		clientID     = fs.String("client-id", "", "client `ID` (the walk connects as <ID>-diagnose-<random>)")
		timeout      = fs.Duration("timeout", DefaultTimeout, "bound of each network step (the connect timeout)")
		family       = fs.String("family", "any", "address `family` of the source and the broker: any, ipv4 or ipv6")
		cmd          command
	)
	fs.Var(&interfaces, "interface", "bind to this network `interface`; repeat it or give a comma list, in order of preference")
	fs.BoolVar(&cmd.embedded, "embedded", false, "start an embedded broker and walk to it too (no URL needed)")
	fs.BoolVar(&cmd.json, "json", false, "print the report as JSON")

	// Flags may follow the URLs: parse again after each positional argument.
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				printUsage(fs, stderr)
				return nil, err
			}
			return nil, &usageError{msg: err.Error()}
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if used := len(args) - len(rest); used > 0 && args[used-1] == "--" {
			cmd.brokers = append(cmd.brokers, rest...)
			break
		}
		cmd.brokers = append(cmd.brokers, rest[0])
		args = rest[1:]
	}

	if len(cmd.brokers) == 0 && !cmd.embedded {
		return nil, usagef("no broker URL given (or -embedded)")
	}
	if len(interfaces) > 0 {
		cmd.opts = append(cmd.opts, steadymqtt.WithInterfaces(interfaces...))
	}
	if *sourceIP != "" {
		ip := net.ParseIP(*sourceIP)
		if ip == nil {
			return nil, usagef("-source-ip %q is not an IP address", *sourceIP)
		}
		cmd.opts = append(cmd.opts, steadymqtt.WithSourceIP(ip))
	}
	switch strings.ToLower(*family) {
	case "any", "":
	case "ipv4", "ip4", "4":
		cmd.opts = append(cmd.opts, steadymqtt.WithAddressFamily(steadymqtt.FamilyIPv4))
	case "ipv6", "ip6", "6":
		cmd.opts = append(cmd.opts, steadymqtt.WithAddressFamily(steadymqtt.FamilyIPv6))
	default:
		return nil, usagef("-family %q: want any, ipv4 or ipv6", *family)
	}
	if *caFile != "" {
		cmd.opts = append(cmd.opts, steadymqtt.WithCAFile(*caFile))
	}
	switch {
	case *certFile != "" && *keyFile != "":
		cmd.opts = append(cmd.opts, steadymqtt.WithClientCertFiles(*certFile, *keyFile))
	case *certFile != "" || *keyFile != "":
		return nil, usagef("-cert and -key go together")
	}
	if *serverName != "" {
		cmd.opts = append(cmd.opts, steadymqtt.WithServerName(*serverName))
	}
	password, havePassword, err := readPassword(*passwordEnv, *passwordFile)
	if err != nil {
		return nil, err
	}
	switch {
	case havePassword && *username == "":
		return nil, usagef("a password needs -username (MQTT 3.1.1 sends no password without a user name)")
	case *username != "":
		cmd.opts = append(cmd.opts, steadymqtt.WithCredentials(*username, password))
	}
	if *clientID != "" {
		cmd.opts = append(cmd.opts, steadymqtt.WithClientID(*clientID))
	}
	cmd.opts = append(cmd.opts, steadymqtt.WithConnectTimeout(*timeout))
	return &cmd, nil
}

func printUsage(fs *flag.FlagSet, w io.Writer) {
	fmt.Fprintln(w, "usage: mqttdoctor [flags] BROKER-URL...   (tcp://, mqtt://, ssl://, tls://, mqtts://, ws://, wss://)")
	fmt.Fprintln(w, "       mqttdoctor -embedded [flags]")
	fmt.Fprintln(w, "exit status: 0 no step failed (warnings allowed), 1 a step failed, 2 a usage error")
	fmt.Fprintln(w, "flags:")
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
}

// readPassword reads the password from the environment variable or the
// file named. Its errors name the variable or the file, never the content.
func readPassword(env, file string) (password string, ok bool, err error) {
	switch {
	case env != "" && file != "":
		return "", false, usagef("give -password-env or -password-file, not both")
	case env != "":
		pw, set := os.LookupEnv(env)
		if !set {
			return "", false, usagef("-password-env: the environment variable %s is not set", env)
		}
		return pw, true, nil
	case file != "":
		f, err := os.Open(file)
		if err != nil {
			return "", false, usagef("-password-file: %v", err)
		}
		defer f.Close()
		line, err := bufio.NewReader(f).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", false, usagef("-password-file: cannot read %s", file)
		}
		return strings.TrimRight(line, "\r\n"), true, nil
	}
	return "", false, nil
}
