// Command qapi-sampleis serves the sample information system, a synthetic
// population register ("Əhalinin Dövlət Reyestri"), over HTTP or HTTPS:
// SOAP operations getPerson and searchPersons on POST, the WSDL on
// GET /?wsdl.
//
//	qapi-sampleis -listen 127.0.0.1:8090
package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/qapi-az/qapi/internal/sampleis"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8090", "the `address` to listen on")
	cert := flag.String("tls-cert", "", "serve HTTPS with this PEM certificate `file`")
	key := flag.String("tls-key", "", "the PEM private key `file` of -tls-cert")
	flag.Parse()
	logger := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	if err := run(logger, *listen, *cert, *key); err != nil {
		fmt.Fprintln(os.Stderr, "qapi-sampleis:", err)
		os.Exit(1)
	}
}

func run(logger *slog.Logger, listen, cert, key string) error {
	if (cert == "") != (key == "") {
		return errors.New("-tls-cert and -tls-key go together")
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: sampleis.New(), ReadHeaderTimeout: 10 * time.Second}
	scheme := "http"
	if cert != "" {
		scheme = "https"
	}
	logger.Info("population register serving", "wsdl",
		scheme+"://"+ln.Addr().String()+"/?wsdl", "persons", sampleis.PersonCount)
	if cert != "" {
		return srv.ServeTLS(ln, cert, key)
	}
	return srv.Serve(ln)
}
