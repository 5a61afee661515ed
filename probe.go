package steadymqtt

import (
	"encoding/json"
	"net/http"
)

// LivenessHandler answers 200 while none of the clients is closed, 503
// otherwise: a closed client (Close called, or the backoff gave up) will not
// recover by itself, so the process should be restarted. A disconnected
// client is still alive: it is reconnecting.
//
// The JSON body holds each client's Health, keyed by client ID.
func LivenessHandler(clients ...*Client) http.Handler {
	return probe(clients, func(s State) bool { return s != StateClosed })
}

// ReadinessHandler answers 200 only while every client is connected
// (StateConnected or StateDegraded: a degraded link still carries traffic,
// and flapping readiness on one slow ping helps nobody), 503 otherwise, with
// the same JSON body as LivenessHandler.
func ReadinessHandler(clients ...*Client) http.Handler {
	return probe(clients, State.Up)
}

// ProbeReport is the JSON body of the health handlers.
type ProbeReport struct {
	OK      bool              `json:"ok"`
	Clients map[string]Health `json:"clients"`
}

func probe(clients []*Client, ok func(State) bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rep := ProbeReport{OK: true, Clients: make(map[string]Health, len(clients))}
		for _, c := range clients {
			h := c.Health()
			rep.Clients[c.ClientID()] = h
			rep.OK = rep.OK && ok(h.State)
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		if !rep.OK {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		if r.Method != http.MethodHead {
			_ = json.NewEncoder(w).Encode(rep)
		}
	})
}
