package main

import (
	"fmt"
	"io"
	"log/slog"

	"github.com/uswitch-dev/uswitch/config"
	"github.com/uswitch-dev/uswitch/nat"
)

// writeCompiledRules prints, after the resolved plan of `uswitch check`,
// the rule set the plan compiles to (its [[rule]] entries, then the
// built-ins), one rule a line as iptables-save would, without counters.
func writeCompiledRules(w io.Writer, plan *config.Plan) error {
	rules, err := nat.Compile(plan, slog.New(slog.DiscardHandler))
	if err != nil {
		return fmt.Errorf("compiling rules: %w", err)
	}
	_, err = fmt.Fprintf(w, "\nCOMPILED RULES\n%s", rules.Dump())
	return err
}
