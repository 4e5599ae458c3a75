package nat

import (
	"fmt"
	"strings"

	"github.com/uswitch-dev/uswitch/rule"
	"github.com/uswitch-dev/uswitch/trace"
)

// pending finds the connection a dry trace would have made (rec.Conn) for
// a packet with key k (an IPv4 one), or IPv6 tuple t6, so that the trace
// of its reply sees it as made.
func pending(rec *trace.Recorder, k key, t6 *Tuple6) (*Conn, Dir, bool) {
	c, ok := rec.Conn.(*Conn)
	switch {
	case !ok || (t6 != nil) != (c.six != nil):
		return nil, 0, false
	case t6 != nil && *t6 == c.six.orig, t6 == nil && k == key4(c.orig):
		return c, Original, true
	case t6 != nil && *t6 == c.six.reply, t6 == nil && k == key4(c.reply):
		return c, Reply, true
	}
	return nil, 0, false
}

// PendingReply returns the tuple of the reply to the connection a dry trace
// would have made, and whether there is one.
func PendingReply(rec *trace.Recorder) (Tuple, bool) {
	c, ok := rec.Conn.(*Conn)
	if !ok {
		return Tuple{}, false
	}
	return c.reply, true
}

// stateText names a packet's state bits, like conntrack's ctstate.
func stateText(st uint8) string {
	return strings.Join(rule.States(st).Names(), ",")
}

func dirName(d Dir) string {
	if d == Reply {
		return "reply"
	}
	return "original"
}

// recordRule records the rule of hook h that matched (r nil: none did).
func recordRule(rec *trace.Recorder, h Hook, r *Rule, evaluated int) {
	if r == nil {
		rec.Addf(trace.Hook, h.String(), "%d rules evaluated, none matched: accept", evaluated)
		return
	}
	rec.Add(trace.Step{Kind: trace.Hook, Where: h.String(), Rule: r.Comment,
		Text: fmt.Sprintf("matched %q (rule %d of the hook): %s", r.Comment, evaluated, r.Action)})
}
