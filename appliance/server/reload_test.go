package server_test

import (
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qapi-az/qapi/appliance/globalconf"
	"github.com/qapi-az/qapi/appliance/ident"
	"github.com/qapi-az/qapi/appliance/server"
	"github.com/qapi-az/qapi/appliance/soap"
	"github.com/qapi-az/qapi/internal/testpki"
)

// TestReloadGlobalConf runs a server on configuration files and replaces
// the global configuration file under it.
func TestReloadGlobalConf(t *testing.T) {
	ca := must[*testpki.CA](t)(testpki.NewCA("Qapı test CA"))
	op := must[*testpki.Cert](t)(ca.IssueSigning(ident.Client{Instance: "AZ",
		MemberClass: "GOV", MemberCode: "OPERATOR"}))
	auth := must[*testpki.Cert](t)(ca.IssueAuth(providerMember, "ss-p"))
	sig := must[*testpki.Cert](t)(ca.IssueSigning(providerMember))
	dir := t.TempDir()
	writePEM(t, filepath.Join(dir, "auth.pem"), auth.Cert)
	writePEM(t, filepath.Join(dir, "sign.pem"), sig.Cert)
	anchor := must[[]byte](t)(json.Marshal(globalconf.Anchor{Instance: "AZ",
		Certs: [][]byte{op.Cert.Raw}}))
	if err := os.WriteFile(filepath.Join(dir, "anchor.json"), anchor, 0o600); err != nil {
		t.Fatal(err)
	}
	gcPath := filepath.Join(dir, "globalconf.json")
	publish := func(serial uint64, members ...string) {
		t.Helper()
		now := time.Now()
		c := &globalconf.Conf{Instance: "AZ", Serial: serial, Issued: now.Add(-time.Hour),
			Expires: now.Add(time.Hour)}
		for _, m := range members {
			c.Members = append(c.Members, globalconf.Member{ID: ident.Client{Instance: "AZ",
				MemberClass: "GOV", MemberCode: m}})
		}
		b := must[[]byte](t)(globalconf.Sign(c, op.Key, op.Cert.Raw))
		if err := os.WriteFile(gcPath, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	publish(1, "1001")

	cfg := &server.Config{
		Identity: server.Identity{Member: providerMember.String(), ServerCode: "ss-p"},
		Listen:   server.Listen{ClientHTTP: "127.0.0.1:0"},
		TLS:      server.TLSFiles{AuthCert: "auth.pem", SigningCert: "sign.pem"},
		KeyDir:   "keys", Anchor: "anchor.json", GlobalConf: "globalconf.json",
		MessageLog: "log.db", ConfigDB: "conf.db",
	}
	cfgPath := filepath.Join(dir, "qapi-server.json")
	if err := os.WriteFile(cfgPath, must[[]byte](t)(json.Marshal(cfg)), 0o600); err != nil {
		t.Fatal(err)
	}
	secret := make([]byte, 32)
	rand.Read(secret)
	srv := must[*server.Server](t)(server.New(must[*server.Config](t)(
		server.LoadConfig(cfgPath)), server.Options{Keys: &memKeys{sign: sig.Key,
		auth: auth.Key, secret: secret}}))
	t.Cleanup(func() { srv.Shutdown(t.Context()) })

	members := func() string {
		rr := httptest.NewRecorder()
		srv.ClientProxy().ServeHTTP(rr, httptest.NewRequest("GET", "/listClients", nil))
		return rr.Body.String()
	}
	if !strings.Contains(members(), ">1001<") || strings.Contains(members(), ">1002<") {
		t.Fatalf("first version not in use: %s", members())
	}

	publish(2, "1001", "1002")
	if took, err := srv.ReloadGlobalConf(); !took || err != nil {
		t.Fatalf("ReloadGlobalConf of serial 2 = %v, %v", took, err)
	}
	if !strings.Contains(members(), ">1002<") {
		t.Errorf("serial 2 not in use: %s", members())
	}

	publish(1, "1001")
	if took, err := srv.ReloadGlobalConf(); took || err == nil {
		t.Errorf("an older serial was taken (%v, %v)", took, err)
	}
	if err := os.WriteFile(gcPath, []byte(strings.Replace(string(must[[]byte](t)(
		os.ReadFile(gcPath))), `"content": "`, `"content": "AAAA`, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if took, err := srv.ReloadGlobalConf(); took || err == nil {
		t.Errorf("a tampered file was taken (%v, %v)", took, err)
	}
	if !strings.Contains(members(), ">1002<") {
		t.Errorf("serial 2 not kept after refused reloads: %s", members())
	}
}

// TestFetchGlobalConf runs a server whose anchor names a configuration URL:
// it fetches the configuration from there, keeps it in the globalConf file,
// and fetches again on ReloadGlobalConf.
func TestFetchGlobalConf(t *testing.T) {
	ca := must[*testpki.CA](t)(testpki.NewCA("Qapı test CA"))
	op := must[*testpki.Cert](t)(ca.IssueSigning(ident.Client{Instance: "AZ",
		MemberClass: "GOV", MemberCode: "OPERATOR"}))
	auth := must[*testpki.Cert](t)(ca.IssueAuth(providerMember, "ss-p"))
	sig := must[*testpki.Cert](t)(ca.IssueSigning(providerMember))

	var published atomic.Pointer[[]byte]
	publish := func(serial uint64, members ...string) {
		t.Helper()
		now := time.Now()
		c := &globalconf.Conf{Instance: "AZ", Serial: serial, Issued: now.Add(-time.Hour),
			Expires: now.Add(time.Hour)}
		for _, m := range members {
			c.Members = append(c.Members, globalconf.Member{ID: ident.Client{Instance: "AZ",
				MemberClass: "GOV", MemberCode: m}})
		}
		b := must[[]byte](t)(globalconf.Sign(c, op.Key, op.Cert.Raw))
		published.Store(&b)
	}
	publish(1, "1001")
	portal := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Write(*published.Load())
	}))
	defer portal.Close()

	dir := t.TempDir()
	writePEM(t, filepath.Join(dir, "auth.pem"), auth.Cert)
	writePEM(t, filepath.Join(dir, "sign.pem"), sig.Cert)
	anchor := must[[]byte](t)(json.Marshal(globalconf.Anchor{Instance: "AZ",
		ConfigURLs: []string{portal.URL}, Certs: [][]byte{op.Cert.Raw}}))
	if err := os.WriteFile(filepath.Join(dir, "anchor.json"), anchor, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := &server.Config{
		Identity: server.Identity{Member: providerMember.String(), ServerCode: "ss-p"},
		Listen:   server.Listen{ClientHTTP: "127.0.0.1:0"},
		TLS:      server.TLSFiles{AuthCert: "auth.pem", SigningCert: "sign.pem"},
		KeyDir:   "keys", Anchor: "anchor.json", GlobalConf: "globalconf.json",
		MessageLog: "log.db", ConfigDB: "conf.db",
	}
	cfgPath := filepath.Join(dir, "qapi-server.json")
	if err := os.WriteFile(cfgPath, must[[]byte](t)(json.Marshal(cfg)), 0o600); err != nil {
		t.Fatal(err)
	}
	secret := make([]byte, 32)
	rand.Read(secret)
	srv := must[*server.Server](t)(server.New(must[*server.Config](t)(
		server.LoadConfig(cfgPath)), server.Options{Keys: &memKeys{sign: sig.Key,
		auth: auth.Key, secret: secret}}))
	t.Cleanup(func() { srv.Shutdown(t.Context()) })
	members := func() string {
		rr := httptest.NewRecorder()
		srv.ClientProxy().ServeHTTP(rr, httptest.NewRequest("GET", "/listClients", nil))
		return rr.Body.String()
	}
	if !strings.Contains(members(), soap.CodeStaleConf) {
		t.Errorf("before the first fetch: %s", members())
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	// Start fetches at once; wait for it rather than for a fixed time.
	for deadline := time.Now().Add(20 * time.Second); !strings.Contains(members(),
		">1001<"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no configuration fetched: %s", members())
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "globalconf.json")); err != nil {
		t.Errorf("the fetched configuration is not kept: %v", err)
	}
	publish(2, "1001", "1002")
	if took, err := srv.ReloadGlobalConf(); !took || err != nil {
		t.Fatalf("ReloadGlobalConf = %v, %v", took, err)
	}
	if !strings.Contains(members(), ">1002<") {
		t.Errorf("serial 2 not in use: %s", members())
	}
}
