package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/uswitch-dev/uswitch/config"
	"github.com/uswitch-dev/uswitch/policy"
)

// writeCompiledRules prints, after the resolved plan of `uswitch check`,
// the rule set the plan compiles to (its [[rule]] entries, then the
// built-ins), one rule a line as iptables-save would, without counters:
// what the datapath hands nat, from the same policy.Compile.
func writeCompiledRules(w io.Writer, plan *config.Plan) error {
	rules, err := policy.Compile(plan)
	if err != nil {
		return fmt.Errorf("compiling rules: %w", err)
	}
	var b strings.Builder
	b.WriteString("\nCOMPILED RULES\n")
	for i := range rules {
		b.WriteString(rules[i].String())
		b.WriteByte('\n')
	}
	_, err = io.WriteString(w, b.String())
	return err
}
