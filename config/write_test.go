package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func TestWriteGolden(t *testing.T) {
	for _, name := range []string{"rich", "default"} {
		t.Run(name, func(t *testing.T) {
			var p *Plan
			if name == "default" {
				p, _ = Default()
			} else {
				var err error
				p, err = Load(filepath.Join("testdata", name+".toml"))
				require.NoError(t, err)
			}
			var buf bytes.Buffer
			require.NoError(t, p.Write(&buf))
			// the default table size depends on the machine's memory
			got := strings.Replace(buf.String(), fmt.Sprintf("conntrack_max=%d ", DefaultConntrackMax()), "conntrack_max=DEFAULT ", 1)
			golden := filepath.Join("testdata", name+".golden")
			if *update {
				require.NoError(t, os.WriteFile(golden, []byte(got), 0o644))
			}
			want, err := os.ReadFile(golden)
			require.NoError(t, err)
			require.Equal(t, string(want), got)
		})
	}
}

func TestJSONRoundTrip(t *testing.T) {
	p, err := Load("testdata/rich.toml")
	require.NoError(t, err)
	data, err := json.Marshal(p)
	require.NoError(t, err)
	var back Plan
	require.NoError(t, json.Unmarshal(data, &back))
	require.Equal(t, p, &back)

	// Addresses and MACs read as text, not byte arrays.
	s := string(data)
	for _, want := range []string{
		`"subnet":"172.20.0.0/24"`,
		`"gateway_mac":"02:42:ac:14:00:01"`,
		`"prefix":"172.20.0.10/24"`,
		`"address":"10.250.0.2/30"`,
		`"src":"172.20.0.0/24"`,
	} {
		require.Contains(t, s, want)
	}
	require.NotContains(t, s, `"src":""`, "zero prefixes are omitted")
}

func FuzzParse(f *testing.F) {
	seeds, err := filepath.Glob("testdata/*.toml")
	require.NoError(f, err)
	for _, s := range seeds {
		data, err := os.ReadFile(s)
		require.NoError(f, err)
		f.Add(data)
	}
	f.Add(defaultTOML)
	f.Add([]byte(ep + "publish = [\"1:2/udp\"]\n[[rule]]\nhook = \"input\"\naction = \"log\"\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(data, "fuzz.toml")
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error without *Error: %v", err)
			}
			return
		}
		var buf bytes.Buffer
		if err := p.Write(&buf); err != nil {
			t.Fatal(err)
		}
		if _, err := json.Marshal(p); err != nil {
			t.Fatal(err)
		}
	})
}

func TestLocator(t *testing.T) {
	l := newLocator(strings.Join([]string{
		`name = "x"`,                       // 1
		`[defaults]`,                       // 2
		`fdb_max = 3`,                      // 3
		`[[endpoint]]`,                     // 4
		`name = "a"`,                       // 5
		`  [[endpoint.interface]]`,         // 6
		`  network = "front"`,              // 7
		`  [[endpoint.interface]]`,         // 8
		`  "ip" = "1.2.3.4"`,               // 9
		`[[endpoint]]`,                     // 10
		`name = "b"`,                       // 11
		`interface = [{network = "back"}]`, // 12
		`[[rule]]`,                         // 13
	}, "\n"))
	for _, tc := range []struct {
		table, key string
		line       int
	}{
		{"", "name", 1},
		{"", "missing", 1},
		{"defaults", "fdb_max", 3},
		{"defaults", "offload", 2},
		{"endpoint[0]", "name", 5},
		{"endpoint[0].interface[0]", "network", 7},
		{"endpoint[0].interface[1]", "ip", 9},
		{"endpoint[0].interface[1]", "mac", 8},
		{"endpoint[1]", "name", 11},
		{"endpoint[1].interface[0]", "network", 12}, // inline: the key holding it
		{"rule[0]", "hook", 13},
		{"rule[5]", "hook", 13}, // unknown table: the first [[rule]]
		{"uplink", "address", 1},
	} {
		require.Equal(t, tc.line, l.line(tc.table, tc.key), "%s %s", tc.table, tc.key)
	}
	require.Equal(t, []tableKey{{"endpoint[0]", "name"}, {"endpoint[1]", "name"}}, l.find("endpoint", "name"))
	require.Equal(t, []tableKey{{"endpoint[0].interface[1]", "ip"}}, l.find("endpoint.interface", "ip"))
}
