package main

import "testing"

func TestParseSize(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
	}{
		{"2G", 2 << 30},
		{"1536M", 1536 << 20},
		{"4096K", 4 << 20},
		{"1073741824", 1 << 30},
	} {
		got, err := parseSize(c.in)
		if err != nil || got != c.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", c.in, got, err, c.want)
		}
	}
	for _, in := range []string{"", "G", "2T", "-1G", "0", "1.5G", "2 G"} {
		if got, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) = %d; want an error", in, got)
		}
	}
}

// TestImageBuildUsage checks that a malformed command line is refused
// with exit code 2 before anything is built.
func TestImageBuildUsage(t *testing.T) {
	for _, args := range [][]string{
		nil,
		{"flash"},
		{"build", "-size", "2T"},
		{"build", "-no-such-flag"},
	} {
		if got := runImage(args); got != 2 {
			t.Errorf("qapi image %q: exit code %d, want 2", args, got)
		}
	}
}
