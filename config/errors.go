package config

import (
	"cmp"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"

	"github.com/BurntSushi/toml"
)

// Error is one problem in a configuration file.
type Error struct {
	File string // the name given to Parse
	Line int    // 1-based; 0 when unknown
	Msg  string // names the offending object: `endpoint "web": ...`
}

// Error formats e like a compiler: "net.toml:12: endpoint "web": ...".
func (e *Error) Error() string {
	if e.Line == 0 {
		return e.File + ": " + e.Msg
	}
	return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
}

// joinErrors returns the single error, or all of them joined and sorted by
// line.
func joinErrors(errs []*Error) error {
	slices.SortStableFunc(errs, func(a, b *Error) int { return cmp.Compare(a.Line, b.Line) })
	if len(errs) == 1 {
		return errs[0]
	}
	all := make([]error, len(errs))
	for i, e := range errs {
		all[i] = e
	}
	return errors.Join(all...)
}

// decodeMsg matches the decoder's errors that are not a toml.ParseError: a
// table or array of tables given a value of another shape.
var decodeMsg = regexp.MustCompile(`^toml: (?:line (\d+) )?\(last key "([^"]*)"\): (.*)$`)

// shapes says what each table of net.toml must be.
var shapes = map[string]string{
	"defaults":           "a table ([defaults])",
	"uplink":             "a table ([uplink])",
	"dns":                "a table ([dns])",
	"network":            "an array of tables ([[network]])",
	"endpoint":           "an array of tables ([[endpoint]])",
	"endpoint.interface": "an array of tables ([[endpoint.interface]])",
	"rule":               "an array of tables ([[rule]])",
}

// decodeError turns an error of toml.Decode into an *Error.
func decodeError(file string, err error) *Error {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		return &Error{File: file, Line: pe.Position.Line, Msg: pe.Message}
	}
	m := decodeMsg.FindStringSubmatch(err.Error())
	if m == nil {
		return &Error{File: file, Msg: err.Error()}
	}
	line, _ := strconv.Atoi(m[1])
	msg := m[3]
	if shape, ok := shapes[m[2]]; ok {
		msg = fmt.Sprintf("%s must be %s", m[2], shape)
	}
	return &Error{File: file, Line: line, Msg: msg}
}
