// Command steadybench measures raw paho and steadymqtt side by side, in one
// run against one Mosquitto on a free loopback port, and prints one table
// with the ratio of each figure:
//
//	go run ./cmd/steadybench -quick   # about 2 minutes
//	go run ./cmd/steadybench          # the full preset, with 10,000 idle clients
//
// Each figure is the median of rounds that alternate between the libraries
// (paho first in even rounds, steadymqtt first in odd ones); the range over
// the rounds follows in brackets. Idle memory is measured in a fresh
// process per library (this program started again), since a Go process
// keeps the goroutine descriptors of goroutines that ended and the library
// measured second would look lighter.
package main

import (
	"flag"
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync/atomic"
	"time"
)

// preset is how long and how often each row is measured.
type preset struct {
	name          string
	rounds        int           // rounds of the cheap rows (throughput, allocations)
	slowRounds    int           // rounds of the rows that wait on outages
	stormRounds   int           // rounds of the storm
	throughputFor time.Duration // per throughput sample
	pingKeepAlive time.Duration
	pingWatch     time.Duration
	deadKeepAlive time.Duration
	stormClients  int
	stormDown     time.Duration
	replay        int
	replayWindows []int // steadymqtt in-flight windows tried beside the default
	footprintN    int
	idleClients   int
	idleWindow    time.Duration
	stormVariants bool
}

var presets = map[string]preset{
	"quick": {
		name: "quick", rounds: 2, slowRounds: 1, stormRounds: 1, throughputFor: 700 * time.Millisecond,
		pingKeepAlive: 2 * time.Second, pingWatch: 16 * time.Second, deadKeepAlive: 2 * time.Second,
		stormClients: 200, stormDown: 3 * time.Second, replay: 2000, footprintN: 20,
		idleWindow: 10 * time.Second,
	},
	"full": {
		name: "full", rounds: 5, slowRounds: 3, stormRounds: 3, throughputFor: 2 * time.Second,
		pingKeepAlive: 5 * time.Second, pingWatch: 60 * time.Second, deadKeepAlive: 5 * time.Second,
		stormClients: 200, stormDown: 3 * time.Second, replay: 2000, footprintN: 50,
		replayWindows: []int{64, 128, 256, 1000},
		idleClients:   10000, idleWindow: 30 * time.Second, stormVariants: true,
	},
}

// bench is one run: the broker, the preset, and the table so far.
type bench struct {
	p     preset
	b     *brokerUnderTest
	rows  []*row
	notes []string
	ids   atomic.Int64
	only  *regexp.Regexp
}

// id is a client identifier no other client of this run has.
func (x *bench) id(prefix string) string { return fmt.Sprintf("%s-%d", prefix, x.ids.Add(1)) }

// order is the order of the libraries in round r: interleaved.
func order(r int) []library {
	if r%2 == 0 {
		return []library{paho, steady}
	}
	return []library{steady, paho}
}

func (x *bench) add(rs ...*row) { x.rows = append(x.rows, rs...) }
func (x *bench) note(format string, a ...any) {
	x.notes = append(x.notes, fmt.Sprintf(format, a...))
}

func progress(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "steadybench: "+format+"\n", a...)
}

// section is one group of rows, measured together.
type section struct {
	name string
	run  func(*bench)
}

func main() {
	if len(os.Args) > 2 && os.Args[1] == "-child" {
		os.Exit(runChild(os.Args[2], os.Args[3:]))
	}
	quick := flag.Bool("quick", false, "the quick preset (about 2 minutes) instead of the full one")
	idle := flag.Int("idle-clients", -1, "idle clients for the CPU rows; 0 leaves them out (default: 0 quick, 10000 full)")
	variants := flag.Bool("storm-variants", false, "also measure other backoff policies in the storm (on in the full preset)")
	only := flag.String("only", "", "run only the sections whose name matches this regular expression")
	flag.Parse()

	p := presets["full"]
	if *quick {
		p = presets["quick"]
	}
	if *idle >= 0 {
		p.idleClients = *idle
	}
	if *variants {
		p.stormVariants = true
	}
	x := &bench{p: p}
	if *only != "" {
		x.only = regexp.MustCompile(*only)
	}
	start := time.Now()
	printEnvironment(os.Stdout, p.name)

	b, err := startBroker()
	if err != nil {
		fmt.Printf("\nMosquitto is needed for every row and could not be started: %v\n", err)
		fmt.Println("Install it (apt-get install -y mosquitto) and run again.")
		os.Exit(1)
	}
	defer b.Close()
	x.b = b

	for _, s := range sections {
		if x.only != nil && !x.only.MatchString(s.name) {
			continue
		}
		t := time.Now()
		progress("%s…", s.name)
		s.run(x)
		progress("%s done in %v", s.name, time.Since(t).Round(100*time.Millisecond))
	}

	fmt.Println()
	printTable(os.Stdout, x.rows)
	fmt.Println()
	fmt.Print(joinNotes(x.notes))
	fmt.Printf("\nload at the end: %s; %d clients made; %v in all\n", loadAverage(), x.ids.Load(), time.Since(start).Round(time.Second))
	fmt.Println("command: " + strings.Join(append([]string{"go run ./cmd/steadybench"}, os.Args[1:]...), " "))
}

var sections = []section{
	{"idle link", idleLinkRows},
	{"footprint", footprintRows},
	{"idle cpu", idleCPURows},
	{"allocations", allocationRows},
	{"throughput", throughputRows},
	{"storm", stormRows},
	{"outage", outageRows},
	{"replay", replayRows},
}
