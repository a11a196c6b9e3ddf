// Command qapi-portal runs the operator's central services: the
// certification centre and its OCSP responder, the time-stamping
// authority, the registry, the global configuration publisher and the
// incident register. Security servers reach its public listener; the
// operator reaches its API on loopback over HTTPS with the token in the
// connection file it writes, DIR/operator.json, through 'qapi portal'.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/qapi-az/qapi/portal"
)

func main() {
	dir := flag.String("dir", "/var/lib/qapi-portal", "data directory (portal.db, operator.json)")
	listen := flag.String("listen", ":8080", "public listener for security servers")
	publicURL := flag.String("public-url", "", "how security servers reach the public "+
		"listener (default http://127.0.0.1:PORT); written into certificates")
	operator := flag.String("operator", "127.0.0.1:8443", "operator API listener (HTTPS)")
	instances := flag.String("instances", "AZ,AZ-TEST", "instance names, production first")
	holidays := flag.String("holidays", "", "non-working dates 2006-01-02, comma-separated")
	validity := flag.Duration("conf-validity", 10*time.Minute,
		"validity period of each published global configuration")
	tlsCert := flag.String("tls-cert", "", "serve the public listener over HTTPS with "+
		"this PEM certificate file (with -tls-key); -public-url must then be https")
	tlsKey := flag.String("tls-key", "", "the PEM private key file of -tls-cert")
	flag.Parse()
	if (*tlsCert == "") != (*tlsKey == "") {
		fmt.Fprintln(os.Stderr, "qapi-portal: -tls-cert and -tls-key go together")
		os.Exit(2)
	}

	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(log, *dir, *listen, *publicURL, *operator, *instances, *holidays,
		*validity, *tlsCert, *tlsKey); err != nil {
		log.Error("qapi-portal stopped", "err", err)
		os.Exit(1)
	}
}

func split(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func run(log *slog.Logger, dir, listen, publicURL, operator, instances, holidays string,
	validity time.Duration, tlsCert, tlsKey string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	pl, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("public listener: %w", err)
	}
	if publicURL == "" {
		scheme := "http"
		if tlsCert != "" {
			scheme = "https"
		}
		publicURL = fmt.Sprintf("%s://127.0.0.1:%d", scheme, pl.Addr().(*net.TCPAddr).Port)
	}
	p, err := portal.Open(portal.Options{Dir: dir, PublicURL: publicURL,
		Instances: split(instances), Holidays: split(holidays), ConfValidity: validity})
	if err != nil {
		return err
	}
	defer p.Close()

	ol, err := net.Listen("tcp", operator)
	if err != nil {
		return fmt.Errorf("operator listener: %w", err)
	}
	host, _, _ := net.SplitHostPort(ol.Addr().String())
	token := portal.NewToken()
	url := "https://" + ol.Addr().String()
	cfg, conn, err := p.OperatorTLS(url, token, []string{host, "localhost"})
	if err != nil {
		return err
	}
	connPath := filepath.Join(dir, "operator.json")
	if err := portal.WriteConn(connPath, conn); err != nil {
		return err
	}

	pub := portal.NewServer(p.PublicHandler())
	ops := portal.NewServer(p.OperatorHandler(token))
	errc := make(chan error, 3)
	go func() {
		if tlsCert != "" {
			errc <- pub.ServeTLS(pl, tlsCert, tlsKey)
			return
		}
		errc <- pub.Serve(pl)
	}()
	go func() { errc <- ops.Serve(tls.NewListener(ol, cfg)) }()
	go func() { errc <- p.Run(ctx) }()
	log.Info("portal started", "public", publicURL, "operator", url, "connection", connPath,
		"instances", instances)

	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	pub.Shutdown(sctx)
	ops.Shutdown(sctx)
	if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	log.Info("portal stopped")
	return nil
}
