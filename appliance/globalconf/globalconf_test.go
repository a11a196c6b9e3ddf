package globalconf_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/qapi-az/qapi/appliance/globalconf"
	"github.com/qapi-az/qapi/appliance/ident"
	"github.com/qapi-az/qapi/internal/testpki"
)

func TestSignVerify(t *testing.T) {
	ca, err := testpki.NewCA("config")
	if err != nil {
		t.Fatal(err)
	}
	op := ident.Client{Instance: "AZ", MemberClass: "GOV", MemberCode: "OPERATOR"}
	signer, err := ca.IssueSigning(op)
	if err != nil {
		t.Fatal(err)
	}
	member := ident.Client{Instance: "AZ", MemberClass: "GOV", MemberCode: "1001"}
	now := time.Now()
	conf := &globalconf.Conf{
		Instance: "AZ", Serial: 7, Issued: now.Add(-time.Minute), Expires: now.Add(time.Hour),
		Members: []globalconf.Member{{ID: member, Name: "Nazirlik",
			Subsystems: []globalconf.Subsystem{{Code: "REG"}}}},
		Blocked: []globalconf.Blocked{{Client: member, Since: now}},
	}
	signed, err := globalconf.Sign(conf, signer.Key, signer.Cert.Raw)
	if err != nil {
		t.Fatal(err)
	}
	anchor := &globalconf.Anchor{Instance: "AZ", Certs: [][]byte{signer.Cert.Raw}}

	got, err := globalconf.Verify(signed, anchor)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if got.Serial != 7 || !got.HasClient(ident.Client{Instance: "AZ", MemberClass: "GOV",
		MemberCode: "1001", SubsystemCode: "REG"}) {
		t.Fatalf("round trip lost data: %+v", got)
	}
	sub := member
	sub.SubsystemCode = "REG"
	if !got.IsBlocked(sub) {
		t.Error("a subsystem of a blocked member must count as blocked (3.7)")
	}
	if err := got.Check(now); err != nil {
		t.Errorf("Check(now) = %v", err)
	}
	if err := got.Check(now.Add(2 * time.Hour)); !errors.Is(err, globalconf.ErrStale) {
		t.Errorf("Check(after expiry) = %v, want ErrStale", err)
	}

	tampered := strings.Replace(string(signed), `"content": "`, `"content": "AAAA`, 1)
	if _, err := globalconf.Verify([]byte(tampered), anchor); !errors.Is(err,
		globalconf.ErrTampered) {
		t.Errorf("Verify(tampered) = %v, want ErrTampered", err)
	}

	other, err := ca.IssueSigning(op)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := globalconf.Verify(signed, &globalconf.Anchor{Instance: "AZ",
		Certs: [][]byte{other.Cert.Raw}}); err == nil ||
		!strings.Contains(err.Error(), "not in the configuration anchor") {
		t.Errorf("Verify(foreign anchor) = %v", err)
	}
}

func TestDisconnectionAndWarnings(t *testing.T) {
	provider := ident.Client{Instance: "AZ", MemberClass: "GOV", MemberCode: "1001",
		SubsystemCode: "EDR"}
	svc := func(code, version string) ident.Service {
		return ident.Service{Client: provider, ServiceCode: code, Version: version}
	}
	day := time.Date(2027, 2, 1, 0, 0, 0, 0, time.UTC)
	conf := &globalconf.Conf{Instance: "AZ",
		Notices: []globalconf.Notice{
			{Kind: globalconf.NoticeNewVersion, Service: svc("getPerson", "v2"), Effective: day},
			{Kind: globalconf.NoticeEndOfLife, Service: svc("getPerson", "v1"), Effective: day},
			{Kind: globalconf.NoticeDisconnect, Service: svc("searchPersons", ""),
				Effective: day, Text: "replaced by findPersons"},
		},
		Disconnected: []globalconf.Disconnected{{Service: svc("oldQuery", "v1"),
			Since: day.AddDate(0, -1, 0)}},
	}
	for _, tt := range []struct {
		svc          ident.Service
		now          time.Time
		disconnected bool
		warnings     []globalconf.NoticeKind
	}{
		{svc("getPerson", "v1"), day.AddDate(0, 0, 1), false,
			[]globalconf.NoticeKind{globalconf.NoticeEndOfLife}},
		{svc("getPerson", "v2"), day, false, nil},
		{svc("getPerson", ""), day, false, nil},
		// A notice without a version covers every version.
		{svc("searchPersons", "v3"), day.Add(-time.Second), false,
			[]globalconf.NoticeKind{globalconf.NoticeDisconnect}},
		{svc("searchPersons", "v3"), day, true,
			[]globalconf.NoticeKind{globalconf.NoticeDisconnect}},
		{svc("oldQuery", "v1"), day.AddDate(-1, 0, 0), true, nil},
		{svc("oldQuery", "v2"), day, false, nil},
	} {
		d, ok := conf.Disconnection(tt.svc, tt.now)
		if ok != tt.disconnected {
			t.Errorf("Disconnection(%s, %s) = %v, want %v", tt.svc, tt.now, ok,
				tt.disconnected)
		}
		if ok && (d.Service.ServiceCode != tt.svc.ServiceCode || d.Since.IsZero()) {
			t.Errorf("Disconnection(%s) = %+v", tt.svc, d)
		}
		var kinds []globalconf.NoticeKind
		for _, n := range conf.Warnings(tt.svc) {
			kinds = append(kinds, n.Kind)
		}
		if !slices.Equal(kinds, tt.warnings) {
			t.Errorf("Warnings(%s) = %v, want %v", tt.svc, kinds, tt.warnings)
		}
	}
}
