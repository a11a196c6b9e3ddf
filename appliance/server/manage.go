package server

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"github.com/qapi-az/qapi/appliance/globalconf"
	"github.com/qapi-az/qapi/appliance/keys"
	"github.com/qapi-az/qapi/appliance/manage"
)

// ManageAPI is the management API of package manage (onboarding, clause
// 4.1.2) served over HTTPS on the internal network, so that `qapi register`
// drives a running server. It runs before the server has certificates:
// it is how the server gets them.
type ManageAPI struct {
	// Manager is the registration state the API changes.
	Manager *manage.Manager
	ln      net.Listener
	hs      *http.Server
	conn    string
	done    chan struct{}
}

// ManageOptions are what the management API reads from the running
// server, which usually starts after the API.
type ManageOptions struct {
	// Conf, when set, is the server's global configuration, whose
	// certification centres an imported certificate must chain to.
	Conf globalconf.Source
	// Faults, when set, returns the running server's faults, such as a
	// damaged message log entry, shown by GET /api/status.
	Faults func() []string
	// ErrorLog receives the HTTP server's errors; the log package's
	// standard logger when nil.
	ErrorLog *log.Logger
}

// StartManage serves the management API at cfg.Manage.Listen with the keys
// of store. The connection file, with the API's URL, token and TLS
// certificate, is written to ConnFile; only those who can read it can use
// the API.
func StartManage(cfg *Config, store keys.Store, opts ManageOptions) (*ManageAPI, error) {
	if cfg.Manage == nil {
		return nil, errors.New("the configuration has no manage section")
	}
	dir := cfg.path(cfg.Manage.Dir)
	m, err := manage.Open(manage.Options{Dir: dir, Keys: store, Conf: opts.Conf,
		Faults: opts.Faults})
	if err != nil {
		return nil, fmt.Errorf("management state %s: %w", dir, err)
	}
	ln, err := net.Listen("tcp", cfg.Manage.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen for the management API on %s: %w",
			cfg.Manage.Listen, err)
	}
	hosts := cfg.Manage.Hosts
	host, _, _ := net.SplitHostPort(ln.Addr().String())
	if len(hosts) == 0 {
		hosts = []string{host}
		if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
			hosts = []string{"localhost", "127.0.0.1"}
		}
	}
	tc, token, err := m.APIListener("https://"+net.JoinHostPort(hosts[0], port(ln)), hosts)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("prepare the management API: %w", err)
	}
	a := &ManageAPI{Manager: m, ln: ln, conn: filepath.Join(dir, "manage.json"),
		done: make(chan struct{}),
		hs: &http.Server{Handler: m.Handler(token), TLSConfig: tc,
			ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute,
			WriteTimeout: 2 * time.Minute, ErrorLog: opts.ErrorLog}}
	go func() {
		defer close(a.done)
		a.hs.Serve(tls.NewListener(ln, tc))
	}()
	return a, nil
}

func port(ln net.Listener) string {
	_, p, _ := net.SplitHostPort(ln.Addr().String())
	return p
}

// Addr is the address the API listens on.
func (a *ManageAPI) Addr() string { return a.ln.Addr().String() }

// ConnFile is the connection file (manage.Conn) that `qapi register -conn`
// reads.
func (a *ManageAPI) ConnFile() string { return a.conn }

// Close stops serving at once.
func (a *ManageAPI) Close() error {
	err := a.hs.Close()
	<-a.done
	return err
}
