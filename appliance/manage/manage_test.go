package manage

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qapi-az/qapi/appliance/globalconf"
	"github.com/qapi-az/qapi/appliance/ident"
	"github.com/qapi-az/qapi/appliance/keys"
	"github.com/qapi-az/qapi/internal/testpki"
	"github.com/qapi-az/qapi/portal/wire"
)

var owner = ident.Client{Instance: "AZ", MemberClass: "GOV", MemberCode: "1"}

func open(t *testing.T) (*Manager, keys.Store) {
	t.Helper()
	store, err := keys.NewFileStore(filepath.Join(t.TempDir(), "keys"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := Open(Options{Dir: t.TempDir(), Keys: store})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Configure(Identity{Owner: owner, Code: "SS1",
		Address: "127.0.0.1:5500"}); err != nil {
		t.Fatal(err)
	}
	return m, store
}

func issue(t *testing.T, ca *testpki.CA, pub crypto.PublicKey, serial string,
	ku x509.KeyUsage, eku ...x509.ExtKeyUsage) []byte {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: serial, SerialNumber: serial},
		NotBefore:    time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: ku, ExtKeyUsage: eku,
	}, ca.Cert, pub, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestConfigureRefuses(t *testing.T) {
	m, _ := open(t)
	other := ident.Client{Instance: "AZ", MemberClass: "GOV", MemberCode: "2",
		SubsystemCode: "X"}
	tests := []struct {
		id   Identity
		want string
	}{
		{Identity{Owner: other, Code: "SS1", Address: "h:1"}, "must be a member"},
		{Identity{Owner: owner, Code: "S/1", Address: "h:1"}, "server code"},
		{Identity{Owner: owner, Code: "SS1", Address: "h"}, "host:port"},
		{Identity{Owner: owner, Code: "SS1", Address: "h:1", Clients: []ident.Client{other}},
			"is not the owner"},
	}
	for _, tt := range tests {
		if err := m.Configure(tt.id); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Configure(%+v) = %v, want %q", tt.id, err, tt.want)
		}
	}
}

// trusting makes m trust ca as the certification centre of a verified
// global configuration.
func trusting(m *Manager, ca *testpki.CA) {
	m.opts.Conf = globalconf.NewStatic(&globalconf.Conf{Instance: "AZ",
		Issued: time.Now().Add(-time.Minute), Expires: time.Now().Add(time.Hour),
		CAs: []globalconf.CA{{Name: "cc", Cert: ca.Cert.Raw}}})
}

func TestImportCertificateChecksKeyAndName(t *testing.T) {
	m, store := open(t)
	ca, _ := testpki.NewCA("cc")
	trusting(m, ca)
	signKey, _ := store.Signer(keys.Signing)
	authKey, _ := store.Signer(keys.Authentication)
	stranger, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	sig := x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment
	tls := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	tests := []struct {
		name string
		der  []byte
		want string // "" for success
	}{
		{"another key", issue(t, ca, &stranger.PublicKey, "AZ/GOV/1", sig),
			"certifies neither"},
		{"another member", issue(t, ca, signKey.Public(), "AZ/GOV/2", sig), "names"},
		{"signing without nonRepudiation", issue(t, ca, signKey.Public(), "AZ/GOV/1",
			x509.KeyUsageDigitalSignature), "nonRepudiation"},
		{"auth for another server", issue(t, ca, authKey.Public(), "AZ/GOV/1/SS2",
			x509.KeyUsageDigitalSignature, tls...), "names"},
		{"auth without clientAuth", issue(t, ca, authKey.Public(), "AZ/GOV/1/SS1",
			x509.KeyUsageDigitalSignature, x509.ExtKeyUsageServerAuth), "clientAuth"},
		{"signing", issue(t, ca, signKey.Public(), "AZ/GOV/1", sig), ""},
		{"auth", issue(t, ca, authKey.Public(), "AZ/GOV/1/SS1",
			x509.KeyUsageDigitalSignature, tls...), ""},
	}
	for _, tt := range tests {
		_, err := m.ImportCertificate(context.Background(), tt.der)
		if tt.want == "" && err != nil || tt.want != "" && (err == nil ||
			!strings.Contains(err.Error(), tt.want)) {
			t.Errorf("%s: ImportCertificate = %v, want %q", tt.name, err, tt.want)
		}
	}
	if _, err := m.AuthCertificate(); err != nil {
		t.Errorf("AuthCertificate after import: %v", err)
	}
	if st := m.Status(); st.AuthCert == nil || st.SigningCert == nil ||
		!strings.Contains(st.Next, "anchor") {
		t.Errorf("Status = %+v", st)
	}
}

func TestInstallAnchor(t *testing.T) {
	m, _ := open(t)
	ca, _ := testpki.NewCA("conf")
	good := globalconf.Anchor{Instance: "AZ", Certs: [][]byte{ca.Cert.Raw},
		ConfigURLs: []string{"http://portal.example:8080/globalconf/AZ"}}
	other := good
	other.Instance = "AZ-TEST"
	badURL := good
	badURL.ConfigURLs = []string{"http://portal.example/conf.json"}
	for _, tt := range []struct {
		a    globalconf.Anchor
		want string
	}{
		{other, "instance AZ-TEST"},
		{badURL, "does not end in"},
		{globalconf.Anchor{Instance: "AZ"}, "needs an instance"},
	} {
		b, _ := json.Marshal(tt.a)
		if _, err := m.InstallAnchor(b); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("InstallAnchor(%+v) = %v, want %q", tt.a, err, tt.want)
		}
	}
	b, _ := json.Marshal(good)
	if _, err := m.InstallAnchor(b); err != nil {
		t.Fatal(err)
	}
	if got := m.Status().PortalURL; got != "http://portal.example:8080" {
		t.Errorf("portal URL from the anchor = %q", got)
	}
	if _, err := globalconf.LoadAnchor(m.AnchorPath()); err != nil {
		t.Errorf("installed anchor does not load: %v", err)
	}

	// An owner of another instance than the anchor's is refused, and the
	// refusal leaves the registration as it was.
	testOwner := owner
	testOwner.Instance = "AZ-TEST"
	err := m.Configure(Identity{Owner: testOwner, Code: "SS1", Address: "h:1"})
	if err == nil || !strings.Contains(err.Error(), "anchor is for instance AZ") {
		t.Errorf("Configure(owner in AZ-TEST) = %v, want the anchor's instance named", err)
	}
	if st := m.Status(); st.Owner != owner || st.PortalURL != "http://portal.example:8080" {
		t.Errorf("after a refused Configure the state is %+v", st.State)
	}
}

func TestHandlerNeedsToken(t *testing.T) {
	m, _ := open(t)
	srv := httptest.NewServer(m.Handler("secret"))
	defer srv.Close()
	for token, want := range map[string]int{"": 401, "wrong": 401, "secret": 200} {
		req, _ := http.NewRequest("GET", srv.URL+"/api/status", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("token %q: HTTP %d, want %d", token, resp.StatusCode, want)
		}
	}
}

func TestHandlerRefusesLargeBodies(t *testing.T) {
	m, _ := open(t)
	srv := httptest.NewServer(m.Handler("secret"))
	defer srv.Close()
	big := strings.Repeat("A", MaxRequestBody+1)
	for path, body := range map[string]string{
		"/api/import":    big,
		"/api/anchor":    `{"instance":"` + big + `"}`,
		"/api/configure": `{"code":"` + big + `"}`,
	} {
		req, _ := http.NewRequest("POST", srv.URL+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer secret")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		err = wire.ReadAnswer(resp, "the management API", 1<<20, nil)
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge ||
			err == nil || !strings.Contains(err.Error(), "over 1 MiB") {
			t.Errorf("POST %s of %d bytes: HTTP %d, %v; want 413 saying the limit", path,
				len(body), resp.StatusCode, err)
		}
	}
}

// TestImportCertificateNeedsCentre: the portal's address may be plain
// HTTP, so a certificate that certifies our key and names us is still
// refused unless the certification centre of the configuration the anchor
// vouches for issued it (2.3, 4.1.2.5).
func TestImportCertificateNeedsCentre(t *testing.T) {
	ctx := context.Background()
	m, store := open(t)
	signKey, _ := store.Signer(keys.Signing)
	sig := x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment
	centre, _ := testpki.NewCA("Qapı certification centre")
	forger, _ := testpki.NewCA("Qapı certification centre")
	good := issue(t, centre, signKey.Public(), "AZ/GOV/1", sig)
	forged := issue(t, forger, signKey.Public(), "AZ/GOV/1", sig)

	_, err := m.ImportCertificate(ctx, good)
	if err == nil || !strings.Contains(err.Error(), "install the operator's configuration "+
		"anchor") {
		t.Fatalf("import without an anchor = %v, want to be told to install it", err)
	}

	// The configuration is served over plain HTTP; its signature is what
	// counts.
	signedBy := func(signer *testpki.CA, cas ...*testpki.CA) []byte {
		c := &globalconf.Conf{Instance: "AZ", Serial: 1, Issued: time.Now().Add(-time.Minute),
			Expires: time.Now().Add(time.Hour)}
		for _, ca := range cas {
			c.CAs = append(c.CAs, globalconf.CA{Name: "cc", Cert: ca.Cert.Raw})
		}
		b, err := globalconf.Sign(c, signer.Key, signer.Cert.Raw)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	confSigner, _ := testpki.NewCA("Qapı global configuration")
	var served atomic.Pointer[[]byte]
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(*served.Load())
	}))
	defer srv.Close()
	anchor, _ := json.Marshal(globalconf.Anchor{Instance: "AZ",
		Certs: [][]byte{confSigner.Cert.Raw}, ConfigURLs: []string{srv.URL + "/globalconf/AZ"}})
	if _, err := m.InstallAnchor(anchor); err != nil {
		t.Fatal(err)
	}

	for _, tt := range []struct {
		name   string
		conf   []byte
		cert   []byte
		want   string
		wantOK bool
	}{
		{"another centre's certificate", signedBy(confSigner, centre), forged,
			"not issued by a certification centre", false},
		{"a configuration the anchor does not vouch for", signedBy(forger, forger), forged,
			"not in the configuration anchor", false},
		{"the centre's certificate", signedBy(confSigner, centre), good, "", true},
	} {
		served.Store(&tt.conf)
		p, err := m.ImportCertificate(ctx, tt.cert)
		if tt.wantOK && (err != nil || p != keys.Signing) ||
			!tt.wantOK && (err == nil || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("%s: ImportCertificate = %q, %v; want %q", tt.name, p, err, tt.want)
		}
		if _, _, err := m.SigningCertificate(); (err == nil) != tt.wantOK {
			t.Errorf("%s: installed signing certificate: %v", tt.name, err)
		}
	}
}

// TestNoticesAPI: GET /api/notices lists the service notices of the
// global configuration (3.12, 3.14) and the disconnected services, the
// server's own services first.
func TestNoticesAPI(t *testing.T) {
	m, _ := open(t)
	other := ident.Client{Instance: "AZ", MemberClass: "GOV", MemberCode: "2",
		SubsystemCode: "REG"}
	svc := func(c ident.Client, code string) ident.Service {
		return ident.Service{Client: c, ServiceCode: code, Version: "v1"}
	}
	day := time.Date(2027, 3, 1, 0, 0, 0, 0, time.UTC)
	m.opts.Conf = globalconf.NewStatic(&globalconf.Conf{Instance: "AZ", Serial: 9,
		Issued: time.Now().Add(-time.Minute), Expires: time.Now().Add(time.Hour),
		Notices: []globalconf.Notice{
			{Kind: globalconf.NoticeEndOfLife, Service: svc(other, "getPerson"),
				Effective: day, Text: "use v2"},
			{Kind: globalconf.NoticeDisconnect, Service: svc(owner, "getCar"),
				Effective: day.AddDate(0, 1, 0), Text: "retired"},
		},
		Disconnected: []globalconf.Disconnected{{Service: svc(other, "oldQuery"),
			Since: day.AddDate(0, -1, 0)}},
	})
	srv := httptest.NewServer(m.Handler("secret"))
	defer srv.Close()
	req, _ := http.NewRequest("GET", srv.URL+"/api/notices", nil)
	req.Header.Set("Authorization", "Bearer secret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var got NoticeList
	if err := wire.ReadAnswer(resp, "the management API", 1<<20, &got); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	want := []ServiceNotice{
		{Kind: "disconnect", Service: svc(owner, "getCar"), Effective: day.AddDate(0, 1, 0),
			Text: "retired", Ours: true},
		{Kind: KindDisconnected, Service: svc(other, "oldQuery"),
			Effective: day.AddDate(0, -1, 0)},
		{Kind: "end-of-life", Service: svc(other, "getPerson"), Effective: day,
			Text: "use v2"},
	}
	if got.Serial != 9 || len(got.Notices) != len(want) {
		t.Fatalf("notices = %+v, want %+v", got, want)
	}
	for i := range want {
		g, w := got.Notices[i], want[i]
		if g.Kind != w.Kind || g.Service != w.Service || !g.Effective.Equal(w.Effective) ||
			g.Text != w.Text || g.Ours != w.Ours {
			t.Errorf("notice %d = %+v, want %+v", i, g, w)
		}
	}
}

// TestStatusShowsFaults: GET /api/status carries what Options.Faults
// returns at the moment of the request, and no faults field while there
// are none.
func TestStatusShowsFaults(t *testing.T) {
	store, err := keys.NewFileStore(filepath.Join(t.TempDir(), "keys"))
	if err != nil {
		t.Fatal(err)
	}
	var faults atomic.Pointer[[]string]
	m, err := Open(Options{Dir: t.TempDir(), Keys: store,
		Faults: func() []string {
			if f := faults.Load(); f != nil {
				return *f
			}
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(m.Handler("secret"))
	defer srv.Close()
	get := func() map[string]any {
		t.Helper()
		req, _ := http.NewRequest("GET", srv.URL+"/api/status", nil)
		req.Header.Set("Authorization", "Bearer secret")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var st map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
			t.Fatal(err)
		}
		return st
	}
	if st := get(); st["faults"] != nil {
		t.Errorf("faults %v with none reported", st["faults"])
	}
	want := "message log damaged: log.db: entry 3: hash mismatch"
	faults.Store(&[]string{want})
	st := get()
	got, _ := st["faults"].([]any)
	if len(got) != 1 || got[0] != want {
		t.Errorf("faults %v, want [%q]", st["faults"], want)
	}
}
