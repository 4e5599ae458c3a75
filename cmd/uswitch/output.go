package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// outputFormat is the -o flag of inspection commands: "table" or "json".
type outputFormat string

const (
	formatTable outputFormat = "table"
	formatJSON  outputFormat = "json"
)

func (f *outputFormat) String() string { return string(*f) }

// Set implements flag.Value.
func (f *outputFormat) Set(s string) error {
	switch outputFormat(s) {
	case formatTable, formatJSON:
		*f = outputFormat(s)
		return nil
	}
	return fmt.Errorf("unknown output format %q (want table or json)", s)
}

// table is rows of cells printed as aligned columns under a header, two
// spaces apart, like `docker ps`.
type table struct {
	header []string
	right  []bool // right-align this column (numbers)
	rows   [][]string
}

// newTable returns a table with the given header. A header ending in ">"
// marks a right-aligned column; the ">" is not printed.
func newTable(header ...string) *table {
	t := &table{}
	for _, h := range header {
		r := strings.HasSuffix(h, ">")
		t.header = append(t.header, strings.TrimSuffix(h, ">"))
		t.right = append(t.right, r)
	}
	return t
}

// add appends a row; it must have one cell per column.
func (t *table) add(cells ...string) {
	if len(cells) != len(t.header) {
		panic(fmt.Sprintf("table row has %d cells for %d columns", len(cells), len(t.header)))
	}
	t.rows = append(t.rows, cells)
}

// write prints the header and rows. No line has trailing spaces.
func (t *table) write(w io.Writer) error { return t.writeLines(w, t.widths(nil), true) }

// widths returns each column's width: the widest of the header, the rows
// and, when given, at.
func (t *table) widths(at []int) []int {
	width := make([]int, len(t.header))
	copy(width, at)
	for _, row := range append([][]string{t.header}, t.rows...) {
		for i, c := range row {
			width[i] = max(width[i], utf8.RuneCountInString(c))
		}
	}
	return width
}

// writeLines prints the rows, after the header when header is set, padded
// to width. No line has trailing spaces.
func (t *table) writeLines(w io.Writer, width []int, header bool) error {
	rows := t.rows
	if header {
		rows = append([][]string{t.header}, rows...)
	}
	var b strings.Builder
	for _, row := range rows {
		var line strings.Builder
		for i, c := range row {
			if i > 0 {
				line.WriteString("  ")
			}
			pad := strings.Repeat(" ", max(0, width[i]-utf8.RuneCountInString(c)))
			if t.right[i] {
				line.WriteString(pad + c)
			} else {
				line.WriteString(c + pad)
			}
		}
		b.WriteString(strings.TrimRight(line.String(), " "))
		b.WriteString("\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// writeJSON prints v as indented JSON.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// render prints v as JSON or, in table format, the table that tbl builds.
func render(w io.Writer, f outputFormat, v any, tbl func() *table) error {
	if f == formatJSON {
		return writeJSON(w, v)
	}
	return tbl().write(w)
}

// outputFlag registers the -o flag into f (table, the default, or json)
// on fs: the one place where every command's -o is defined and checked.
func outputFlag(fs *flag.FlagSet, f *outputFormat) {
	*f = formatTable
	fs.Var(f, "o", "output `format`: table or json")
}
