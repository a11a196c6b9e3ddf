package server_test

import (
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/qapi-az/qapi/appliance/globalconf"
	"github.com/qapi-az/qapi/appliance/server"
	"github.com/qapi-az/qapi/internal/testpki"
)

// New reports a missing certificate as an error and closes what it opened;
// the appliance's server waits for registration on exactly this error.
func TestNewRefusesMissingCertificate(t *testing.T) {
	ca := must[*testpki.CA](t)(testpki.NewCA("test CA"))
	auth := must[*testpki.Cert](t)(ca.IssueAuth(clientMember, "ss1"))
	dir := t.TempDir()
	cfg := &server.Config{
		Identity:   server.Identity{Member: clientMember.String(), ServerCode: "ss1"},
		Listen:     server.Listen{ClientHTTP: "127.0.0.1:0", Server: "127.0.0.1:0"},
		TLS:        server.TLSFiles{AuthCert: "auth.pem", SigningCert: "sign.pem"},
		KeyStore:   server.KeyStoreDev,
		KeyDir:     "keys",
		MessageLog: "messagelog.db",
		ConfigDB:   "conf.db",
		Timestamps: server.TimestampConfig{Off: true},
	}
	path := filepath.Join(dir, "qapi-server.json")
	if err := os.WriteFile(path, must[[]byte](t)(json.Marshal(cfg)), 0o600); err != nil {
		t.Fatal(err)
	}
	loaded := must[*server.Config](t)(server.LoadConfig(path))
	secret := make([]byte, 32)
	rand.Read(secret)
	opts := server.Options{Keys: &memKeys{sign: auth.Key, auth: auth.Key, secret: secret},
		Source: globalconf.NewStatic(nil)}

	_, err := server.New(loaded, opts)
	if err == nil || !strings.Contains(err.Error(), "sign.pem") {
		t.Fatalf("New without sign.pem = %v, want an error naming the file", err)
	}
	// The stores were closed: a second New opens the same files at once.
	_, err = server.New(loaded, opts)
	if err == nil || !strings.Contains(err.Error(), "sign.pem") {
		t.Fatalf("second New = %v, want the same refusal", err)
	}
}
