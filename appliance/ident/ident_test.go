package ident

import "testing"

func TestRoundTrip(t *testing.T) {
	member := Client{Instance: "AZ", MemberClass: "GOV", MemberCode: "1001"}
	sub := member
	sub.SubsystemCode = "REG"
	for _, c := range []Client{member, sub} {
		got, err := ParseClient(c.String())
		if err != nil || got != c {
			t.Errorf("ParseClient(%q) = %+v, %v", c.String(), got, err)
		}
	}
	for _, s := range []Service{
		{Client: member, ServiceCode: "getPerson"},
		{Client: member, ServiceCode: "getPerson", Version: "v1"},
		{Client: sub, ServiceCode: "getPerson"},
		{Client: sub, ServiceCode: "getPerson", Version: "v2"},
	} {
		got, err := ParseService(s.String())
		if err != nil || got != s {
			t.Errorf("ParseService(%q) = %+v, %v", s.String(), got, err)
		}
	}
}

func TestParseRefuses(t *testing.T) {
	for _, s := range []string{"", "AZ/GOV", "AZ//1001", "AZ/GOV/1001/", "AZ/GOV/1001/A/B",
		"AZ/GOV/10\x0001"} {
		if _, err := ParseClient(s); err == nil {
			t.Errorf("ParseClient(%q) accepted", s)
		}
	}
	for _, s := range []string{"AZ/GOV/1001/A", "AZ/GOV/1001/A//", "AZ/GOV/1001/A/svc/",
		"AZ/GOV/1001/A/svc/v1/x"} {
		if _, err := ParseService(s); err == nil {
			t.Errorf("ParseService(%q) accepted", s)
		}
	}
}

func TestMemberFromCertSerial(t *testing.T) {
	c, code, err := MemberFromCertSerial("AZ/GOV/1001/ss1")
	if err != nil || c.MemberCode != "1001" || code != "ss1" || c.SubsystemCode != "" {
		t.Fatalf("got %+v %q %v", c, code, err)
	}
	if _, _, err := MemberFromCertSerial("1001"); err == nil {
		t.Fatal("a bare code was accepted as a member")
	}
}
