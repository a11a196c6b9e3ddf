package proxy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/textproto"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/qapi-az/qapi/appliance/events"
	"github.com/qapi-az/qapi/appliance/globalconf"
	"github.com/qapi-az/qapi/appliance/ident"
	"github.com/qapi-az/qapi/appliance/messagelog"
	"github.com/qapi-az/qapi/appliance/sign"
	"github.com/qapi-az/qapi/appliance/soap"
)

// ClientProxy is the information systems' entry point: an http.Handler to
// mount on the server's HTTP and HTTPS listeners for the internal network.
// Over HTTPS, the listener should request (not require) client
// certificates, so that ISCerts can pin them.
type ClientProxy struct {
	cfg Config

	mu    sync.Mutex
	peers map[string]*http.Client // by owner/code@address
	pools poolCache
	busy  limiter
}

// NewClientProxy checks cfg and returns the client-side proxy.
func NewClientProxy(cfg Config) (*ClientProxy, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	return &ClientProxy{cfg: cfg, peers: map[string]*http.Client{},
		busy: newLimiter(cfg.MaxConcurrent)}, nil
}

// Close drops the idle connections to other security servers.
func (p *ClientProxy) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.peers {
		c.CloseIdleConnections()
	}
}

// ServeHTTP answers POST with an exchange, GET /listClients and GET /wsdl.
func (p *ClientProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !p.busy.acquire(r.Context()) {
		return // the information system gave up waiting
	}
	defer p.busy.release()
	switch {
	case r.Method == http.MethodPost:
		p.serveExchange(w, r)
	case r.Method == http.MethodGet && r.URL.Path == "/listClients":
		p.serveListClients(w, r)
	case r.Method == http.MethodGet && r.URL.Path == "/wsdl":
		p.serveWSDL(w, r)
	default:
		http.Error(w, "POST a SOAP request, or GET /listClients or "+
			"/wsdl?client=CLIENT&service=SERVICE", http.StatusMethodNotAllowed)
	}
}

func (p *ClientProxy) serveExchange(w http.ResponseWriter, r *http.Request) {
	rec := events.Record{Role: events.RoleClient, Received: p.cfg.Now()}
	resp, hdr, f, passed := p.exchange(r, &rec)
	if hdr != nil {
		p.setNotices(w, hdr.Service)
	}
	rec.Done = p.cfg.Now()
	rec.Result = events.ResultOK
	if f != nil {
		rec.Result, rec.FaultCode = events.ResultFault, f.Code
		writeFault(w, f, hdr)
	} else {
		rec.ResponseBytes = len(resp.Raw)
		switch {
		case resp.Fault != nil:
			rec.Result, rec.FaultCode = events.ResultFault, resp.Fault.Code
			// The provider's information system answered with a fault;
			// it is signed and logged like any answer, and passed on.
			writeBody(w, http.StatusInternalServerError, "text/xml; charset=utf-8", resp.Raw)
		case resp.Header.Service.ServiceCode == MetaGetWsdl:
			writeWSDLAttachment(w, resp)
		default:
			writeBody(w, http.StatusOK, "text/xml; charset=utf-8", resp.Raw)
		}
	}
	p.cfg.Events.Emit(rec)
	if f != nil && !passed && p.cfg.Refused != nil {
		p.cfg.Refused(rec, f)
	}
}

// NoticeHeader is the HTTP response header by which the client proxy tells
// an information system of a notice on the service it called: one value
// per notice, "KIND; date=RFC3339; service=SERVICE", KIND being
// end-of-life (3.12) or disconnect (3.14). The SOAP message is unchanged.
const NoticeHeader = "X-Qapi-Notice"

// NoticeValue formats n as a value of NoticeHeader.
func NoticeValue(n globalconf.Notice) string {
	return fmt.Sprintf("%s; date=%s; service=%s", n.Kind,
		n.Effective.UTC().Format(time.RFC3339), n.Service)
}

// setNotices adds a NoticeHeader for each end-of-life or disconnection
// notice on svc in the current global configuration.
func (p *ClientProxy) setNotices(w http.ResponseWriter, svc ident.Service) {
	conf, err := p.cfg.Source.Current()
	if err != nil {
		return
	}
	for _, n := range conf.Warnings(svc) {
		w.Header().Add(NoticeHeader, NoticeValue(n))
	}
}

// writeWSDLAttachment answers a getWsdl response as X-Road clients expect
// it: multipart/related, the SOAP response first and the WSDL as a second,
// text/xml part. The SOAP part still carries the WSDL base64-encoded, as
// the provider's server signed it.
func writeWSDLAttachment(w http.ResponseWriter, resp *soap.Message) {
	wsdl, err := base64.StdEncoding.DecodeString(strings.TrimSpace(bodyText(resp.Raw, "wsdl")))
	if err != nil || len(wsdl) == 0 {
		writeFault(w, fault(soap.CodeProviderFault, "the getWsdl response holds no WSDL"),
			&resp.Header)
		return
	}
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	for _, part := range []struct {
		id   string
		body []byte
	}{{"<soap>", resp.Raw}, {"<wsdl>", wsdl}} {
		pw, err := mw.CreatePart(textproto.MIMEHeader{
			"Content-Type": {"text/xml; charset=UTF-8"}, "Content-Id": {part.id}})
		if err != nil {
			writeFault(w, fault(soap.CodeInternal, "%v", err), &resp.Header)
			return
		}
		pw.Write(part.body)
	}
	mw.Close()
	w.Header().Set("Content-Type", `multipart/related; type="text/xml"; start="<soap>"; `+
		"boundary="+mw.Boundary())
	w.Write(b.Bytes())
}

// readBounded reads at most limit bytes of body and reports whether there
// was more (clause 5.2). size, the Content-Length when known (else -1),
// sizes the buffer so that a message is read without copying it again.
func readBounded(body io.Reader, limit int, size int64) ([]byte, bool, error) {
	n := bytes.MinRead
	if size > 0 && size <= int64(limit) {
		n += int(size)
	}
	buf := bytes.NewBuffer(make([]byte, 0, n))
	if _, err := buf.ReadFrom(io.LimitReader(body, int64(limit)+1)); err != nil {
		return nil, false, err
	}
	return buf.Bytes(), buf.Len() > limit, nil
}

// exchange carries one request. On a fault it returns the request header
// when the request parsed, for the fault to echo, and whether the fault is
// the provider's server's, passed on.
func (p *ClientProxy) exchange(r *http.Request, rec *events.Record) (*soap.Message,
	*soap.Header, *soap.Fault, bool) {
	// Clause 5.2: a request is at most 10 KB; read one byte more to tell.
	raw, over, err := readBounded(r.Body, p.cfg.Limits.MaxBytes, r.ContentLength)
	rec.RequestBytes = len(raw)
	if err != nil {
		return nil, nil, fault(soap.CodeMalformed, "the request could not be read: %v", err),
			false
	}
	if over {
		return nil, nil, fault(soap.CodeSizeExceeded, "the request is over %d bytes, the "+
			"most clause 5.2 allows; send less data per request", p.cfg.Limits.MaxBytes), false
	}
	req, err := soap.ParseRequest(raw, p.cfg.Limits)
	if err != nil {
		return nil, nil, asFault(err, soap.CodeMalformed), false
	}
	h := &req.Header
	rec.MessageID, rec.Client, rec.Service = h.ID, h.Client.String(), h.Service.String()
	if f := p.checkIS(r, h.Client); f != nil {
		return nil, h, f, false
	}
	resp, f, passed := p.send(r.Context(), req, rec)
	return resp, h, f, passed
}

// checkIS enforces ISCerts: a client pinned to certificates is accepted
// only from an information system presenting one of them, and a pinned
// certificate only for its own client.
func (p *ClientProxy) checkIS(r *http.Request, client ident.Client) *soap.Fault {
	if len(p.cfg.ISCerts) == 0 {
		return nil
	}
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		sum := sha256.Sum256(r.TLS.PeerCertificates[0].Raw)
		if c, ok := p.cfg.ISCerts[hex.EncodeToString(sum[:])]; ok {
			if c != client {
				return fault(soap.CodeAccessDenied, "the information system's TLS "+
					"certificate is pinned to client %s, not %s", c, client)
			}
			return nil
		}
	}
	for _, c := range p.cfg.ISCerts {
		if c == client {
			return fault(soap.CodeAccessDenied, "client %s may send only over HTTPS with "+
				"its pinned TLS client certificate", client)
		}
	}
	return nil
}

// send signs, logs and delivers req to the provider's security server and
// returns its verified, logged response. On a fault it reports whether the
// fault is the provider's server's, passed on.
func (p *ClientProxy) send(ctx context.Context, req *soap.Message,
	rec *events.Record) (*soap.Message, *soap.Fault, bool) {
	h := &req.Header
	client, provider := h.Client, h.Service.Client
	if !p.cfg.serves(client) {
		return nil, fault(soap.CodeUnknownClient, "this security server does not serve "+
			"client %s; send its requests through its own security server, or add it "+
			"to the served clients", client), false
	}
	conf, err := p.cfg.Source.Current()
	if err != nil {
		return nil, fault(soap.CodeStaleConf, "the security server has no valid global "+
			"configuration and stops exchanging: %v", err), false
	}
	if !conf.HasClient(client) {
		return nil, fault(soap.CodeUnknownClient, "client %s is not registered in the "+
			"global configuration; register it with the operator", client), false
	}
	// Clause 3.7: a blocked participant neither sends nor is sent to.
	if conf.IsBlocked(client) {
		return nil, fault(soap.CodeBlocked, "client %s is blocked by the operator "+
			"(clause 3.7); contact the operator", client), false
	}
	if conf.IsBlocked(provider) {
		return nil, fault(soap.CodeBlocked, "provider %s is blocked by the operator "+
			"(clause 3.7); its services are unavailable", provider), false
	}
	if !conf.HasClient(provider) {
		return nil, fault(soap.CodeUnknownService, "provider %s is not registered in the "+
			"global configuration; check the service header", provider), false
	}
	if f := disconnected(conf, h.Service, p.cfg.Now()); f != nil {
		return nil, f, false
	}
	servers := providerServers(conf, provider)
	if len(servers) == 0 {
		return nil, fault(soap.CodeUnknownService, "no security server of %s serves "+
			"provider %s in the global configuration", provider.Member(), provider), false
	}
	signer := p.cfg.Signers[client.Member()]
	if signer == nil {
		return nil, fault(soap.CodeInternal, "this security server has no signing key for "+
			"member %s; install its signing certificate", client.Member()), false
	}
	now := p.cfg.Now()
	body, ct, err := signer.Sign(req.Raw, now)
	if err != nil {
		return nil, fault(soap.CodeInternal, "signing the request failed: %v", err), false
	}
	// Clause 2.2.2: the signed request is archived before it leaves.
	if err := p.cfg.Log.Append(ctx, messagelog.Record{Kind: messagelog.KindRequest,
		MessageID: h.ID, Client: rec.Client, Service: rec.Service, Time: now,
		Signed: body, ContentType: ct}); err != nil {
		return nil, logFault(err, "request"), false
	}

	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	rec.Forwarded = p.cfg.Now()
	respBody, respCT, f := p.post(ctx, servers, body, ct)
	rec.Answered = p.cfg.Now()
	if f != nil {
		return nil, f, false
	}
	resp, f, passed := p.checkResponse(conf, req, respBody, respCT)
	if f != nil {
		return nil, f, passed
	}
	if err := p.cfg.Log.Append(ctx, messagelog.Record{Kind: messagelog.KindResponse,
		MessageID: h.ID, Client: rec.Client, Service: rec.Service, Time: p.cfg.Now(),
		Signed: respBody, ContentType: respCT}); err != nil {
		return nil, logFault(err, "response"), false
	}
	return resp, nil, false
}

// providerServers returns the servers that serve provider and belong to
// its member, in configuration order.
func providerServers(conf *globalconf.Conf, provider ident.Client) []globalconf.SecurityServer {
	var out []globalconf.SecurityServer
	for _, s := range conf.ServersOf(provider) {
		if s.Owner.Member() == provider.Member() {
			out = append(out, s)
		}
	}
	return out
}

// errNotPinned marks a TLS peer whose certificate the global configuration
// does not pin for the expected server.
var errNotPinned = errors.New("authentication certificate is not pinned")

// post sends the signed request to the first of servers that takes a
// connection, and returns the response body and Content-Type.
func (p *ClientProxy) post(ctx context.Context, servers []globalconf.SecurityServer,
	body []byte, ct string) ([]byte, string, *soap.Fault) {
	var lastErr error
	for _, ss := range servers {
		hr, err := http.NewRequestWithContext(ctx, http.MethodPost,
			"https://"+ss.Address+"/", bytes.NewReader(body))
		if err != nil {
			return nil, "", fault(soap.CodeInternal, "security server address %q: %v",
				ss.Address, err)
		}
		hr.Header.Set("Content-Type", ct)
		resp, err := p.peer(ss).Do(hr)
		if err != nil {
			if errors.Is(err, errNotPinned) {
				return nil, "", fault(soap.CodeBadCertificate, "the provider's security "+
					"server at %s presented an authentication certificate that the global "+
					"configuration does not pin for %s/%s", ss.Address, ss.Owner, ss.Code)
			}
			lastErr = err
			if isDialError(err) {
				continue // nothing was sent: try the next server
			}
			break
		}
		defer resp.Body.Close()
		if resp.StatusCode >= 300 && resp.StatusCode < 400 {
			return nil, "", fault(soap.CodeProviderFault, "the provider's security server "+
				"at %s answered with a redirect (HTTP %d), which is not followed",
				ss.Address, resp.StatusCode)
		}
		b, over, err := readBounded(resp.Body, p.cfg.ResponseMaxBytes+SignatureOverhead,
			resp.ContentLength)
		if err != nil {
			return nil, "", fault(soap.CodeProviderDown, "reading the response of %s: %v",
				ss.Address, err)
		}
		if over {
			return nil, "", fault(soap.CodeProviderFault, "the response of %s is over %d "+
				"bytes", ss.Address, p.cfg.ResponseMaxBytes)
		}
		return b, resp.Header.Get("Content-Type"), nil
	}
	return nil, "", fault(soap.CodeProviderDown, "no security server of the provider "+
		"answered: %v", lastErr)
}

func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// checkResponse verifies a provider server's answer and returns the SOAP
// response it carries. An unsigned text/xml answer is a fault of the
// provider's server, passed on as it is; the last result tells it so.
func (p *ClientProxy) checkResponse(conf *globalconf.Conf, req *soap.Message, body []byte,
	ct string) (*soap.Message, *soap.Fault, bool) {
	provider := req.Header.Service.Client
	mt, _, _ := mime.ParseMediaType(ct)
	if mt == "text/xml" {
		m, err := soap.ParseResponse(body, p.cfg.responseLimits())
		if err == nil && m.Fault != nil {
			return nil, m.Fault, true
		}
		return nil, fault(soap.CodeProviderFault, "the provider's security server "+
			"answered with an unsigned message that is not a fault"), false
	}
	roots, err := p.pools.roots(conf)
	if err != nil {
		return nil, fault(soap.CodeStaleConf, "%v", err), false
	}
	v, err := sign.Verify(body, ct, sign.VerifyOptions{Roots: roots, Now: p.cfg.Now(),
		Member: provider.Member(), MaxBytes: p.cfg.ResponseMaxBytes + SignatureOverhead,
		CheckOCSP: p.cfg.CheckOCSP})
	if err != nil {
		return nil, asFault(err, soap.CodeBadSignature), false
	}
	resp, err := soap.ParseResponse(v.SOAP, p.cfg.responseLimits())
	if err != nil {
		f := asFault(err, soap.CodeProviderFault)
		return nil, fault(soap.CodeProviderFault, "the provider's signed response is not "+
			"valid: %s: %s", f.Code, f.String), false
	}
	// The requestHash binds the response to this very request.
	if err := soap.CheckRequestHash(resp, req.Raw); err != nil {
		return nil, asFault(err, soap.CodeRequestHash), false
	}
	rh, qh := &resp.Header, &req.Header
	// A fault of the provider's information system may lack the headers;
	// the requestHash above still binds it to this request.
	headerless := resp.Fault != nil && rh.ID == "" && rh.Client.IsZero()
	if !headerless && (rh.ID != qh.ID || rh.Client != qh.Client || rh.Service != qh.Service) {
		return nil, fault(soap.CodeProviderFault, "the provider's response headers (id, "+
			"client, service) do not match the request"), false
	}
	return resp, nil, false
}

// peer returns the HTTP client for one provider security server: TLS 1.3
// with this server's authentication certificate, accepting only a peer
// certificate pinned for that server in the current global configuration
// (2.2.4), and keeping connections alive for reuse.
func (p *ClientProxy) peer(ss globalconf.SecurityServer) *http.Client {
	// A connection is trusted for the pins it was verified against: when
	// the global configuration changes a server's pins, its connections
	// are dropped, not reused.
	name := ss.Owner.String() + "/" + ss.Code + "@" + ss.Address
	key := name + "#" + strings.Join(ss.AuthCertHashes, ",")
	p.mu.Lock()
	defer p.mu.Unlock()
	if c := p.peers[key]; c != nil {
		return c
	}
	for k, c := range p.peers {
		if strings.HasPrefix(k, name+"#") {
			c.CloseIdleConnections()
			delete(p.peers, k)
		}
	}
	owner, code := ss.Owner, ss.Code
	host, _, _ := net.SplitHostPort(ss.Address)
	tc := &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{p.cfg.AuthCert},
		ServerName:   host,
		// The peer is authenticated by the pin below, which is stricter
		// than a name check: only the certificate the operator registered
		// for that server is accepted.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return p.verifyPeer(cs, owner, code)
		},
	}
	tr := &http.Transport{
		TLSClientConfig:     tc,
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second,
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
		WriteBufferSize:     writeBufferSize,
	}
	// A redirect would send the signed request to an address the global
	// configuration does not name, perhaps over plain HTTP.
	c := &http.Client{Transport: tr, CheckRedirect: noRedirect}
	p.peers[key] = c
	return c
}

func (p *ClientProxy) verifyPeer(cs tls.ConnectionState, owner ident.Client,
	code string) error {
	if len(cs.PeerCertificates) == 0 {
		return fmt.Errorf("peer sent no certificate: %w", errNotPinned)
	}
	conf, err := p.cfg.Source.Current()
	if err != nil {
		return err
	}
	cert := cs.PeerCertificates[0]
	ss, ok := conf.ServerByAuthCert(cert.Raw)
	if !ok || ss.Owner != owner || ss.Code != code {
		return fmt.Errorf("peer %q for %s/%s: %w", cert.Subject.SerialNumber, owner, code,
			errNotPinned)
	}
	roots, err := p.pools.roots(conf)
	if err != nil {
		return err
	}
	return verifyChain(roots, cs.PeerCertificates, p.cfg.Now())
}

// verifyChain checks that a pinned certificate is still valid and issued
// by a certification centre of the global configuration (2.3).
func verifyChain(roots *x509.CertPool, chain []*x509.Certificate, now time.Time) error {
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err := chain[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter,
		CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err != nil {
		return fmt.Errorf("authentication certificate %q: %w",
			chain[0].Subject.SerialNumber, err)
	}
	return nil
}

// serveListClients answers the members and subsystems of the global
// configuration (service metadata protocol, listClients).
func (p *ClientProxy) serveListClients(w http.ResponseWriter, r *http.Request) {
	conf, err := p.cfg.Source.Current()
	if err != nil {
		writeFault(w, fault(soap.CodeStaleConf, "the security server has no valid "+
			"global configuration: %v", err), nil)
		return
	}
	if inst := r.URL.Query().Get("xRoadInstance"); inst != "" && inst != conf.Instance {
		http.Error(w, "this security server knows only instance "+conf.Instance,
			http.StatusNotFound)
		return
	}
	members := slices.Clone(conf.Members)
	slices.SortFunc(members, func(a, b globalconf.Member) int {
		return strings.Compare(a.ID.String(), b.ID.String())
	})
	if strings.Contains(r.Header.Get("Accept"), "application/json") {
		writeClientListJSON(w, members)
		return
	}
	var b bytes.Buffer
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?><xrd:clientList xmlns:xrd="` +
		soap.NSXRoad + `" xmlns:id="` + soap.NSIdentifiers + `">`)
	for _, m := range members {
		b.WriteString("<xrd:member>")
		writeClient(&b, "xrd:id", m.ID)
		writeText(&b, "xrd:name", m.Name)
		b.WriteString("</xrd:member>")
		for _, s := range m.Subsystems {
			sub := m.ID
			sub.SubsystemCode = s.Code
			b.WriteString("<xrd:member>")
			writeClient(&b, "xrd:id", sub)
			writeText(&b, "xrd:name", m.Name)
			if s.Name != "" {
				writeText(&b, "xrd:subsystemName", s.Name)
			}
			b.WriteString("</xrd:member>")
		}
	}
	b.WriteString("</xrd:clientList>")
	w.Header().Set("Content-Type", "text/xml; charset=utf-8")
	w.Write(b.Bytes())
}

// jsonClient is one entry of listClients in JSON, with the field names of
// the service metadata protocol's OpenAPI description.
type jsonClient struct {
	ID struct {
		ObjectType    string `json:"object_type"`
		Instance      string `json:"xroad_instance"`
		MemberClass   string `json:"member_class"`
		MemberCode    string `json:"member_code"`
		SubsystemCode string `json:"subsystem_code,omitempty"`
	} `json:"id"`
	Name          string `json:"name"`
	SubsystemName string `json:"subsystem_name,omitempty"`
}

func writeClientListJSON(w http.ResponseWriter, members []globalconf.Member) {
	list := struct {
		Member []jsonClient `json:"member"`
	}{Member: []jsonClient{}}
	add := func(c ident.Client, name, subName string) {
		var j jsonClient
		j.ID.ObjectType, j.ID.Instance, j.ID.MemberClass = c.ObjectType(), c.Instance,
			c.MemberClass
		j.ID.MemberCode, j.ID.SubsystemCode = c.MemberCode, c.SubsystemCode
		j.Name, j.SubsystemName = name, subName
		list.Member = append(list.Member, j)
	}
	for _, m := range members {
		add(m.ID, m.Name, "")
		for _, s := range m.Subsystems {
			sub := m.ID
			sub.SubsystemCode = s.Code
			add(sub, m.Name, s.Name)
		}
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(list)
}

// xroadEndpoint is the address the provider's server writes into a WSDL in
// place of its information system's (service metadata protocol).
const xroadEndpoint = "http://example.org/xroad-endpoint"

var soapAddress = regexp.MustCompile(`(<(?:[A-Za-z0-9_]+:)?address\s+location=")[^"]*(")`)

// serveWSDL fetches a service's WSDL through getWsdl as client and returns
// it with its endpoint set to this proxy, for code generators.
func (p *ClientProxy) serveWSDL(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	client, err := ident.ParseClient(q.Get("client"))
	if err != nil {
		http.Error(w, "GET /wsdl?client=CLIENT&service=SERVICE: "+err.Error(),
			http.StatusBadRequest)
		return
	}
	svc, err := ident.ParseService(q.Get("service"))
	if err != nil {
		http.Error(w, "GET /wsdl?client=CLIENT&service=SERVICE: "+err.Error(),
			http.StatusBadRequest)
		return
	}
	id := make([]byte, 16)
	if _, err := io.ReadFull(randReader, id); err != nil {
		http.Error(w, "no randomness for a message id", http.StatusInternalServerError)
		return
	}
	h := soap.Header{Client: client, Service: ident.Service{Client: svc.Client,
		ServiceCode: MetaGetWsdl}, ID: hex.EncodeToString(id),
		ProtocolVersion: soap.ProtocolVersion}
	var body bytes.Buffer
	body.WriteString("<xrd:getWsdl>")
	writeText(&body, "xrd:serviceCode", svc.ServiceCode)
	if svc.Version != "" {
		writeText(&body, "xrd:serviceVersion", svc.Version)
	}
	body.WriteString("</xrd:getWsdl>")
	raw := soap.NewRequest(h, body.Bytes())

	rec := events.Record{Role: events.RoleClient, Received: p.cfg.Now(),
		MessageID: h.ID, Client: client.String(), Service: h.Service.String(),
		RequestBytes: len(raw)}
	var resp *soap.Message
	passed := false
	req, err := soap.ParseRequest(raw, p.cfg.Limits)
	f := asFaultOrNil(err)
	if f == nil {
		f = p.checkIS(r, client)
	}
	if f == nil {
		resp, f, passed = p.send(r.Context(), req, &rec)
	}
	var wsdl []byte
	if f == nil {
		if resp.Fault != nil {
			f = resp.Fault
		} else if wsdl, err = base64.StdEncoding.DecodeString(
			strings.TrimSpace(bodyText(resp.Raw, "wsdl"))); err != nil || len(wsdl) == 0 {
			f = fault(soap.CodeProviderFault, "the getWsdl response holds no WSDL")
		}
	}
	rec.Done, rec.Result = p.cfg.Now(), events.ResultOK
	if f != nil {
		rec.Result, rec.FaultCode = events.ResultFault, f.Code
		p.cfg.Events.Emit(rec)
		if !passed && p.cfg.Refused != nil {
			p.cfg.Refused(rec, f)
		}
		writeFault(w, f, &h)
		return
	}
	rec.ResponseBytes = len(resp.Raw)
	p.cfg.Events.Emit(rec)
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	self := scheme + "://" + r.Host + "/"
	wsdl = soapAddress.ReplaceAllFunc(wsdl, func(m []byte) []byte {
		sub := soapAddress.FindSubmatch(m)
		return slices.Concat(sub[1], []byte(self), sub[2])
	})
	w.Header().Set("Content-Type", "text/xml; charset=utf-8")
	w.Write(wsdl)
}

func asFaultOrNil(err error) *soap.Fault {
	if err == nil {
		return nil
	}
	return asFault(err, soap.CodeMalformed)
}
