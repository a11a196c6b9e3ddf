package portal

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/qapi-az/qapi/portal/ca"
	"github.com/qapi-az/qapi/portal/registry"
	"github.com/qapi-az/qapi/portal/wire"
)

// PublicHandler serves what security servers reach: certificate requests
// (4.1.2.10), registrations (4.1.2), OCSP, time stamps, the global
// configuration, and incident reports (6.8).
func (p *Portal) PublicHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+wire.PathCertRequests, p.postCertRequest)
	mux.HandleFunc("GET "+wire.PathCertRequests+"/{id}", p.getCertRequest)
	mux.HandleFunc("GET "+wire.PathCACert, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/pkix-cert")
		w.Write(p.CA.Certificate().Raw)
	})
	mux.HandleFunc("POST "+wire.PathRegistrations, p.postRegistration)
	mux.HandleFunc("GET "+wire.PathRegistrations+"/{id}", p.getRegistration)
	mux.Handle(wire.PathOCSP, p.CA.OCSPHandler())
	mux.Handle(wire.PathOCSP+"/", p.CA.OCSPHandler())
	mux.Handle(wire.PathTSA, p.TSA)
	mux.Handle("GET "+wire.PathGlobalConf+"{instance}", p.Publisher.Handler())
	mux.Handle("POST "+wire.PathIncidents, p.Incidents)
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func fail(w http.ResponseWriter, err error) {
	code := http.StatusBadRequest
	switch {
	case errors.Is(err, registry.ErrNotFound), errors.Is(err, ca.ErrNoRequest),
		errors.Is(err, ca.ErrUnknownCert):
		code = http.StatusNotFound
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(wire.ErrorAnswer{Error: err.Error()})
}

func readJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("request body is not the expected JSON: %w", err)
	}
	return nil
}

func pathID(r *http.Request) (uint64, error) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("id %q is not a number", r.PathValue("id"))
	}
	return id, nil
}

func certStatus(q ca.Request) wire.CertRequestStatus {
	return wire.CertRequestStatus{ID: q.ID, State: string(q.State), Cert: q.Cert,
		Reason: q.Reason}
}

// submitCert queues a certificate request of a registered, active member.
func (p *Portal) submitCert(cr wire.CertRequest) (ca.Request, error) {
	m, err := p.Registry.Member(cr.Member)
	if err != nil || !m.Active() {
		return ca.Request{}, fmt.Errorf("member %s is not registered and active; its "+
			"annex 1 application must be approved first (3.2)", cr.Member)
	}
	return p.CA.Submit(ca.Kind(cr.Kind), cr.Member, cr.ServerCode, cr.CSR)
}

func (p *Portal) postCertRequest(w http.ResponseWriter, r *http.Request) {
	var cr wire.CertRequest
	if err := readJSON(r, &cr); err != nil {
		fail(w, err)
		return
	}
	q, err := p.submitCert(cr)
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, certStatus(q))
}

func (p *Portal) getCertRequest(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r)
	if err != nil {
		fail(w, err)
		return
	}
	q, err := p.CA.GetRequest(id)
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, certStatus(q))
}

func (p *Portal) postRegistration(w http.ResponseWriter, r *http.Request) {
	var s wire.Signed
	if err := readJSON(r, &s); err != nil {
		fail(w, err)
		return
	}
	var reg wire.ServerRegistration
	pool := x509.NewCertPool()
	pool.AddCert(p.CA.Certificate())
	now := p.opts.Now()
	cert, err := s.Open(&reg, pool, now)
	if err != nil {
		fail(w, fmt.Errorf("registration refused: %w", err))
		return
	}
	if string(cert.Raw) != string(reg.AuthCert) {
		fail(w, errors.New("registration refused: it must be signed with the key of the "+
			"authentication certificate it registers"))
		return
	}
	if p.isRevoked(cert.Raw) {
		fail(w, errors.New("registration refused: the authentication certificate is "+
			"revoked; request a new one"))
		return
	}
	if d := now.Sub(reg.Time); d > wire.MaxAge || d < -wire.MaxAge {
		fail(w, fmt.Errorf("registration refused: its time %s is more than %s from the "+
			"portal's; check the server's clock", reg.Time, wire.MaxAge))
		return
	}
	srv, err := p.Registry.SubmitServer(reg, cert)
	if err != nil {
		fail(w, fmt.Errorf("registration refused: %w", err))
		return
	}
	writeJSON(w, wire.RegistrationStatus{ID: srv.ID, State: srv.State})
}

func (p *Portal) getRegistration(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r)
	if err != nil {
		fail(w, err)
		return
	}
	s, err := p.Registry.Server(id)
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, wire.RegistrationStatus{ID: s.ID, State: s.State, Reason: s.Reason})
}
