package main

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/qapi-az/qapi/appliance/globalconf"
	"github.com/qapi-az/qapi/appliance/ident"
	"github.com/qapi-az/qapi/appliance/keys"
	"github.com/qapi-az/qapi/appliance/server"
	"github.com/qapi-az/qapi/internal/loopback"
	"github.com/qapi-az/qapi/internal/sampleis"
	"github.com/qapi-az/qapi/internal/testpki"
)

type options struct {
	clients      int
	duration     time.Duration
	rate         int
	rateDuration time.Duration
	size         int
	bin          string
	cpuProfile   string
	keep         bool
	dir          string
	// serverLogLevel is the servers' logLevel; at info they log every
	// exchange.
	serverLogLevel string
}

var (
	providerMember = ident.Client{Instance: "AZ", MemberClass: "GOV", MemberCode: "1001"}
	provider       = ident.Client{Instance: "AZ", MemberClass: "GOV", MemberCode: "1001",
		SubsystemCode: "EDR"}
	clientMember = ident.Client{Instance: "AZ", MemberClass: "GOV", MemberCode: "2002"}
	client       = ident.Client{Instance: "AZ", MemberClass: "GOV", MemberCode: "2002",
		SubsystemCode: "POLICE"}
	service = ident.Service{Client: provider, ServiceCode: sampleis.CodeSearchPersons}
)

// buildPrograms builds qapi-server and qapi-sampleis into dir.
func buildPrograms(dir string) error {
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return fmt.Errorf("go env GOMOD: %w", err)
	}
	cmd := exec.Command("go", "build", "-o", dir+"/", "./cmd/qapi-server",
		"./cmd/qapi-sampleis")
	cmd.Dir = filepath.Dir(strings.TrimSpace(string(gomod)))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build (run qapi-bench from the repository root, or give "+
			"-bin): %w", err)
	}
	return nil
}

func writeFile(path string, data []byte) error { return os.WriteFile(path, data, 0o600) }

func certPEM(certs ...*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

// writeKey puts a testpki key where a keys.FileStore in dir reads it.
func writeKey(dir string, p keys.Purpose, c *testpki.Cert) error {
	der, err := x509.MarshalPKCS8PrivateKey(c.Key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return writeFile(filepath.Join(dir, string(p)+".key"),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}

// node is one security server to start.
type node struct {
	dir        string
	member     ident.Client
	code       string
	clients    []ident.Client
	auth, sign *testpki.Cert
	clientAddr string // client proxy HTTP
	serverAddr string // server proxy
}

// setup writes the PKI, the global configuration and both servers'
// configurations under work, and returns the two nodes and the register's
// address.
func setup(work, logLevel string) (c, p *node, isAddr string, err error) {
	ca, err := testpki.NewCA("Qapı bench CA")
	if err != nil {
		return nil, nil, "", err
	}
	if isAddr, err = loopback.FreeAddr(); err != nil {
		return nil, nil, "", err
	}
	c = &node{dir: filepath.Join(work, "client"), member: clientMember, code: "ss-c",
		clients: []ident.Client{client}}
	p = &node{dir: filepath.Join(work, "provider"), member: providerMember, code: "ss-p",
		clients: []ident.Client{provider}}
	for _, n := range []*node{c, p} {
		if n.auth, err = ca.IssueAuth(n.member, n.code); err != nil {
			return nil, nil, "", err
		}
		if n.sign, err = ca.IssueSigning(n.member); err != nil {
			return nil, nil, "", err
		}
		if n.clientAddr, err = loopback.FreeAddr(); err != nil {
			return nil, nil, "", err
		}
		if n.serverAddr, err = loopback.FreeAddr(); err != nil {
			return nil, nil, "", err
		}
	}

	op, err := ca.IssueSigning(ident.Client{Instance: "AZ", MemberClass: "GOV",
		MemberCode: "OPERATOR"})
	if err != nil {
		return nil, nil, "", err
	}
	now := time.Now()
	conf := &globalconf.Conf{
		Instance: "AZ", Serial: 1, Issued: now.Add(-time.Hour), Expires: now.Add(24 * time.Hour),
		Members: []globalconf.Member{
			{ID: providerMember, Name: "Ədliyyə Nazirliyi",
				Subsystems: []globalconf.Subsystem{{Code: "EDR"}}},
			{ID: clientMember, Name: "Daxili İşlər Nazirliyi",
				Subsystems: []globalconf.Subsystem{{Code: "POLICE"}}},
		},
		CAs: []globalconf.CA{{Name: "bench", Cert: ca.Cert.Raw}},
	}
	for _, n := range []*node{c, p} {
		conf.SecurityServers = append(conf.SecurityServers, globalconf.SecurityServer{
			Owner: n.member, Code: n.code, Address: n.serverAddr, Clients: n.clients,
			AuthCertHashes: []string{globalconf.CertHash(n.auth.Cert.Raw)}})
	}
	signed, err := globalconf.Sign(conf, op.Key, op.Cert.Raw)
	if err != nil {
		return nil, nil, "", err
	}
	anchor, err := json.Marshal(globalconf.Anchor{Instance: "AZ",
		Certs: [][]byte{op.Cert.Raw}})
	if err != nil {
		return nil, nil, "", err
	}

	for _, n := range []*node{c, p} {
		keyDir := filepath.Join(n.dir, "keys")
		if err := writeKey(keyDir, keys.Signing, n.sign); err != nil {
			return nil, nil, "", err
		}
		if err := writeKey(keyDir, keys.Authentication, n.auth); err != nil {
			return nil, nil, "", err
		}
		secret := make([]byte, 32)
		rand.Read(secret)
		if err := writeFile(filepath.Join(keyDir, string(keys.LogEncryption)+".secret"),
			pem.EncodeToMemory(&pem.Block{Type: "QAPI SECRET KEY", Bytes: secret})); err != nil {
			return nil, nil, "", err
		}
		for name, data := range map[string][]byte{"auth.pem": certPEM(n.auth.Cert),
			"sign.pem": certPEM(n.sign.Cert), "anchor.json": anchor,
			"globalconf.json": signed} {
			if err := writeFile(filepath.Join(n.dir, name), data); err != nil {
				return nil, nil, "", err
			}
		}
		cfg := server.Config{
			Identity: server.Identity{Member: n.member.String(), ServerCode: n.code},
			Listen:   server.Listen{ClientHTTP: n.clientAddr, Server: n.serverAddr},
			TLS:      server.TLSFiles{AuthCert: "auth.pem", SigningCert: "sign.pem"},
			KeyStore: server.KeyStoreDev, KeyDir: "keys",
			Anchor: "anchor.json", GlobalConf: "globalconf.json",
			MessageLog: "messagelog.db", ConfigDB: "conf.db", LogLevel: logLevel,
		}
		for _, cl := range n.clients {
			cfg.Identity.Clients = append(cfg.Identity.Clients, cl.String())
		}
		if n == p {
			cfg.Services = []server.ServiceConfig{{Provider: provider.String(),
				URL: "http://" + isAddr + "/", WSDL: "http://" + isAddr + "/?wsdl"}}
			cfg.AccessRights = []server.AccessRight{{Service: service.String(),
				Subject: "subsystem:" + client.String()}}
		}
		b, err := json.MarshalIndent(cfg, "", "  ")
		if err != nil {
			return nil, nil, "", err
		}
		if err := writeFile(filepath.Join(n.dir, "qapi-server.json"), b); err != nil {
			return nil, nil, "", err
		}
	}
	return c, p, isAddr, nil
}
