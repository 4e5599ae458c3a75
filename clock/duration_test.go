package clock

import (
	"encoding/json"
	"testing"
	"time"
)

func TestDurationJSON(t *testing.T) {
	for _, c := range []struct {
		d    time.Duration
		json string
	}{
		{300 * time.Second, `"300s"`},
		{1500 * time.Millisecond, `"1.5s"`},
		{0, `"0s"`},
		{2 * time.Hour, `"7200s"`},
		{10 * time.Millisecond, `"0.01s"`},
		{42 * time.Millisecond, `"0.042s"`},
		{-1500 * time.Millisecond, `"-1.5s"`},
	} {
		b, err := json.Marshal(Duration(c.d))
		if err != nil || string(b) != c.json {
			t.Errorf("Marshal(%v) = %s, %v; want %s", c.d, b, err, c.json)
		}
		var back Duration
		if err := json.Unmarshal(b, &back); err != nil || time.Duration(back) != c.d {
			t.Errorf("Unmarshal(%s) = %v, %v; want %v", b, time.Duration(back), err, c.d)
		}
	}
	// Ages and timeouts are shown to the millisecond.
	b, err := json.Marshal(Duration(1234567891))
	if err != nil || string(b) != `"1.235s"` {
		t.Errorf("Marshal(1.234567891s) = %s, %v; want \"1.235s\"", b, err)
	}
	var d Duration
	if err := json.Unmarshal([]byte(`"5m"`), &d); err != nil || time.Duration(d) != 5*time.Minute {
		t.Errorf(`Unmarshal("5m") = %v, %v`, time.Duration(d), err)
	}
	for _, bad := range []string{`300000000000`, `"5 minutes"`, `null1`} {
		if err := json.Unmarshal([]byte(bad), &d); err == nil {
			t.Errorf("Unmarshal(%s): no error", bad)
		}
	}
}
