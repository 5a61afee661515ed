// Package dnsstub is a tiny DNS server over UDP for tests: it answers A
// queries for the names it is given, says NXDOMAIN for every other name,
// and can be told to read queries and never answer (a resolver that drops
// them). It speaks just enough of RFC 1035 for Go's resolver and glibc's.
package dnsstub

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
)

// Server answers on one UDP address until Close.
type Server struct {
	conn    net.PacketConn
	names   map[string]netip.Addr // lower case, without the trailing dot
	silent  atomic.Bool
	queries atomic.Int64
	wg      sync.WaitGroup
}

// Start listens on addr (host:port) and answers for names: each maps to an
// IPv4 address. A query for a name not in names gets NXDOMAIN; a query of
// another type for a known name gets an empty answer (NODATA).
func Start(addr string, names map[string]netip.Addr) (*Server, error) {
	conn, err := net.ListenPacket("udp", addr)
	if err != nil {
		return nil, err
	}
	s := &Server{conn: conn, names: map[string]netip.Addr{}}
	for n, a := range names {
		s.names[strings.TrimSuffix(strings.ToLower(n), ".")] = a
	}
	s.wg.Add(1)
	go s.serve()
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.conn.LocalAddr().String() }

// SetSilent makes the server read queries without answering them (true),
// or answer again (false).
func (s *Server) SetSilent(silent bool) { s.silent.Store(silent) }

// Queries is how many queries the server has read.
func (s *Server) Queries() int64 { return s.queries.Load() }

// Close stops the server and waits for its goroutine.
func (s *Server) Close() error {
	err := s.conn.Close()
	s.wg.Wait()
	return err
}

func (s *Server) serve() {
	defer s.wg.Done()
	buf := make([]byte, 1500)
	for {
		n, from, err := s.conn.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		s.queries.Add(1)
		if s.silent.Load() {
			continue
		}
		if resp, ok := s.answer(buf[:n]); ok {
			_, _ = s.conn.WriteTo(resp, from)
		}
	}
}

const (
	typeA       = 1
	classIN     = 1
	rcodeNXName = 3
	rcodeFormat = 1
)

// answer builds the response to one query; ok is false for what is not
// a query at all (it is dropped).
func (s *Server) answer(q []byte) (resp []byte, ok bool) {
	if len(q) < 12 || q[2]&0x80 != 0 { // too short, or a response
		return nil, false
	}
	name, end, err := readName(q, 12)
	if err != nil || binary.BigEndian.Uint16(q[4:6]) != 1 || end+4 > len(q) {
		return header(q, rcodeFormat, 0), true
	}
	question := q[12 : end+4]
	qtype := binary.BigEndian.Uint16(q[end : end+2])
	qclass := binary.BigEndian.Uint16(q[end+2 : end+4])

	addr, known := s.names[strings.ToLower(name)]
	switch {
	case !known:
		resp = header(q, rcodeNXName, 0)
		resp = append(resp, question...)
	case qtype == typeA && qclass == classIN:
		resp = header(q, 0, 1)
		resp = append(resp, question...)
		resp = append(resp, 0xc0, 12) // the name: a pointer to the question's
		resp = binary.BigEndian.AppendUint16(resp, typeA)
		resp = binary.BigEndian.AppendUint16(resp, classIN)
		resp = binary.BigEndian.AppendUint32(resp, 5) // TTL, seconds
		resp = binary.BigEndian.AppendUint16(resp, 4)
		a4 := addr.As4()
		resp = append(resp, a4[:]...)
	default: // the name exists, without records of that type
		resp = header(q, 0, 0)
		resp = append(resp, question...)
	}
	return resp, true
}

// header is the response header for query q: its ID, QR set, its opcode
// and RD, authoritative and recursion available, one question, answers
// answer records.
func header(q []byte, rcode byte, answers uint16) []byte {
	h := make([]byte, 12)
	copy(h[0:2], q[0:2])
	h[2] = 0x80 | q[2]&0x79 | 0x04 // QR, the opcode and RD, AA
	h[3] = 0x80 | rcode            // RA
	qd := uint16(1)
	if rcode == rcodeFormat {
		qd = 0
	}
	binary.BigEndian.PutUint16(h[4:6], qd)
	binary.BigEndian.PutUint16(h[6:8], answers)
	return h
}

// readName reads the uncompressed name at off (queries carry no
// pointers) and returns it with the offset after it.
func readName(b []byte, off int) (string, int, error) {
	var labels []string
	for {
		if off >= len(b) {
			return "", 0, errors.New("short name")
		}
		n := int(b[off])
		off++
		if n == 0 {
			break
		}
		if n&0xc0 != 0 || off+n > len(b) {
			return "", 0, errors.New("bad label")
		}
		labels = append(labels, string(b[off:off+n]))
		off += n
	}
	return strings.Join(labels, "."), off, nil
}
