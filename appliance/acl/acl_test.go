package acl_test

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/qapi-az/qapi/appliance/acl"
	"github.com/qapi-az/qapi/appliance/globalconf"
	"github.com/qapi-az/qapi/appliance/ident"
	bolt "go.etcd.io/bbolt"
)

var (
	provider = ident.Client{Instance: "AZ", MemberClass: "GOV", MemberCode: "1001",
		SubsystemCode: "REG"}
	svc     = ident.Service{Client: provider, ServiceCode: "getPerson"}
	svcV2   = ident.Service{Client: provider, ServiceCode: "getPerson", Version: "v2"}
	other   = ident.Service{Client: provider, ServiceCode: "searchPersons"}
	memberA = ident.Client{Instance: "AZ", MemberClass: "GOV", MemberCode: "2002"}
	subA1   = ident.Client{Instance: "AZ", MemberClass: "GOV", MemberCode: "2002",
		SubsystemCode: "A1"}
	subA2 = ident.Client{Instance: "AZ", MemberClass: "GOV", MemberCode: "2002",
		SubsystemCode: "A2"}
	subB = ident.Client{Instance: "AZ", MemberClass: "COM", MemberCode: "3003",
		SubsystemCode: "B"}
)

func openDB(t *testing.T, path string) *bolt.DB {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func TestAllowed(t *testing.T) {
	conf := &globalconf.Conf{Groups: []globalconf.Group{
		{Code: "security", Members: []ident.Client{subB}}}}
	tests := []struct {
		name   string
		grant  []acl.Subject
		groups map[string][]ident.Client
		svc    ident.Service
		client ident.Client
		want   bool
	}{
		{"no right: denied by default", nil, nil, svc, subA1, false},
		{"member right covers its subsystems", []acl.Subject{acl.Member(memberA)}, nil,
			svc, subA2, true},
		{"member right covers the member", []acl.Subject{acl.Member(memberA)}, nil,
			svc, memberA, true},
		{"member right does not cover another member", []acl.Subject{acl.Member(memberA)},
			nil, svc, subB, false},
		{"subsystem right covers that subsystem", []acl.Subject{acl.Subsystem(subA1)}, nil,
			svc, subA1, true},
		{"subsystem right does not cover a sibling", []acl.Subject{acl.Subsystem(subA1)},
			nil, svc, subA2, false},
		{"subsystem right does not cover its member", []acl.Subject{acl.Subsystem(subA1)},
			nil, svc, memberA, false},
		{"right covers every version", []acl.Subject{acl.Subsystem(subA1)}, nil,
			svcV2, subA1, true},
		{"right is per service", []acl.Subject{acl.Subsystem(subA1)}, nil,
			other, subA1, false},
		{"global group", []acl.Subject{acl.GlobalGroup("security")}, nil, svc, subB, true},
		{"global group non-member", []acl.Subject{acl.GlobalGroup("security")}, nil,
			svc, subA1, false},
		{"local group", []acl.Subject{acl.LocalGroup("mine")},
			map[string][]ident.Client{"mine": {subA2}}, svc, subA2, true},
		{"local group non-member", []acl.Subject{acl.LocalGroup("mine")},
			map[string][]ident.Client{"mine": {subA2}}, svc, subA1, false},
		{"undefined local group", []acl.Subject{acl.LocalGroup("none")}, nil,
			svc, subA1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := openDB(t, filepath.Join(t.TempDir(), "conf.db"))
			defer db.Close()
			s, err := acl.Open(db)
			if err != nil {
				t.Fatal(err)
			}
			for _, sub := range tt.grant {
				if err := s.Grant(svc, sub); err != nil {
					t.Fatal(err)
				}
			}
			for code, m := range tt.groups {
				if err := s.SetLocalGroup(code, m); err != nil {
					t.Fatal(err)
				}
			}
			if got := s.Allowed(conf, tt.svc, tt.client); got != tt.want {
				t.Errorf("Allowed(%s, %s) = %v, want %v", tt.svc, tt.client, got, tt.want)
			}
		})
	}
}

func TestPersistRevokeList(t *testing.T) {
	path := filepath.Join(t.TempDir(), "conf.db")
	db := openDB(t, path)
	s, err := acl.Open(db)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range []struct {
		svc ident.Service
		sub acl.Subject
	}{{svc, acl.Subsystem(subA1)}, {svc, acl.Member(memberA)}, {other, acl.LocalGroup("g")},
		{svc, acl.Subsystem(subA1)}} {
		if err := s.Grant(g.svc, g.sub); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.SetLocalGroup("g", []ident.Client{subB}); err != nil {
		t.Fatal(err)
	}
	if err := s.Revoke(svc, acl.Member(memberA)); err != nil {
		t.Fatal(err)
	}
	if err := s.Revoke(svc, acl.Member(memberA)); err == nil {
		t.Error("revoking a right twice must report that it does not exist")
	}
	db.Close()

	db = openDB(t, path)
	defer db.Close()
	s, err = acl.Open(db)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range s.List() {
		got = append(got, r.Service.ServiceCode+" "+r.Subject.String())
	}
	want := []string{"getPerson subsystem:AZ/GOV/2002/A1", "searchPersons localgroup:g"}
	if !slices.Equal(got, want) {
		t.Errorf("after reopen List = %q, want %q", got, want)
	}
	if !s.Allowed(nil, other, subB) {
		t.Error("local group did not survive reopening")
	}
	if s.Allowed(nil, svc, subA2) {
		t.Error("revoked member right still allows a subsystem")
	}
	if codes := s.AllowedCodes(nil, provider, subA1); !slices.Equal(codes,
		[]string{"getPerson"}) {
		t.Errorf("AllowedCodes = %q", codes)
	}
}

func TestParseSubject(t *testing.T) {
	for _, tt := range []struct {
		in string
		ok bool
	}{
		{"member:AZ/GOV/2002", true},
		{"member:AZ/GOV/2002/A1", false},
		{"subsystem:AZ/GOV/2002/A1", true},
		{"subsystem:AZ/GOV/2002", false},
		{"globalgroup:security", true},
		{"localgroup:", false},
		{"user:x", false},
		{"AZ/GOV/2002", false},
	} {
		s, err := acl.ParseSubject(tt.in)
		if (err == nil) != tt.ok {
			t.Errorf("ParseSubject(%q) error = %v, want ok=%v", tt.in, err, tt.ok)
			continue
		}
		if err == nil && s.String() != tt.in {
			t.Errorf("ParseSubject(%q).String() = %q", tt.in, s.String())
		}
	}
}
