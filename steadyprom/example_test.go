package steadyprom_test

import (
	"context"
	"fmt"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/steadymqtt/steadymqtt"
	"github.com/steadymqtt/steadymqtt/steadyprom"
)

// A gateway exposes its client's health on /metrics, in a registry of its
// own. The client here is never connected, so it reports state idle.
func ExampleNewCollector() {
	client, err := steadymqtt.New(
		steadymqtt.WithBroker("tcp://broker.example:1883"),
		steadymqtt.WithClientID("gw-1"),
	)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer client.Close(context.Background())

	reg := prometheus.NewRegistry()
	reg.MustRegister(steadyprom.NewCollector(client))
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	// ... http.ListenAndServe(":9100", mux)

	fams, err := reg.Gather()
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, f := range fams {
		if f.GetName() != "steadymqtt_state" {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			fmt.Printf("%s{client_id=%q,state=%q} %g\n", f.GetName(), labels["client_id"], labels["state"], m.GetGauge().GetValue())
		}
	}
	// Output:
	// steadymqtt_state{client_id="gw-1",state="closed"} 0
	// steadymqtt_state{client_id="gw-1",state="connected"} 0
	// steadymqtt_state{client_id="gw-1",state="connecting"} 0
	// steadymqtt_state{client_id="gw-1",state="degraded"} 0
	// steadymqtt_state{client_id="gw-1",state="idle"} 1
	// steadymqtt_state{client_id="gw-1",state="reconnecting"} 0
}
