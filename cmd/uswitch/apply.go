package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/uswitch-dev/uswitch/live"
)

func cmdApply(args []string) error { return apply(context.Background(), args, os.Stdout) }

// apply is `uswitch apply --config FILE`: POST /v1/apply with the file, to
// the instance the file names (or --control's), and print what changed.
func apply(ctx context.Context, args []string, w io.Writer) error {
	fs := newFlagSet("apply", applySynopsis)
	var f inspectFlags
	f.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if f.config == "" {
		return flagError(fs, errors.New("--config FILE is required"))
	}
	data, err := os.ReadFile(f.config)
	if err != nil {
		return fmt.Errorf("apply: %w", err)
	}
	path := f.config
	if f.control != "" {
		f.config = "" // --control names the instance; the file is what is applied
	}
	c, err := f.client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, changeTimeout)
	defer cancel()
	var changes live.Changes
	if err := c.Post(ctx, "/v1/apply", "application/toml", data, &changes); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if f.output == formatJSON {
		return writeJSON(w, changes)
	}
	return writeChanges(w, changes)
}

// writeChanges prints one change a line, "+ endpoint web", or that there
// was none.
func writeChanges(w io.Writer, changes live.Changes) error {
	if len(changes) == 0 {
		_, err := fmt.Fprintln(w, "no changes")
		return err
	}
	for _, c := range changes {
		if _, err := fmt.Fprintln(w, c.String()); err != nil {
			return err
		}
	}
	return nil
}

// reloadOnHUP applies the file at path to inst on every SIGHUP (from hup) until ctx
// is done, logging what changed or why the file was refused.
func reloadOnHUP(ctx context.Context, hup <-chan os.Signal, inst *live.Instance, path string, log *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		}
		if path == "" {
			log.Warn("SIGHUP: no --config to read again (the embedded default topology runs)")
			continue
		}
		data, err := os.ReadFile(path)
		if err != nil {
			log.Error("SIGHUP: cannot read the config; nothing changed", "config", path, "err", err)
			continue
		}
		changes, err := inst.Apply(ctx, data)
		if err != nil {
			log.Error("SIGHUP: config refused or not fully applied", "config", path, "err", err)
			continue
		}
		for _, c := range changes {
			log.Info("applied", "change", c.String())
		}
		log.Info("SIGHUP: config applied", "config", path, "changes", len(changes))
	}
}
