package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// mdLink is a markdown link's target: [text](target).
var mdLink = regexp.MustCompile(`\]\(([^)\s]+)\)`)

// TestDocLinks: every link of the README and of docs/ that is not a web
// address names a file or folder of the repository, and none leads out of
// it (the repository carries its own documentation).
func TestDocLinks(t *testing.T) {
	root, err := filepath.Abs("../..")
	require.NoError(t, err)
	docs, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	require.NoError(t, err)
	require.NotEmpty(t, docs, "no docs/*.md")
	for _, doc := range append([]string{filepath.Join(root, "README.md")}, docs...) {
		text, err := os.ReadFile(doc)
		require.NoError(t, err)
		rel, _ := filepath.Rel(root, doc)
		for _, m := range mdLink.FindAllStringSubmatch(string(text), -1) {
			target := m[1]
			if strings.HasPrefix(target, "https://") || strings.HasPrefix(target, "http://") || strings.HasPrefix(target, "#") {
				continue
			}
			target, _, _ = strings.Cut(target, "#")
			path := filepath.Clean(filepath.Join(filepath.Dir(doc), target))
			inside, err := filepath.Rel(root, path)
			require.NoError(t, err)
			require.False(t, inside == ".." || strings.HasPrefix(inside, "../"), "%s links out of the repository: %s", rel, m[1])
			_, err = os.Stat(path)
			require.NoError(t, err, "%s links to %s, which does not exist", rel, m[1])
		}
	}
}
