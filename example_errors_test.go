package steadymqtt_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/steadymqtt/steadymqtt"
	"github.com/steadymqtt/steadymqtt/mqtttest"
)

// Every error the client returns matches a sentinel with errors.Is, and
// every connection error is a *StepError that names the step it failed at
// (errors.As). By default the client retries every failure for ever;
// WithGiveUpOn names the ones retrying will not fix, and Connect then
// returns at once instead of at its deadline.
func Example_errors() {
	b, err := mqtttest.Start()
	if err != nil {
		panic(err)
	}
	defer b.Close()
	b.Refuse(5) // the broker answers every CONNECT with return code 5, not authorized

	client, err := steadymqtt.New(
		steadymqtt.WithBroker(b.URL()),
		steadymqtt.WithCredentials("gateway-42", "wrong password"),
		steadymqtt.WithGiveUpOn(steadymqtt.ErrNotAuthorized),
	)
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	defer client.Close(ctx)

	err = client.Connect(ctx) // returns after the first refusal, not in 10 s
	fmt.Println("not authorized:", errors.Is(err, steadymqtt.ErrNotAuthorized))
	fmt.Println("gave up:", errors.Is(err, steadymqtt.ErrGaveUp))
	fmt.Println("deadline reached:", errors.Is(err, context.DeadlineExceeded))

	var se *steadymqtt.StepError
	if errors.As(err, &se) {
		fmt.Println("step:", se.Step)
	}
	var refused *steadymqtt.ConnectRefusedError
	if errors.As(err, &refused) {
		fmt.Println("CONNACK code:", refused.Code)
	}
	fmt.Println("state:", client.State())
	// Output:
	// not authorized: true
	// gave up: true
	// deadline reached: false
	// step: connect
	// CONNACK code: 5
	// state: closed
}

// The usual TLS set-up of a gateway: the CA that signed the broker's
// certificate, a client certificate for mutual TLS, and the name on the
// broker's certificate when the broker is reached by IP address. The files
// are read at every connection attempt once they changed, so a rotated
// certificate is used at the next reconnect without a restart.
// Verification is always on (WithInsecureSkipVerify says otherwise), and a
// tcp:// URL with TLS options is refused by New.
func ExampleWithCAFile() {
	client, err := steadymqtt.New(
		steadymqtt.WithBroker("mqtts://10.0.0.5:8883"),
		steadymqtt.WithCAFile("/etc/gateway/ca.pem"),
		steadymqtt.WithClientCertFiles("/etc/gateway/cert.pem", "/etc/gateway/key.pem"),
		steadymqtt.WithServerName("broker.example.com"),
	)
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	defer client.Close(ctx)

	err = client.Connect(ctx)
	switch {
	case errors.Is(err, steadymqtt.ErrTLSUnknownAuthority):
		// The certificate does not chain to the CA of WithCAFile.
	case errors.Is(err, steadymqtt.ErrTLSNameMismatch):
		// Valid, but not for the name dialled: see WithServerName. The
		// *TLSError's Detail lists the names the certificate has.
	case errors.Is(err, steadymqtt.ErrTLSClientCertificate):
		// The broker wanted another client certificate.
	case errors.Is(err, steadymqtt.ErrTLSFiles):
		// A file of WithCAFile or WithClientCertFiles is missing or not PEM.
	}
}

// TLS failures are classified: the error matches one of the ErrTLS…
// sentinels, is a *TLSError whose message says what was found, and names
// the tls step. A common mistake, a TLS URL at a plain-text MQTT port, is
// ErrTLSPlainPort.
func ExampleTLSError() {
	// brokerURL is a plain-text broker: tcp://127.0.0.1:port.
	client, err := steadymqtt.New(
		steadymqtt.WithBroker(strings.Replace(brokerURL, "tcp://", "mqtts://", 1)),
		steadymqtt.WithServerName("broker.example.com"),
		steadymqtt.WithGiveUpOn(steadymqtt.ErrTLSPlainPort), // report it instead of retrying
	)
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	defer client.Close(ctx)

	err = client.Connect(ctx)
	fmt.Println("plain-text port:", errors.Is(err, steadymqtt.ErrTLSPlainPort))
	var te *steadymqtt.TLSError
	fmt.Println("a *TLSError:", errors.As(err, &te))
	var se *steadymqtt.StepError
	if errors.As(err, &se) {
		fmt.Println("step:", se.Step)
	}
	// Output:
	// plain-text port: true
	// a *TLSError: true
	// step: tls
}
