package clock

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Duration is a time.Duration that JSON carries as a string of seconds,
// to the millisecond, with a unit: "300s", "1.5s", "0.042s"
// (time.ParseDuration reads it back), instead of a bare count of
// nanoseconds. The control API and `uswitch
// check -o json` show ages, timeouts and the FDB ageing time this way.
type Duration time.Duration

// String returns d in seconds to the millisecond, like "300s" or "1.5s".
func (d Duration) String() string {
	ms := int64(time.Duration(d).Round(time.Millisecond) / time.Millisecond)
	sign := ""
	if ms < 0 {
		sign, ms = "-", -ms
	}
	str := sign + strconv.FormatInt(ms/1000, 10)
	if frac := ms % 1000; frac != 0 {
		str += strings.TrimRight(fmt.Sprintf(".%03d", frac), "0")
	}
	return str + "s"
}

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(d.String())
}

// UnmarshalJSON implements json.Unmarshaler: any string that
// time.ParseDuration takes ("300s", "5m", "1.5s").
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration: want a string like \"300s\", got %s", b)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration: %w", err)
	}
	*d = Duration(v)
	return nil
}
