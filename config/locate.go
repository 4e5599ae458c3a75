package config

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// locator finds the lines of tables and keys in TOML text, which
// BurntSushi/toml does not expose. Tables are named by their path with array
// indexes: "" (the top level), "defaults", "network[2]",
// "endpoint[0].interface[1]". It reads line by line and knows nothing of
// multi-line strings or inline tables; when it misses a key, line falls back
// to the nearest enclosing table or key it did see.
type locator struct {
	tables map[string]int   // table → line of its header
	keys   map[tableKey]int // table, key → line of its first occurrence
}

type tableKey struct{ table, key string }

var (
	arrayHeader = regexp.MustCompile(`^\s*\[\[([^\[\]]+)\]\]`)
	tableHeader = regexp.MustCompile(`^\s*\[([^\[\]]+)\]`)
	keyLine     = regexp.MustCompile(`^\s*("[^"]*"|'[^']*'|[A-Za-z0-9_-]+)\s*[=.]`)
	indexes     = regexp.MustCompile(`\[\d+\]`)
)

func newLocator(text string) *locator {
	l := &locator{tables: map[string]int{"": 1}, keys: map[tableKey]int{}}
	count := map[string]int{} // array of tables → elements seen so far
	table := ""
	for i, line := range strings.Split(text, "\n") {
		n := i + 1
		if m := arrayHeader.FindStringSubmatch(line); m != nil {
			table = l.header(m[1], true, count, n)
		} else if m := tableHeader.FindStringSubmatch(line); m != nil {
			table = l.header(m[1], false, count, n)
		} else if m := keyLine.FindStringSubmatch(line); m != nil {
			l.add(table, unquote(m[1]), n)
		}
	}
	return l
}

// header records the table header name at line n and returns the table's
// path. Inside an array of tables, a path segment is its last element.
func (l *locator) header(name string, array bool, count map[string]int, n int) string {
	segs := strings.Split(name, ".")
	id := ""
	for i, seg := range segs {
		seg = unquote(strings.TrimSpace(seg))
		parent := id
		if id != "" {
			id += "."
		}
		id += seg
		c := count[id]
		switch last := i == len(segs)-1; {
		case array && last:
			count[id] = c + 1
			id += fmt.Sprintf("[%d]", c)
		case c > 0:
			id += fmt.Sprintf("[%d]", c-1)
		}
		if i == len(segs)-1 {
			l.add(parent, seg, n) // a table is also a key of its parent
		}
	}
	l.tables[id] = n
	return id
}

func (l *locator) add(table, key string, n int) {
	k := tableKey{table, key}
	if _, ok := l.keys[k]; !ok {
		l.keys[k] = n
	}
}

// line returns the line of key in table; failing that, the line of the
// table's header, or of the key that holds the table in its parent.
func (l *locator) line(table, key string) int {
	if n, ok := l.keys[tableKey{table, key}]; ok {
		return n
	}
	if n, ok := l.tables[table]; ok {
		return n
	}
	path := table
	if i := strings.LastIndexByte(path, '['); i >= 0 && strings.HasSuffix(path, "]") {
		path = path[:i]
	}
	i := strings.LastIndexByte(path, '.')
	return l.line(path[:max(i, 0)], path[i+1:])
}

// find returns, sorted by line, the occurrences of key in the tables whose
// path without indexes is path ("endpoint.interface").
func (l *locator) find(path, key string) []tableKey {
	var found []tableKey
	for k := range l.keys {
		if k.key == key && indexes.ReplaceAllString(k.table, "") == path {
			found = append(found, k)
		}
	}
	slices.SortFunc(found, func(a, b tableKey) int { return l.keys[a] - l.keys[b] })
	return found
}

func unquote(s string) string {
	if len(s) >= 2 && (s[0] == '"' || s[0] == '\'') && s[len(s)-1] == s[0] {
		return s[1 : len(s)-1]
	}
	return s
}
