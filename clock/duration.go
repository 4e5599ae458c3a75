package clock

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// Duration is a time.Duration that JSON carries as a string of seconds
// with a unit, like "300s" or "1.5s" (time.ParseDuration reads it back),
// instead of a bare count of nanoseconds. The control API and `uswitch
// check -o json` show ages, timeouts and the FDB ageing time this way.
type Duration time.Duration

// String returns d in seconds, like "300s".
func (d Duration) String() string {
	return strconv.FormatFloat(time.Duration(d).Seconds(), 'f', -1, 64) + "s"
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
