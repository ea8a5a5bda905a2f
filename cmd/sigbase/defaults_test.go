package main

import (
	"bytes"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The README's flag table states each default as sigbase serve has it
// (store.DefaultOptions, api.DefaultConfig): a changed default must change
// the table too.
func TestReadmeFlagTableMatchesDefaults(t *testing.T) {
	t.Parallel()
	var usage bytes.Buffer
	if _, err := parseServeFlags([]string{"-h"}, func(string) string { return "" }, &usage); err == nil {
		t.Fatal("serve -h: no flag.ErrHelp")
	}
	defaults := map[string]string{}
	for _, m := range regexp.MustCompile("(?m)^  -(\\S+)(?: \\S+)?\n(?:    \t.*\n)*?    \t.*\\(default (.*)\\)$").FindAllStringSubmatch(usage.String(), -1) {
		defaults[m[1]] = strings.Trim(m[2], `"`)
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| (`--[^|]+) \\| ([^|]*) \\|")
	checked := 0
	for _, m := range row.FindAllStringSubmatch(string(readme), -1) {
		flags := regexp.MustCompile("`--([a-z-]+)`").FindAllStringSubmatch(m[1], -1)
		values := regexp.MustCompile("`([^`]*)`").FindAllStringSubmatch(m[2], -1)
		if len(values) == 0 {
			continue // no default stated
		}
		if len(values) != len(flags) {
			t.Errorf("README row %q: %d flags, %d defaults", m[0], len(flags), len(values))
			continue
		}
		for i, f := range flags {
			got, ok := defaults[f[1]]
			if !ok {
				t.Errorf("README states a default for --%s, which serve -h gives none", f[1])
				continue
			}
			if !sameDefault(values[i][1], got) {
				t.Errorf("README: --%s defaults to %s; serve -h says %s", f[1], values[i][1], got)
			}
			checked++
		}
	}
	if checked < 15 {
		t.Fatalf("checked %d defaults: the README table or serve -h changed shape", checked)
	}
}

func sameDefault(readme, flag string) bool {
	if readme == flag {
		return true
	}
	if a, err := time.ParseDuration(readme); err == nil {
		b, err := time.ParseDuration(flag)
		return err == nil && a == b
	}
	var a, b sizeFlag
	return a.Set(readme) == nil && b.Set(flag) == nil && a == b
}
