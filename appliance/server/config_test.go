package server_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/qapi-az/qapi/appliance/server"
)

const minimal = `{
  "identity": {"member": "AZ/GOV/1001", "serverCode": "ss1", "clients": ["AZ/GOV/1001/EDR"]},
  "listen": {"server": "127.0.0.1:5500"},
  "tls": {"authCert": "auth.pem", "signingCert": "sign.pem"},
  "keyDir": "keys", "anchor": "anchor.json", "globalConf": "gc.json",
  "messageLog": "log.db", "configDB": "conf.db"
  %s
}`

func TestLoadConfig(t *testing.T) {
	for _, tt := range []struct {
		name  string
		extra string // appended inside the object, or a replacement of the whole
		want  string // part of the error; "" for success
	}{
		{"minimal", "", ""},
		{"unknown field", `, "listen2": {}`, "unknown field"},
		{"member names a subsystem", "REPLACE:AZ/GOV/1001/EDR", "names a subsystem"},
		{"service of a client not served", `, "services": [{"provider": "AZ/GOV/1002/X",
			"url": "http://127.0.0.1:1/"}]`, "not in identity.clients"},
		{"service URL not http", `, "services": [{"provider": "AZ/GOV/1001/EDR",
			"url": "ftp://x/"}]`, "not an http or https URL"},
		{"bad access right subject", `, "accessRights": [{"service":
			"AZ/GOV/1001/EDR/getPerson", "subject": "user:x"}]`, "subject kind"},
		{"HTTPS without certificate", `, "listen": {"clientHTTPS": "127.0.0.1:8443"}`,
			"needs tls.clientHTTPSCert"},
		{"bad duration", `, "limits": {"timeout": "soon"}`, "invalid duration"},
		{"bad log level", `, "logLevel": "loud"`, "logLevel"},
		{"short certificate hash", `, "isCerts": [{"client": "AZ/GOV/1001/EDR",
			"certSHA256": "abcd"}]`, "64 hex digits"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			text := strings.Replace(minimal, "%s", tt.extra, 1)
			if r, ok := strings.CutPrefix(tt.extra, "REPLACE:"); ok {
				text = strings.Replace(strings.Replace(minimal, "%s", "", 1),
					`"member": "AZ/GOV/1001"`, `"member": "`+r+`"`, 1)
			}
			path := filepath.Join(t.TempDir(), "qapi-server.json")
			if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg, err := server.LoadConfig(path)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("LoadConfig: %v", err)
				}
				if cfg.Limits.MaxRequestBytes != 10240 ||
					time.Duration(cfg.Limits.Timeout) != 30*time.Second ||
					time.Duration(cfg.Limits.ReplayWindow) != 5*time.Minute ||
					cfg.LogLevel != "info" {
					t.Errorf("defaults not applied: %+v", cfg.Limits)
				}
				if got := cfg.KeyDirPath(); got != filepath.Join(filepath.Dir(path), "keys") {
					t.Errorf("keyDir not resolved against the file's folder: %s", got)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("LoadConfig error = %v, want it to mention %q", err, tt.want)
			}
		})
	}
}
