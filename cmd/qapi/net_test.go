package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestNetCheck: `qapi net check` accepts a valid configuration and names
// the wrong field of a bad one, touching nothing (clause 4.1.2.2).
func TestNetCheck(t *testing.T) {
	const good = `{
	  "internal": {"name": "eth1", "addresses": ["198.51.100.10/24"]},
	  "external": {"name": "eth0", "addresses": ["192.0.2.10/24"], "gateway": "192.0.2.1"},
	  "firewall": {"tlsPort": 5500, "clientPorts": [8080], "consolePort": 4000}
	}`
	for _, tt := range []struct {
		name, config string
		code         int
		want         string // in stdout for code 0, else in stderr
	}{
		{"valid", good, 0, "configuration is valid"},
		{"bad MTU", strings.Replace(good, `"name": "eth0",`, `"name": "eth0", "mtu": 100,`, 1),
			1, "external.mtu: 100 is outside 1280-9216"},
		{"misspelt field", strings.Replace(good, `"gateway"`, `"gatway"`, 1),
			1, `unknown field "gatway"`},
		{"DHCP outside", strings.Replace(good, `"name": "eth0",`, `"name": "eth0", "dhcp": true,`,
			1), 1, "external.dhcp"},
	} {
		path := filepath.Join(t.TempDir(), "net.json")
		if err := os.WriteFile(path, []byte(tt.config), 0o644); err != nil {
			t.Fatal(err)
		}
		code, out, errs := captureOutput(t, func() int { return runNet([]string{"check", path}) })
		got := errs
		if tt.code == 0 {
			got = out
		}
		if code != tt.code || !strings.Contains(got, tt.want) {
			t.Errorf("%s: qapi net check = %d, stdout %q, stderr %q; want %d and %q", tt.name,
				code, out, errs, tt.code, tt.want)
		}
	}
	if code, _, _ := captureOutput(t, func() int { return runNet([]string{"check"}) }); code != 2 {
		t.Errorf("qapi net check without a file = %d, want 2", code)
	}
}
