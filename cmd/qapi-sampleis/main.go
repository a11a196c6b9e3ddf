// Command qapi-sampleis serves the sample information system, a synthetic
// population register ("Əhalinin Dövlət Reyestri"), over HTTP or HTTPS:
// SOAP operations getPerson and searchPersons on POST, the WSDL on
// GET /?wsdl.
//
//	qapi-sampleis -listen 127.0.0.1:8090
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/qapi-az/qapi/internal/sampleis"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8090", "the `address` to listen on")
	cert := flag.String("tls-cert", "", "serve HTTPS with this PEM certificate `file`")
	key := flag.String("tls-key", "", "the PEM private key `file` of -tls-cert")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile to `file` until "+
		"SIGTERM or SIGINT (for qapi-bench)")
	flag.Parse()
	logger := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	if os.Getenv("GOGC") == "" {
		// The register keeps little in memory between requests, and a
		// collection each time the heap doubled cost it about 6 % of its
		// CPU under qapi-bench.
		debug.SetGCPercent(400)
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "qapi-sampleis:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := run(ctx, logger, *listen, *cert, *key); err != nil {
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "qapi-sampleis:", err)
		os.Exit(1)
	}
}

// run serves until ctx is done, then stops.
func run(ctx context.Context, logger *slog.Logger, listen, cert, key string) error {
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
	go func() {
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(shut)
	}()
	if cert != "" {
		err = srv.ServeTLS(ln, cert, key)
	} else {
		err = srv.Serve(ln)
	}
	if errors.Is(err, http.ErrServerClosed) {
		logger.Info("population register stopped")
		return nil
	}
	return err
}
