// Command qapi-sandbox runs a whole exchange on loopback: the operator's
// portal with the agencies and information systems of appendix 1, two
// security servers registered through the real flow, and a sample
// information system. It prints what to open and a request to try, and
// stops cleanly on Ctrl-C.
//
//	go run ./cmd/qapi-sandbox
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/qapi-az/qapi/appliance/keys"
	"github.com/qapi-az/qapi/portal/sandbox"
)

func main() {
	dir := flag.String("dir", "", "state folder, which must not exist yet (default: a "+
		"temporary folder removed on exit)")
	interval := flag.Duration("fetch-interval", 5*time.Second,
		"how often the security servers fetch the global configuration")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(log, *dir, *interval); err != nil {
		log.Error("qapi-sandbox stopped", "err", err)
		os.Exit(1)
	}
}

func run(log *slog.Logger, dir string, interval time.Duration) error {
	temp := dir == ""
	if temp {
		d, err := os.MkdirTemp("", "qapi-sandbox-")
		if err != nil {
			return err
		}
		dir = d
		defer os.RemoveAll(dir)
	} else if _, err := os.Stat(dir); err == nil {
		return fmt.Errorf("%s exists; give a new folder, the sandbox builds it from "+
			"nothing", dir)
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	log.Warn(keys.DevMode)
	start := time.Now()
	s, err := sandbox.Start(ctx, sandbox.Options{Dir: dir, FetchInterval: interval})
	if err != nil {
		return err
	}
	defer s.Close()
	took := time.Since(start)

	reqPath := filepath.Join(dir, "getPerson.xml")
	if err := os.WriteFile(reqPath, s.GetPersonRequest("sandbox-curl-1"), 0o644); err != nil {
		return err
	}
	fmt.Printf(`Qapı sandbox is up (started in %s), state in %s

Portal (operator's central services)
  public URL          %s
  global config (AZ)  %s/globalconf/AZ
  operator API        export QAPI_PORTAL_CONN=%s
                      go run ./cmd/qapi portal members | head
                      go run ./cmd/qapi portal servers
                      go run ./cmd/qapi portal incidents

Security servers (dev keys in plain files, no TPM)
  %-18s  client proxy %s  serves %s
                      export QAPI_MANAGE_CONN=%s; go run ./cmd/qapi register status
  %-18s  client proxy %s  serves %s

Sample information system (population register)
  WSDL                %s/?wsdl

Try an exchange (police asks the population register, through both servers;
sed gives each request a fresh message id, as clause 6.2.4 refuses a replayed one):
  sed "s/sandbox-curl-1/curl-$(date +%%s%%N)/" %s |
    curl -s -H 'Content-Type: text/xml; charset=utf-8' --data-binary @- %s

Block the police and try again within %s:
  go run ./cmd/qapi portal block %s -clause 3.7.1 -reason test

Ctrl-C stops everything.
`, took.Round(time.Millisecond), dir, s.PublicURL, s.PublicURL, s.OperatorConn,
		s.Client.Code, s.Client.ClientURL(), s.Client.Subsystem, s.Client.ManageConn,
		s.Provider.Code, s.Provider.ClientURL(), s.Provider.Subsystem,
		s.ISURL, reqPath, s.Client.ClientURL(), interval, s.Client.Subsystem)

	<-ctx.Done()
	log.Info("stopping")
	return nil
}
