package main

import (
	"bytes"
	"crypto/tls"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/qapi-az/qapi/appliance/globalconf"
	"github.com/qapi-az/qapi/appliance/ident"
	"github.com/qapi-az/qapi/appliance/keys"
	"github.com/qapi-az/qapi/appliance/manage"
)

// TestNoticesCommand runs 'qapi notices' against a management API served
// over TLS on loopback, as the security server serves it.
func TestNoticesCommand(t *testing.T) {
	store, err := keys.NewFileStore(filepath.Join(t.TempDir(), "keys"))
	if err != nil {
		t.Fatal(err)
	}
	owner := ident.Client{Instance: "AZ", MemberClass: "GOV", MemberCode: "1"}
	reg := owner
	reg.SubsystemCode = "REG"
	day := time.Date(2027, 3, 1, 0, 0, 0, 0, time.UTC)
	conf := globalconf.NewStatic(&globalconf.Conf{Instance: "AZ", Serial: 4,
		Issued: time.Now().Add(-time.Minute), Expires: time.Now().Add(time.Hour),
		Notices: []globalconf.Notice{{Kind: globalconf.NoticeDisconnect,
			Service: ident.Service{Client: reg, ServiceCode: "getCar"}, Effective: day,
			Text: "register retired"}}})
	dir := t.TempDir()
	m, err := manage.Open(manage.Options{Dir: dir, Keys: store, Conf: conf})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Configure(manage.Identity{Owner: owner, Code: "ss1", Address: "h:1",
		Clients: []ident.Client{owner, reg}}); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tc, token, err := m.APIListener("https://"+ln.Addr().String(), []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: m.Handler(token)}
	go hs.Serve(tls.NewListener(ln, tc))
	defer hs.Close()

	var out bytes.Buffer
	conn := filepath.Join(dir, "manage.json")
	if rc := runNotices([]string{"-conn", conn}, &out); rc != 0 {
		t.Fatalf("qapi notices exited %d", rc)
	}
	for _, want := range []string{"serial 4; notices: 1", "KIND", "disconnect",
		"2027-03-01T00:00:00Z", "AZ/GOV/1/REG/getCar", "yes", "register retired"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	if rc := runNotices([]string{"-conn", conn, "-json"}, &out); rc != 0 ||
		!strings.Contains(out.String(), `"ours": true`) {
		t.Errorf("qapi notices -json exited %d:\n%s", rc, out.String())
	}
	if rc := runNotices([]string{"-conn", filepath.Join(dir, "none.json")}, &out); rc != 1 {
		t.Errorf("qapi notices without a connection file exited %d, want 1", rc)
	}
}
