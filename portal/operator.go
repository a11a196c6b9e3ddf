package portal

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/qapi-az/qapi/appliance/ident"
	"github.com/qapi-az/qapi/portal/incident"
	"github.com/qapi-az/qapi/portal/onboarding"
	"github.com/qapi-az/qapi/portal/registry"
	"github.com/qapi-az/qapi/portal/wire"
)

// Bodies of operator API requests.
type (
	// ApproveSystem approves an annex 1 application (3.2, 3.3).
	ApproveSystem struct {
		Subsystem string            `json:"subsystem"`
		Contract  registry.Contract `json:"contract"`
	}
	// Reason accompanies a rejection or a note.
	Reason struct {
		Reason string `json:"reason"`
	}
	// BlockRequest blocks a participant at once (3.7).
	BlockRequest struct {
		Client ident.Client `json:"client"`
		Clause string       `json:"clause"`
		Reason string       `json:"reason"`
	}
	// BreachRequest sends a written breach notice (3.6).
	BreachRequest struct {
		Member ident.Client `json:"member"`
		Text   string       `json:"text"`
	}
	// DisconnectRequest disconnects a participant (3.5, 3.6).
	DisconnectRequest struct {
		Member    ident.Client `json:"member"`
		Dissolved bool         `json:"dissolved,omitempty"`
		Breach    uint64       `json:"breach,omitempty"`
	}
	// VersionNotice announces a new version and the old one's end (3.12).
	VersionNotice struct {
		New       ident.Service `json:"new"`
		Old       ident.Service `json:"old"`
		EndOfLife time.Time     `json:"endOfLife"`
		Text      string        `json:"text,omitempty"`
	}
	// DisconnectNotice announces a service's disconnection (3.13, 3.14).
	DisconnectNotice struct {
		Service   ident.Service `json:"service"`
		Effective time.Time     `json:"effective"`
		Text      string        `json:"text"`
	}
	// RevokeRequest revokes a certificate with an RFC 5280 reason code.
	RevokeRequest struct {
		Reason int `json:"reason"`
	}
	// Disconnected answers a disconnection.
	Disconnected struct {
		RevokedCertificates int `json:"revokedCertificates"`
	}
)

// OperatorHandler serves the operator's JSON API under /api/, for requests
// bearing "Authorization: Bearer token". Serve it over HTTPS on loopback.
//
// TODO: an operator web page on this API; the operator has 'qapi portal' only.
func (p *Portal) OperatorHandler(token string) http.Handler {
	mux := http.NewServeMux()
	h := func(pattern string, f func(*http.Request) (any, error)) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			v, err := f(r)
			if err != nil {
				fail(w, err)
				return
			}
			writeJSON(w, v)
		})
	}
	reg := p.Registry
	withID := func(f func(uint64, *http.Request) (any, error)) func(*http.Request) (any, error) {
		return func(r *http.Request) (any, error) {
			id, err := pathID(r)
			if err != nil {
				return nil, err
			}
			return f(id, r)
		}
	}
	body := func(r *http.Request, v any) error { return readJSON(r, v) }

	h("GET /api/applications", func(*http.Request) (any, error) { return reg.Applications() })
	h("POST /api/applications/system", func(r *http.Request) (any, error) {
		var a onboarding.SystemApplication
		if err := body(r, &a); err != nil {
			return nil, err
		}
		return reg.SubmitSystem(a)
	})
	h("POST /api/applications/service", func(r *http.Request) (any, error) {
		var a onboarding.ServiceApplication
		if err := body(r, &a); err != nil {
			return nil, err
		}
		return reg.SubmitService(a)
	})
	h("POST /api/applications/{id}/approve", withID(func(id uint64, r *http.Request) (any,
		error) {
		var a ApproveSystem
		if err := body(r, &a); err != nil {
			return nil, err
		}
		return reg.ApproveSystem(id, a.Subsystem, a.Contract)
	}))
	h("POST /api/applications/{id}/reject", withID(func(id uint64, r *http.Request) (any,
		error) {
		var a Reason
		if err := body(r, &a); err != nil {
			return nil, err
		}
		return reg.Reject(id, a.Reason)
	}))
	h("POST /api/applications/{id}/tested", withID(func(id uint64, r *http.Request) (any,
		error) {
		var a Reason
		if err := body(r, &a); err != nil {
			return nil, err
		}
		return reg.RecordTest(id, a.Reason)
	}))
	h("POST /api/applications/{id}/connect", withID(func(id uint64, _ *http.Request) (any,
		error) {
		return reg.ConnectServices(id)
	}))

	h("GET /api/members", func(*http.Request) (any, error) { return reg.Members() })
	h("POST /api/members", func(r *http.Request) (any, error) {
		var m registry.Member
		if err := body(r, &m); err != nil {
			return nil, err
		}
		return m, reg.AddMember(m)
	})
	h("GET /api/services", func(*http.Request) (any, error) { return reg.Services() })

	h("GET /api/csrs", func(*http.Request) (any, error) { return p.CA.Requests() })
	h("POST /api/csrs", func(r *http.Request) (any, error) {
		var cr wire.CertRequest
		if err := body(r, &cr); err != nil {
			return nil, err
		}
		return p.submitCert(cr)
	})
	h("POST /api/csrs/{id}/approve", withID(func(id uint64, _ *http.Request) (any, error) {
		if _, err := p.CA.Approve(id); err != nil {
			return nil, err
		}
		return p.CA.GetRequest(id)
	}))
	h("POST /api/csrs/{id}/reject", withID(func(id uint64, r *http.Request) (any, error) {
		var a Reason
		if err := body(r, &a); err != nil {
			return nil, err
		}
		if err := p.CA.Reject(id, a.Reason); err != nil {
			return nil, err
		}
		return p.CA.GetRequest(id)
	}))
	h("GET /api/certs", func(*http.Request) (any, error) { return p.CA.Certs() })
	h("POST /api/certs/{serial}/revoke", func(r *http.Request) (any, error) {
		var a RevokeRequest
		if err := body(r, &a); err != nil {
			return nil, err
		}
		return struct{}{}, p.CA.Revoke(r.PathValue("serial"), a.Reason)
	})

	h("GET /api/servers", func(*http.Request) (any, error) { return reg.Servers() })
	h("POST /api/servers/{id}/approve", withID(func(id uint64, _ *http.Request) (any,
		error) {
		return reg.ApproveServer(id)
	}))
	h("POST /api/servers/{id}/reject", withID(func(id uint64, r *http.Request) (any, error) {
		var a Reason
		if err := body(r, &a); err != nil {
			return nil, err
		}
		return reg.RejectServer(id, a.Reason)
	}))

	h("GET /api/blocks", func(*http.Request) (any, error) { return reg.Blocks() })
	h("POST /api/block", func(r *http.Request) (any, error) {
		var a BlockRequest
		if err := body(r, &a); err != nil {
			return nil, err
		}
		b, br, err := reg.BlockClient(a.Client, a.Clause, a.Reason)
		return struct {
			Block  registry.Block   `json:"block"`
			Breach *registry.Breach `json:"breach,omitempty"`
		}{b, br}, err
	})
	h("POST /api/unblock", func(r *http.Request) (any, error) {
		var a BlockRequest
		if err := body(r, &a); err != nil {
			return nil, err
		}
		return struct{}{}, reg.Unblock(a.Client)
	})
	h("GET /api/breaches", func(*http.Request) (any, error) { return reg.Breaches() })
	h("POST /api/breaches", func(r *http.Request) (any, error) {
		var a BreachRequest
		if err := body(r, &a); err != nil {
			return nil, err
		}
		return reg.NoticeBreach(a.Member, a.Text)
	})
	h("POST /api/breaches/{id}/remedied", withID(func(id uint64, _ *http.Request) (any,
		error) {
		return reg.Remedied(id)
	}))
	h("POST /api/disconnect", func(r *http.Request) (any, error) {
		var a DisconnectRequest
		if err := body(r, &a); err != nil {
			return nil, err
		}
		if a.Dissolved == (a.Breach != 0) {
			return nil, errors.New("give exactly one ground: dissolved (3.5) or an " +
				"unremedied breach notice (3.6)")
		}
		if err := reg.Disconnect(a.Member, a.Dissolved, a.Breach); err != nil {
			return nil, err
		}
		n := 0
		for _, inst := range reg.Instances() {
			m := a.Member.Member()
			m.Instance = inst
			// RFC 5280 reason 5: cessationOfOperation.
			k, err := p.CA.RevokeSubject(m.String(), 5)
			if err != nil {
				return nil, fmt.Errorf("disconnected, but revoking certificates failed: %w",
					err)
			}
			n += k
		}
		return Disconnected{RevokedCertificates: n}, nil
	})
	h("GET /api/notices", func(*http.Request) (any, error) { return reg.Notices() })
	h("POST /api/notices/version", func(r *http.Request) (any, error) {
		var a VersionNotice
		if err := body(r, &a); err != nil {
			return nil, err
		}
		return reg.AnnounceVersion(a.New, a.Old, a.EndOfLife, a.Text)
	})
	h("POST /api/notices/disconnect", func(r *http.Request) (any, error) {
		var a DisconnectNotice
		if err := body(r, &a); err != nil {
			return nil, err
		}
		return reg.AnnounceDisconnect(a.Service, a.Effective, a.Text)
	})

	h("GET /api/incidents", func(r *http.Request) (any, error) {
		q := r.URL.Query()
		f := incident.Filter{Kind: incident.Kind(q.Get("kind")), Server: q.Get("server"),
			Client: q.Get("client")}
		for _, t := range []struct {
			name string
			dst  *time.Time
		}{{"since", &f.Since}, {"until", &f.Until}} {
			if v := q.Get(t.name); v != "" {
				tm, err := time.Parse(time.RFC3339, v)
				if err != nil {
					return nil, fmt.Errorf("%s %q is not an RFC 3339 time", t.name, v)
				}
				*t.dst = tm
			}
		}
		return p.Incidents.List(f)
	})

	h("POST /api/publish", func(*http.Request) (any, error) {
		var out []any
		for _, inst := range reg.Instances() {
			c, err := p.Publisher.Publish(inst)
			if err != nil {
				return nil, err
			}
			out = append(out, struct {
				Instance string    `json:"instance"`
				Serial   uint64    `json:"serial"`
				Expires  time.Time `json:"expires"`
			}{inst, c.Serial, c.Expires})
		}
		return out, nil
	})
	h("GET /api/anchor/{instance}", func(r *http.Request) (any, error) {
		return p.Anchor(r.PathValue("instance"))
	})

	return wire.BearerOnly(token, "qapi-portal", "missing or wrong operator token; use the "+
		"connection file qapi-portal wrote (qapi portal -conn FILE)", mux)
}
