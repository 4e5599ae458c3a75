package e2e

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// ioUrings counts the io_uring descriptors process pid holds.
func ioUrings(t *testing.T, pid int) int {
	t.Helper()
	return fdsTo(t, pid, "anon_inode:[io_uring]")
}

// apply applies cfg to the running instance.
func (in *instance) apply(t *testing.T, cfg string) {
	t.Helper()
	out, err := exec.Command(binary, "apply", "--config", writeConfig(t, cfg)).CombinedOutput()
	require.NoError(t, err, string(out))
}

// TestIOUring: with --io-uring each busy-poll thread reads the TAPs
// through an io_uring of its own. Ping, TCP and UDP cross between
// endpoints through it, with one thread and with two (multi-queue TAPs);
// an endpoint removed while others carry traffic goes away (its TAP
// removed: the ring let go of it), comes back under the same name and
// carries traffic again.
func TestIOUring(t *testing.T) {
	needRoot(t)
	for _, threads := range []int{1, 2} {
		t.Run(fmt.Sprintf("poll-threads=%d", threads), func(t *testing.T) {
			name := prefix("ur")
			full := multiLoopConfig(name)
			in := start(t, name, writeConfig(t, full), "--io-uring", fmt.Sprintf("--poll-threads=%d", threads))
			// Each thread sets its ring up as it starts.
			require.Eventually(t, func() bool { return ioUrings(t, in.cmd.Process.Pid) == threads }, 10*time.Second, 10*time.Millisecond, "a ring per busy-poll thread")
			require.NotContains(t, in.stderr.String(), "reading with epoll")
			a, b, d := name+"-a", name+"-b", name+"-d"
			mc := controlClient(name)
			frames := func() float64 {
				var sum float64
				for i := range threads {
					v, err := metric(mc, fmt.Sprintf("uswitch_busy_poll_loop_frames_total{loop=\"%d\"}", i))
					require.NoError(t, err)
					sum += v
				}
				return sum
			}
			before := frames()
			ping(t, a, mlB)
			ping(t, d, mlA)
			carry(t, a, b, mlB+":5001", mlB+":5001", 16<<20)
			carry(t, b, a, mlA+":5002", mlA+":5002", 4<<20)
			udpInOrder(t, a, b, mlB+":5003", 2000)
			require.Greater(t, frames()-before, 2000.0, "frames the threads carried")

			// d goes while a streams to b; then comes back.
			l := listen(t, b, mlB+":5004")
			go hashServer(l)
			defer l.Close()
			stop := make(chan struct{})
			errc := make(chan error, 1)
			go func() {
				for {
					select {
					case <-stop:
						errc <- nil
						return
					default:
					}
					if err := transfer(t, a, mlB+":5004", 1<<20); err != nil {
						errc <- err
						return
					}
				}
			}()
			without := strings.Replace(full, fmt.Sprintf("\n[[endpoint]]\nname = \"%s\"\nnetwork = \"lan\"\n", d), "", 1)
			require.NotEqual(t, full, without)
			for range 3 {
				in.apply(t, without)
				require.Eventually(t, func() bool { return !netnsExists(d) }, 10*time.Second, 20*time.Millisecond)
				for _, p := range in.ports(t) {
					require.NotEqual(t, d, p.Name)
				}
				in.apply(t, full)
				ping(t, d, mlA)
				carry(t, d, a, mlA+":5005", mlA+":5005", 4<<20)
			}
			close(stop)
			require.NoError(t, <-errc, "a -> b while d went and came back")
			require.Equal(t, threads, ioUrings(t, in.cmd.Process.Pid))
			require.NotContains(t, in.stderr.String(), "port lost")
		})
	}
}
