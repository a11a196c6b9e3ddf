package proxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/qapi-az/qapi/appliance/events"
	"github.com/qapi-az/qapi/appliance/globalconf"
	"github.com/qapi-az/qapi/appliance/ident"
	"github.com/qapi-az/qapi/appliance/messagelog"
	"github.com/qapi-az/qapi/appliance/replay"
	"github.com/qapi-az/qapi/appliance/sign"
	"github.com/qapi-az/qapi/appliance/soap"
)

var randReader io.Reader = rand.Reader

// ServerProxy is the provider side: an http.Handler for the listener that
// other security servers reach. Serve it over TLSConfig.
type ServerProxy struct {
	cfg   Config
	peers sync.Map // peerKey -> time.Time until which the chain counts as verified
	// peerStores counts verifications, to prune peers now and then.
	peerStores atomic.Uint64
	pools      poolCache
	busy       limiter
	isc        *http.Client
	codes      map[ident.Client][]string // service codes configured per provider
}

// NewServerProxy checks cfg and returns the server-side proxy.
func NewServerProxy(cfg Config) (*ServerProxy, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if cfg.ACL == nil || cfg.Replay == nil {
		return nil, errors.New("the server proxy needs access rights and a replay store")
	}
	p := &ServerProxy{cfg: cfg, codes: map[ident.Client][]string{},
		busy: newLimiter(cfg.MaxConcurrent),
		isc: &http.Client{Transport: &http.Transport{
			MaxIdleConns: 256, MaxIdleConnsPerHost: 256,
			IdleConnTimeout: 90 * time.Second, WriteBufferSize: writeBufferSize,
		}, CheckRedirect: noRedirect}}
	// A request goes to the address configured for its service and
	// nowhere else: the clients are copied so that none follows a
	// redirect, whatever the caller set.
	p.cfg.Services = slices.Clone(cfg.Services)
	for i, s := range p.cfg.Services {
		if s.Client != nil {
			c := *s.Client
			c.CheckRedirect = noRedirect
			p.cfg.Services[i].Client = &c
		}
	}
	for _, s := range cfg.Services {
		if !cfg.serves(s.Provider) {
			return nil, fmt.Errorf("service %s/%s: provider is not one of the served "+
				"clients", s.Provider, s.Code)
		}
		if s.Code != "" && !slices.Contains(p.codes[s.Provider], s.Code) {
			p.codes[s.Provider] = append(p.codes[s.Provider], s.Code)
		}
	}
	for _, c := range p.codes {
		slices.Sort(c)
	}
	return p, nil
}

// TLSConfig returns the TLS configuration of the server proxy's listener:
// TLS 1.3 only, this server's authentication certificate, and a client
// certificate required (its pin is checked per request, so that an
// unpinned peer gets a fault that says why).
func (p *ServerProxy) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{p.cfg.AuthCert},
		ClientAuth:   tls.RequireAnyClientCert,
	}
}

// Close drops idle connections to information systems.
func (p *ServerProxy) Close() { p.isc.CloseIdleConnections() }

// ServeHTTP answers one signed request from another security server.
func (p *ServerProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := events.Record{Role: events.RoleProvider, Received: p.cfg.Now()}
	if !p.busy.acquire(r.Context()) {
		return // the calling server gave up waiting
	}
	defer p.busy.release()
	body, ct, hdr, f := p.exchange(r, &rec)
	rec.Done = p.cfg.Now()
	rec.Result = events.ResultOK
	if rec.FaultCode != "" {
		rec.Result = events.ResultFault
	}
	if f != nil {
		rec.Result, rec.FaultCode = events.ResultFault, f.Code
		writeFault(w, f, hdr)
	} else {
		rec.ResponseBytes = len(body)
		writeBody(w, http.StatusOK, ct, body)
	}
	p.cfg.Events.Emit(rec)
	if f != nil && p.cfg.Refused != nil {
		p.cfg.Refused(rec, f)
	}
}

func (p *ServerProxy) exchange(r *http.Request, rec *events.Record) ([]byte, string,
	*soap.Header, *soap.Fault) {
	if r.Method != http.MethodPost {
		return nil, "", nil, fault(soap.CodeMalformed, "POST a signed request")
	}
	conf, err := p.cfg.Source.Current()
	if err != nil {
		return nil, "", nil, fault(soap.CodeStaleConf, "the provider's security server has "+
			"no valid global configuration and stops exchanging: %v", err)
	}
	// Clause 2.2.4: only registered security servers, by the pin of their
	// authentication certificate, are heard at all.
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return nil, "", nil, fault(soap.CodeBadCertificate, "connect with TLS and the "+
			"security server's authentication certificate")
	}
	peer, ok := conf.ServerByAuthCert(r.TLS.PeerCertificates[0].Raw)
	if !ok {
		return nil, "", nil, fault(soap.CodeBadCertificate, "the calling security server's "+
			"authentication certificate is not pinned in the global configuration")
	}
	if err := p.verifyPeer(conf, r.TLS.PeerCertificates); err != nil {
		return nil, "", nil, fault(soap.CodeBadCertificate, "%v", err)
	}

	limit := p.cfg.Limits.MaxBytes + SignatureOverhead
	body, over, err := readBounded(r.Body, limit, r.ContentLength)
	rec.RequestBytes = len(body)
	if err != nil {
		return nil, "", nil, fault(soap.CodeMalformed, "the request could not be read: %v",
			err)
	}
	if over {
		return nil, "", nil, fault(soap.CodeSizeExceeded, "the signed request is over %d "+
			"bytes (clause 5.2)", limit)
	}
	ct := r.Header.Get("Content-Type")
	msg, req, f := p.peekRequest(body, ct, limit)
	if f != nil {
		return nil, "", nil, f
	}
	h := &req.Header
	client, provider := h.Client, h.Service.Client
	rec.MessageID, rec.Client, rec.Service = h.ID, client.String(), h.Service.String()

	if !conf.HasClient(client) {
		return nil, "", h, fault(soap.CodeUnknownClient, "client %s is not registered in "+
			"the global configuration", client)
	}
	if !slices.Contains(peer.Clients, client) {
		return nil, "", h, fault(soap.CodeAccessDenied, "security server %s/%s is not "+
			"registered to serve client %s", peer.Owner, peer.Code, client)
	}
	// Clause 3.7: a blocked participant is refused on this side too.
	if conf.IsBlocked(client) {
		return nil, "", h, fault(soap.CodeBlocked, "client %s is blocked by the operator "+
			"(clause 3.7)", client)
	}
	if !p.cfg.serves(provider) {
		return nil, "", h, fault(soap.CodeUnknownService, "this security server does not "+
			"serve provider %s", provider)
	}
	if conf.IsBlocked(provider) {
		return nil, "", h, fault(soap.CodeBlocked, "provider %s is blocked by the operator "+
			"(clause 3.7)", provider)
	}
	if f := disconnected(conf, h.Service, p.cfg.Now()); f != nil {
		return nil, "", h, f
	}

	// Clause 2.2.1: the request must be signed by the client's member.
	roots, err := p.pools.roots(conf)
	if err != nil {
		return nil, "", h, fault(soap.CodeStaleConf, "%v", err)
	}
	// The signature covers the part the request was read from above, so
	// what was read for routing is what was signed.
	v, err := msg.Verify(sign.VerifyOptions{Roots: roots, Now: p.cfg.Now(),
		Member: client.Member(), CheckOCSP: p.cfg.CheckOCSP})
	if err != nil {
		return nil, "", h, asFault(err, soap.CodeBadSignature)
	}

	code := h.Service.ServiceCode
	// Clauses 2.2.3, 6.7: deny by default.
	if !IsMeta(code) && !p.cfg.ACL.Allowed(conf, h.Service, client) {
		return nil, "", h, fault(soap.CodeAccessDenied, "client %s has no access right to "+
			"service %s; ask the provider to grant one", client, h.Service)
	}
	// Clause 6.2.4: refuse replayed and stale requests. The id is claimed
	// in memory at once and made durable with the request's log record.
	claim, err := p.cfg.Replay.Claim(client, h.ID, v.SigningTime, p.cfg.Now())
	if err != nil {
		switch {
		case errors.Is(err, replay.ErrReplay):
			return nil, "", h, fault(soap.CodeReplay, "message id %q was already used by "+
				"client %s; use a new id for every request", h.ID, client)
		case errors.Is(err, replay.ErrSigningTime):
			return nil, "", h, fault(soap.CodeSigningTime, "%v; check the clocks of both "+
				"security servers", err)
		}
		return nil, "", h, fault(soap.CodeInternal, "%v", err)
	}
	// Clause 2.2.2: archived before the information system sees it.
	if err := p.cfg.Log.Append(r.Context(), messagelog.Record{
		Kind: messagelog.KindRequest, MessageID: h.ID, Client: rec.Client,
		Service: rec.Service, Time: p.cfg.Now(), Signed: body, ContentType: ct,
		Mark: claim.Mark(),
	}); err != nil {
		// Refused, so not seen: a retry with the id is no replay.
		claim.Release()
		return nil, "", h, logFault(err, "request")
	}

	ctx, cancel := context.WithTimeout(r.Context(), p.cfg.Timeout)
	defer cancel()
	rec.Forwarded = p.cfg.Now()
	var respSOAP []byte
	var answer *soap.Message
	if IsMeta(code) {
		respSOAP, f = p.meta(ctx, conf, req)
	} else {
		var isFault string
		answer, isFault, f = p.callIS(ctx, req)
		// The information system's own fault is an answer, passed on
		// signed; the record still counts it.
		rec.FaultCode = isFault
	}
	rec.Answered = p.cfg.Now()
	if f != nil {
		return nil, "", h, f
	}
	if answer != nil {
		// Parsed already: the parse found where the requestHash goes.
		respSOAP, err = answer.WithRequestHash(req.Raw)
	} else {
		respSOAP, err = soap.WithRequestHash(respSOAP, req.Raw)
	}
	if err != nil {
		return nil, "", h, asFault(err, soap.CodeProviderFault)
	}
	signer := p.cfg.Signers[provider.Member()]
	if signer == nil {
		return nil, "", h, fault(soap.CodeInternal, "no signing key for member %s",
			provider.Member())
	}
	now := p.cfg.Now()
	out, outCT, err := signer.Sign(respSOAP, now)
	if err != nil {
		return nil, "", h, fault(soap.CodeInternal, "signing the response failed: %v", err)
	}
	if err := p.cfg.Log.Append(ctx, messagelog.Record{Kind: messagelog.KindResponse,
		MessageID: h.ID, Client: rec.Client, Service: rec.Service, Time: now,
		Signed: out, ContentType: outCT}); err != nil {
		return nil, "", h, logFault(err, "response")
	}
	return out, outCT, h, nil
}

// peerKey names a peer certificate chain verified against one version of
// the global configuration.
type peerKey struct {
	cert   [32]byte
	serial uint64
}

// peerRecheck is how long a verified peer chain is trusted before it is
// verified again; the pin itself is checked on every request.
const peerRecheck = time.Minute

// verifyPeer checks the calling server's certificate chain, at most once a
// minute per certificate and configuration version: a chain verification
// costs a signature check, and a connection carries many requests.
func (p *ServerProxy) verifyPeer(conf *globalconf.Conf, chain []*x509.Certificate) error {
	now := p.cfg.Now()
	k := peerKey{cert: sha256.Sum256(chain[0].Raw), serial: conf.Serial}
	if until, ok := p.peers.Load(k); ok && now.Before(until.(time.Time)) &&
		now.Before(chain[0].NotAfter) {
		return nil
	}
	roots, err := p.pools.roots(conf)
	if err != nil {
		return err
	}
	if err := verifyChain(roots, chain, now); err != nil {
		p.peers.Delete(k)
		return err
	}
	p.peers.Store(k, now.Add(peerRecheck))
	if p.peerStores.Add(1)%256 == 0 {
		// Forget entries of old configuration versions.
		p.peers.Range(func(k, until any) bool {
			if now.After(until.(time.Time)) {
				p.peers.Delete(k)
			}
			return true
		})
	}
	return nil
}

// peekRequest splits a multipart/signed body and reads its SOAP part,
// before the signature is checked, to learn who must have signed it.
func (p *ServerProxy) peekRequest(body []byte, ct string, limit int) (*sign.Message,
	*soap.Message, *soap.Fault) {
	msg, err := sign.Parse(body, ct, limit)
	if err != nil {
		return nil, nil, asFault(err, soap.CodeMalformed)
	}
	if len(msg.SOAP) > p.cfg.Limits.MaxBytes {
		return nil, nil, fault(soap.CodeSizeExceeded, "the request is over %d bytes, the "+
			"most clause 5.2 allows", p.cfg.Limits.MaxBytes)
	}
	req, err := soap.ParseRequest(msg.SOAP, p.cfg.Limits)
	if err != nil {
		return nil, nil, asFault(err, soap.CodeMalformed)
	}
	return msg, req, nil
}

// service returns where the provider's information system answers svc.
func (p *ServerProxy) service(svc ident.Service) (Service, bool) {
	var fallback *Service
	for i, s := range p.cfg.Services {
		if s.Provider != svc.Client {
			continue
		}
		if s.Code == svc.ServiceCode {
			return s, true
		}
		if s.Code == "" && fallback == nil {
			fallback = &p.cfg.Services[i]
		}
	}
	if fallback != nil {
		return *fallback, true
	}
	return Service{}, false
}

// callIS passes the verified request to the provider's information system
// and returns its checked response, parsed.
func (p *ServerProxy) callIS(ctx context.Context, req *soap.Message) (answer *soap.Message,
	faultCode string, f *soap.Fault) {
	h := &req.Header
	s, ok := p.service(h.Service)
	if !ok || s.URL == "" {
		return nil, "", fault(soap.CodeUnknownService, "service %s is not configured on the "+
			"provider's security server", h.Service)
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, s.URL,
		bytes.NewReader(req.Raw))
	if err != nil {
		return nil, "", fault(soap.CodeInternal, "information system URL of %s: %v",
			h.Service, err)
	}
	hr.Header.Set("Content-Type", "text/xml; charset=utf-8")
	hr.Header.Set("SOAPAction", `""`)
	c := s.Client
	if c == nil {
		c = p.isc
	}
	resp, err := c.Do(hr)
	if err != nil {
		return nil, "", fault(soap.CodeProviderDown, "the provider's information system for "+
			"%s did not answer: %v", h.Service, err)
	}
	defer resp.Body.Close()
	raw, over, err := readBounded(resp.Body, p.cfg.ResponseMaxBytes, resp.ContentLength)
	if err != nil {
		return nil, "", fault(soap.CodeProviderDown, "reading the information system's "+
			"answer: %v", err)
	}
	if over {
		return nil, "", fault(soap.CodeProviderFault, "the information system's answer is "+
			"over %d bytes", p.cfg.ResponseMaxBytes)
	}
	m, err := soap.ParseResponse(raw, p.cfg.responseLimits())
	if err != nil {
		f := asFault(err, soap.CodeProviderFault)
		return nil, "", fault(soap.CodeProviderFault, "the information system answered with "+
			"an invalid SOAP message (HTTP %d): %s: %s", resp.StatusCode, f.Code, f.String)
	}
	// A fault may come without the headers; it is still the answer to this
	// request, which the requestHash added next says.
	rh := &m.Header
	headerless := m.Fault != nil && rh.ID == "" && rh.Client.IsZero()
	if !headerless && (rh.ID != h.ID || rh.Client != h.Client || rh.Service != h.Service) {
		return nil, "", fault(soap.CodeProviderFault, "the information system's answer "+
			"headers (id, client, service) do not echo the request")
	}
	if m.Fault != nil {
		return m, m.Fault.Code, nil
	}
	return m, "", nil
}

// meta answers listMethods, allowedMethods and getWsdl from this server's
// configuration.
func (p *ServerProxy) meta(ctx context.Context, conf *globalconf.Conf,
	req *soap.Message) ([]byte, *soap.Fault) {
	h := &req.Header
	provider := h.Service.Client
	code := h.Service.ServiceCode
	switch code {
	case MetaListMethods, MetaAllowedMethods:
		codes := p.codes[provider]
		if code == MetaAllowedMethods {
			allowed := p.cfg.ACL.AllowedCodes(conf, provider, h.Client)
			codes = slices.DeleteFunc(slices.Clone(codes), func(c string) bool {
				return !slices.Contains(allowed, c)
			})
		}
		var b bytes.Buffer
		fmt.Fprintf(&b, "<xrd:%sResponse>", code)
		for _, c := range codes {
			writeService(&b, "xrd:service", ident.Service{Client: provider, ServiceCode: c})
		}
		fmt.Fprintf(&b, "</xrd:%sResponse>", code)
		return soap.NewResponse(*h, b.Bytes()), nil
	}

	want := strings.TrimSpace(bodyText(req.Raw, "serviceCode"))
	wanted := ident.Service{Client: provider, ServiceCode: want}
	// A WSDL tells what a service takes and answers; it is shown only to
	// a client with the right to call the service (2.2.3), else the
	// meta-service would show what the access rights hide.
	if want != "" && !p.cfg.ACL.Allowed(conf, wanted, h.Client) {
		return nil, fault(soap.CodeAccessDenied, "client %s has no access right to "+
			"service %s, so its WSDL is not shown; ask the provider to grant one",
			h.Client, wanted)
	}
	s, ok := p.service(wanted)
	if want == "" || !ok || s.WSDL == "" {
		return nil, fault(soap.CodeUnknownService, "no WSDL is configured for service %q "+
			"of %s", want, provider)
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodGet, s.WSDL, nil)
	if err != nil {
		return nil, fault(soap.CodeInternal, "WSDL URL of %s: %v", want, err)
	}
	c := s.Client
	if c == nil {
		c = p.isc
	}
	resp, err := c.Do(hr)
	if err != nil {
		return nil, fault(soap.CodeProviderDown, "fetching the WSDL of %s: %v", want, err)
	}
	defer resp.Body.Close()
	wsdl, over, err := readBounded(resp.Body, p.cfg.ResponseMaxBytes/2, resp.ContentLength)
	if err != nil || over || resp.StatusCode != http.StatusOK {
		return nil, fault(soap.CodeProviderFault, "the WSDL of %s could not be fetched "+
			"(HTTP %d, within %d bytes)", want, resp.StatusCode, p.cfg.ResponseMaxBytes/2)
	}
	// Service metadata protocol: the information system's address stays
	// hidden from clients.
	wsdl = soapAddress.ReplaceAll(wsdl, []byte("${1}"+xroadEndpoint+"${2}"))
	var b bytes.Buffer
	b.WriteString("<xrd:getWsdlResponse>")
	writeText(&b, "xrd:serviceCode", want)
	b.WriteString("<xrd:wsdl>")
	b.WriteString(base64.StdEncoding.EncodeToString(wsdl))
	b.WriteString("</xrd:wsdl></xrd:getWsdlResponse>")
	return soap.NewResponse(*h, b.Bytes()), nil
}
