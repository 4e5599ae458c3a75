package dns

import (
	"encoding/binary"

	"github.com/uswitch-dev/uswitch/host"
)

// Port is the DNS port the resolver serves at each gateway.
const Port = 53

// Register makes s the service of UDP and TCP port 53 of st: queries to
// the gateway of a network with dns = true (elsewhere the port is closed).
func (s *Server) Register(st *host.Stage) {
	st.HandleUDP(Port, udpService{s})
	st.HandleTCP(Port, tcpService{s})
}

// udpService answers queries in datagrams.
type udpService struct{ s *Server }

func (u udpService) ServeUDP(in host.Ingress, src [4]byte, sport uint16, payload []byte, reply func([]byte)) bool {
	return in.Network != "" && u.s.Query(in.Network, src, sport, payload, reply)
}

// tcpService answers queries over TCP (RFC 7766): each message with its
// two-byte length, as many as the client sends on one connection, each
// answer written as soon as it is ready (forwarded ones possibly out of
// order, which the message IDs tell apart).
type tcpService struct{ s *Server }

func (t tcpService) Accept(in host.Ingress, src [4]byte, sport uint16) bool {
	return in.Network != "" && t.s.Serves(in.Network)
}

func (t tcpService) Data(c *host.Conn, data []byte) int {
	used := 0
	for len(data)-used >= 2 {
		n := int(binary.BigEndian.Uint16(data[used:]))
		if len(data)-used < 2+n {
			break
		}
		msg := data[used+2 : used+2+n]
		used += 2 + n
		t.s.query(c.In.Network, c.Remote, c.Port, msg, true, func(answer []byte) {
			if len(answer) > 0xffff {
				return
			}
			out := make([]byte, 2+len(answer))
			binary.BigEndian.PutUint16(out, uint16(len(answer)))
			copy(out[2:], answer)
			c.Write(out)
		})
	}
	return used
}
