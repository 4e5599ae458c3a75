package main

import (
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
)

func cmdVersion(args []string) error {
	fs := newFlagSet("version", "")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		bi = nil
	}
	_, err := fmt.Fprint(os.Stdout, versionText(version, bi))
	return err
}

// versionText is the output of `uswitch version`: the version, the Go
// toolchain and platform, and the VCS revision when the build recorded it.
func versionText(version string, bi *debug.BuildInfo) string {
	var b strings.Builder
	fmt.Fprintf(&b, "uswitch %s\n", version)
	goVersion := runtime.Version()
	if bi != nil && bi.GoVersion != "" {
		goVersion = bi.GoVersion
	}
	fmt.Fprintf(&b, "go: %s %s/%s\n", goVersion, runtime.GOOS, runtime.GOARCH)
	var rev, when, modified string
	if bi != nil {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.time":
				when = s.Value
			case "vcs.modified":
				modified = s.Value
			}
		}
	}
	switch {
	case rev == "":
		b.WriteString("revision: unknown (built without VCS information)\n")
	default:
		fmt.Fprintf(&b, "revision: %s", rev)
		if when != "" {
			fmt.Fprintf(&b, " (%s)", when)
		}
		if modified == "true" {
			b.WriteString(" with local changes")
		}
		b.WriteString("\n")
	}
	return b.String()
}
