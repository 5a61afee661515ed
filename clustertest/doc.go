// Package clustertest holds the tests of steadymqtt against a real
// three-node nats-server cluster: endpoint spread, fail-over after a node
// is killed, fail-back after it returns, and session continuity.
package clustertest
