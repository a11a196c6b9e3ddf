package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"strings"
	"testing"

	"github.com/qapi-az/qapi/appliance/globalconf"
	"github.com/qapi-az/qapi/appliance/ident"
	"github.com/qapi-az/qapi/appliance/soap"
)

func TestSOAPAddressRewrite(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{`<soap:address location="http://10.0.0.9:8090/"/>`,
			`<soap:address location="X"/>`},
		{`<wsdlsoap:address   location="https://is/x?a=1"/>`,
			`<wsdlsoap:address   location="X"/>`},
		{`<address location="http://is/"/>`, `<address location="X"/>`},
		{`<soap:operation soapAction="http://is/"/>`, `<soap:operation soapAction="http://is/"/>`},
	} {
		got := string(soapAddress.ReplaceAll([]byte(tt.in), []byte("${1}X${2}")))
		if got != tt.want {
			t.Errorf("rewrite %q = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestBodyText(t *testing.T) {
	h := soap.Header{Client: ident.Client{Instance: "AZ", MemberClass: "GOV", MemberCode: "1"},
		Service: ident.Service{Client: ident.Client{Instance: "AZ", MemberClass: "GOV",
			MemberCode: "2"}, ServiceCode: MetaGetWsdl}, ID: "x", ProtocolVersion: "4.0"}
	raw := soap.NewRequest(h, []byte(
		"<xrd:getWsdl><xrd:serviceCode> getPerson </xrd:serviceCode></xrd:getWsdl>"))
	// The header's id:serviceCode (getWsdl) must not be taken for the body's.
	if got := bodyText(raw, "serviceCode"); got != " getPerson " {
		t.Errorf("bodyText = %q", got)
	}
	if got := bodyText(raw, "serviceVersion"); got != "" {
		t.Errorf("bodyText of an absent element = %q", got)
	}
}

func TestCheckIS(t *testing.T) {
	police := ident.Client{Instance: "AZ", MemberClass: "GOV", MemberCode: "2",
		SubsystemCode: "POLICE"}
	other := police
	other.SubsystemCode = "TAX"
	cert := &x509.Certificate{Raw: []byte("certificate of the police IS")}
	pinned := map[string]ident.Client{globalconf.CertHash(cert.Raw): police}
	withCert := &http.Request{TLS: &tls.ConnectionState{
		PeerCertificates: []*x509.Certificate{cert}}}
	plain := &http.Request{}
	for _, tt := range []struct {
		name   string
		pins   map[string]ident.Client
		r      *http.Request
		client ident.Client
		ok     bool
	}{
		{"no pins: anyone", nil, plain, police, true},
		{"pinned client with its certificate", pinned, withCert, police, true},
		{"pinned client without certificate", pinned, plain, police, false},
		{"pinned certificate for another client", pinned, withCert, other, false},
		{"unpinned client over plain HTTP", pinned, plain, other, true},
	} {
		p := &ClientProxy{cfg: Config{ISCerts: tt.pins}}
		f := p.checkIS(tt.r, tt.client)
		if (f == nil) != tt.ok {
			t.Errorf("%s: checkIS = %v, want ok=%v", tt.name, f, tt.ok)
		}
		if f != nil && f.Code != soap.CodeAccessDenied {
			t.Errorf("%s: fault code %s", tt.name, f.Code)
		}
	}
}

func TestProviderServers(t *testing.T) {
	m1 := ident.Client{Instance: "AZ", MemberClass: "GOV", MemberCode: "1"}
	m2 := ident.Client{Instance: "AZ", MemberClass: "GOV", MemberCode: "2"}
	prov := m1
	prov.SubsystemCode = "EDR"
	conf := &globalconf.Conf{SecurityServers: []globalconf.SecurityServer{
		{Owner: m1, Code: "a", Clients: []ident.Client{prov}},
		{Owner: m2, Code: "hosted", Clients: []ident.Client{prov}},
		{Owner: m1, Code: "b", Clients: []ident.Client{m1}},
	}}
	got := providerServers(conf, prov)
	if len(got) != 1 || got[0].Code != "a" {
		t.Errorf("providerServers = %+v, want only server a (owned by the provider's "+
			"member and serving the provider)", got)
	}
}

func TestReadBounded(t *testing.T) {
	for _, tt := range []struct {
		n, limit int
		size     int64
		over     bool
	}{
		{10240, 10240, 10240, false},
		{10240, 10240, -1, false},
		{10241, 10240, 10241, true},
		{10241, 10240, 5, true}, // a Content-Length that lies does not matter
		{0, 10240, 0, false},
	} {
		b, over, err := readBounded(strings.NewReader(strings.Repeat("x", tt.n)), tt.limit,
			tt.size)
		if err != nil || over != tt.over || !over && len(b) != tt.n {
			t.Errorf("readBounded(%d bytes, limit %d, size %d) = %d bytes, over %v, %v",
				tt.n, tt.limit, tt.size, len(b), over, err)
		}
	}
}

func TestLimiter(t *testing.T) {
	l := newLimiter(1)
	if !l.acquire(context.Background()) {
		t.Fatal("first acquire failed")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if l.acquire(ctx) {
		t.Error("a second exchange got a turn while the only one was taken")
	}
	l.release()
	if !l.acquire(ctx) && !l.acquire(context.Background()) {
		t.Error("no turn after release")
	}
	var none limiter = newLimiter(-1)
	if !none.acquire(ctx) {
		t.Error("an unbounded limiter refused")
	}
	none.release()
}
