// Package trace records the steps a frame takes through the datapath: the
// ingress port and its port security verdict, the FDB lookup or flood, the
// route, each hook with the rule that matched, the conntrack state, the
// NAT, the neighbour entry and the egress ports, or the drop and its
// reason. The datapath's own functions take a *Recorder that is nil in
// normal operation (a nil check, nothing more); a Recorder with Dry set
// makes them decide without side effects: nothing learned, counted, created,
// resolved or sent. That is how `uswitch trace` never disagrees with the
// datapath: it runs the datapath's code.
package trace

import (
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/uswitch-dev/uswitch/packet"
)

// Follower is a packet.Egress that can follow a traced frame: a switch port
// (the frame is switched as received on it) or a router port (routed as
// arrived on it). A stage hands a traced frame on to the next one's
// TraceFrame, where it would call WriteFrame; an egress that is no
// Follower (a device) is where the frame leaves.
type Follower interface {
	TraceFrame(frame []byte, off packet.Offload, rec *Recorder)
}

// Kinds of steps.
const (
	Ingress   = "ingress"   // a frame enters a switch port or router port
	Security  = "security"  // port security verdict
	FDB       = "fdb"       // the MAC table lookup: a hit or a flood
	Route     = "route"     // the route chosen
	Hook      = "hook"      // a hook's rules: the one that matched and its verdict
	Conntrack = "conntrack" // the connection the packet belongs to and its state
	NAT       = "nat"       // a translation
	Neighbour = "neighbour" // the neighbour (ARP) entry used
	Local     = "local"     // delivered to the router's own stack (host stage)
	Egress    = "egress"    // the frame leaves a port
	Drop      = "drop"      // the frame is dropped, with a reason
	Send      = "send"      // the router sends something of its own (an ICMP error, a reset)
	Queued    = "queued"    // held: waiting for ARP resolution, or a fragment for reassembly
)

// Step is one decision of the datapath about the traced frame.
type Step struct {
	Kind   string `json:"kind"`
	Where  string `json:"where,omitempty"`  // network/port, router port, or hook name
	Text   string `json:"text"`             // what happened, in words
	Rule   string `json:"rule,omitempty"`   // the rule that matched
	Reason string `json:"reason,omitempty"` // the drop reason, as `uswitch ports` names it
	Frame  string `json:"frame,omitempty"`  // the frame as it leaves (hex)
}

// Verdict is what finally happened to a traced frame.
type Verdict struct {
	// Action is "forward" (left through Ports), "drop" (Reason says why),
	// "local" (delivered to the router's own stack) or "queued" (waiting
	// for the next hop's ARP resolution).
	Action string   `json:"action"`
	Ports  []string `json:"ports,omitempty"`
	Reason string   `json:"reason,omitempty"`
}

// Recorder collects the steps of one frame. It is used by one goroutine.
type Recorder struct {
	// Dry makes the datapath decide without side effects.
	Dry bool
	// Conn is a connection the dry run would have made (set by the
	// conntrack code, of its own type); a dry trace of the reply finds it
	// as if it had been made.
	Conn any
	// Steps are the decisions, in order.
	Steps []Step
	depth int
}

// Add records a step.
func (r *Recorder) Add(s Step) { r.Steps = append(r.Steps, s) }

// Addf records a step of kind at where whose text is formatted.
func (r *Recorder) Addf(kind, where, format string, args ...any) {
	r.Add(Step{Kind: kind, Where: where, Text: fmt.Sprintf(format, args...)})
}

// Dropped records a drop for reason.
func (r *Recorder) Dropped(where, reason, text string) {
	r.Add(Step{Kind: Drop, Where: where, Reason: reason, Text: text})
}

// Left records that frame leaves through port (network/port).
func (r *Recorder) Left(where string, frame []byte) {
	r.Add(Step{Kind: Egress, Where: where, Text: Describe(frame), Frame: hex.EncodeToString(frame)})
}

// Enter guards against a dry run looping (a frame handed back and forth
// between switch and router): it reports false once the frame has crossed
// more stages than any path has.
func (r *Recorder) Enter() bool {
	r.depth++
	return r.depth <= 16 || !r.Dry // a real frame is never dropped for it
}

// Verdict sums the steps up: the egress ports, or the last drop, or local
// delivery, or a queue waiting for ARP.
func (r *Recorder) Verdict() Verdict {
	var v Verdict
	for _, s := range r.Steps {
		switch s.Kind {
		case Egress:
			v.Ports = append(v.Ports, s.Where)
		}
	}
	if len(v.Ports) > 0 {
		v.Action = "forward"
		return v
	}
	for i := len(r.Steps) - 1; i >= 0; i-- {
		switch s := r.Steps[i]; s.Kind {
		case Drop:
			return Verdict{Action: "drop", Reason: s.Reason}
		case Local:
			return Verdict{Action: "local"}
		case Queued:
			return Verdict{Action: "queued"}
		}
	}
	return Verdict{Action: "drop", Reason: "none"}
}

// String is the verdict in words.
func (v Verdict) String() string {
	switch v.Action {
	case "forward":
		return "forward to " + strings.Join(v.Ports, ", ")
	case "drop":
		return "drop (" + v.Reason + ")"
	}
	return v.Action
}
