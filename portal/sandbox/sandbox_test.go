package sandbox

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/qapi-az/qapi/appliance/ident"
	"github.com/qapi-az/qapi/appliance/messagelog"
	"github.com/qapi-az/qapi/appliance/soap"
	"github.com/qapi-az/qapi/portal"
	"github.com/qapi-az/qapi/portal/incident"
	"github.com/qapi-az/qapi/portal/registry"
)

func TestAppendix1(t *testing.T) {
	systems, err := Appendix1()
	if err != nil {
		t.Fatal(err)
	}
	agencies := map[string]bool{}
	for _, s := range systems {
		agencies[s.Agency] = true
	}
	if len(systems) != 63 || len(agencies) != 33 {
		t.Errorf("appendix 1 has %d systems of %d agencies, want 63 of 33", len(systems),
			len(agencies))
	}
}

// logged counts the message-log records of n with message id.
func logged(t *testing.T, n *Node, id string) int {
	t.Helper()
	count := 0
	err := n.Server.MessageLog().Entries(1, 0, func(e *messagelog.Entry) error {
		if e.MessageID == id {
			count++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return count
}

func post(t *testing.T, url string, body []byte) (int, string) {
	t.Helper()
	resp, err := http.Post(url, "text/xml; charset=utf-8", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestExchange starts from an empty state: the portal, the appendix 1
// registry, the two systems' annex 1 applications approved with their
// contracts, the provider's annex 2 services connected, two servers
// registered through the real flow; then the first exchange succeeds, a
// block stops the next one within one configuration refresh and reaches
// the incident register, and a revoked signing certificate stops
// exchanges.
func TestExchange(t *testing.T) {
	ctx := context.Background()
	s, err := Start(ctx, Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	var members []registry.Member
	if err := s.Operator.Do(ctx, "GET", "/api/members", nil, &members); err != nil {
		t.Fatal(err)
	}
	subsystems := 0
	for _, m := range members {
		if m.ID.Instance == Instance {
			subsystems += len(m.Subsystems)
		}
	}
	if subsystems != 63 {
		t.Errorf("the registry holds %d information systems, want 63", subsystems)
	}

	// Clauses 3.1-3.3, 3.8, 3.9: both systems came in through their
	// applications, approved with a contract; the provider's services are
	// connected.
	var apps []registry.Application
	if err := s.Operator.Do(ctx, "GET", "/api/applications", nil, &apps); err != nil {
		t.Fatal(err)
	}
	approved := map[ident.Client]bool{}
	connected := 0
	for _, a := range apps {
		switch {
		case a.Kind == registry.AppSystem && a.State == registry.StateApproved &&
			a.Contract != nil:
			approved[a.Member] = true
		case a.Kind == registry.AppService && a.State == registry.StateConnected:
			connected += len(a.Service.Services)
			// Clause 3.8.2: tried through the test instance's servers.
			want := "answered through ss-police-test and ss-justice-test in " + TestInstance
			if !strings.Contains(a.Reason, want) {
				t.Errorf("annex 2 test record %q, want it to say %q", a.Reason, want)
			}
			id := a.Reason[strings.LastIndex(a.Reason, " ")+1:]
			for _, n := range []*Node{s.TestClient, s.TestProvider} {
				if got := logged(t, n, id); got != 2 {
					t.Errorf("message log of %s holds %d records of test message %q, "+
						"want the request and the response", n.Code, got, id)
				}
			}
		}
	}
	if !approved[s.Client.Member] || !approved[s.Provider.Member] || connected != 2 {
		t.Errorf("applications = %+v; want both annex 1 approved, two services connected",
			apps)
	}

	status, body := post(t, s.Client.ClientURL(), s.GetPersonRequest("sandbox-1"))
	if status != http.StatusOK || strings.Contains(body, "Fault") {
		t.Fatalf("first exchange: HTTP %d\n%s", status, body)
	}

	// Clause 3.7: block the client; the next refresh refuses its traffic.
	if err := s.Operator.Do(ctx, "POST", "/api/block", portal.BlockRequest{
		Client: s.Client.Subsystem, Clause: "3.7.1", Reason: "flooding"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	_, body = post(t, s.Client.ClientURL(), s.GetPersonRequest("sandbox-2"))
	if !strings.Contains(body, soap.CodeBlocked) {
		t.Errorf("exchange of a blocked client answered:\n%s", body)
	}
	// Clause 6.8: the refusal reaches the operator's incident register.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var recs []incident.Record
		if err := s.Operator.Do(ctx, "GET", "/api/incidents?kind=blocked-client", nil,
			&recs); err != nil {
			t.Fatal(err)
		}
		if len(recs) > 0 {
			if recs[0].MessageID != "sandbox-2" {
				t.Errorf("blocked-client incident = %+v, want message sandbox-2", recs[0])
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the blocked call reached no incident register within 10 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := s.Operator.Do(ctx, "POST", "/api/unblock", portal.BlockRequest{
		Client: s.Client.Subsystem}, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if status, body := post(t, s.Client.ClientURL(), s.GetPersonRequest("sandbox-3")); status !=
		http.StatusOK || strings.Contains(body, "Fault") {
		t.Fatalf("exchange after unblocking: HTTP %d\n%s", status, body)
	}

	// Revocation of the client's signing certificate: its server learns
	// it at its next OCSP refresh and can no longer sign.
	cert, _, err := s.Client.Manager.SigningCertificate()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Operator.Do(ctx, "POST", "/api/certs/"+cert.SerialNumber.Text(16)+"/revoke",
		portal.RevokeRequest{Reason: ocsp.KeyCompromise}, nil); err != nil {
		t.Fatal(err)
	}
	s.Client.Stapler.Refresh(ctx)
	status, body = post(t, s.Client.ClientURL(), s.GetPersonRequest("sandbox-4"))
	if status == http.StatusOK || !strings.Contains(body, "signing certificate is revoked") {
		t.Errorf("exchange with a revoked signing certificate: HTTP %d\n%s", status, body)
	}
}

// TestBlockReachesServersByThemselves: with nobody calling Refresh, a block
// (3.7) reaches the servers through the portal's publication after the
// change and their own fetch on their interval, as the sandbox's printed
// instructions promise.
func TestBlockReachesServersByThemselves(t *testing.T) {
	ctx := context.Background()
	const interval = 200 * time.Millisecond
	s, err := Start(ctx, Options{Dir: t.TempDir(), FetchInterval: interval})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if status, body := post(t, s.Client.ClientURL(), s.GetPersonRequest("own-0")); status !=
		http.StatusOK || strings.Contains(body, "Fault") {
		t.Fatalf("first exchange: HTTP %d\n%s", status, body)
	}

	if err := s.Operator.Do(ctx, "POST", "/api/block", portal.BlockRequest{
		Client: s.Client.Subsystem, Clause: "3.7.1", Reason: "flooding"}, nil); err != nil {
		t.Fatal(err)
	}
	blocked := time.Now()
	// A bound of many intervals, so that a loaded machine does not fail it;
	// the time it took is logged.
	deadline := blocked.Add(50 * interval)
	for i := 1; ; i++ {
		_, body := post(t, s.Client.ClientURL(), s.GetPersonRequest(fmt.Sprintf("own-%d", i)))
		if strings.Contains(body, soap.CodeBlocked) {
			t.Logf("refused %s after the block, fetch interval %s",
				time.Since(blocked).Round(time.Millisecond), interval)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still not refused %s after the block:\n%s", 50*interval, body)
		}
		time.Sleep(interval / 10)
	}
}
