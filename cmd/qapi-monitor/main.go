// Command qapi-monitor is the local monitoring station (clauses 2.6, 2.7).
//
// It listens on a Unix socket for the security server's metadata records,
// serves a status page and Prometheus metrics over HTTP, and keeps its
// history in its own state directory. Started as root, it binds its
// socket and port, then confines itself (Landlock to the state directory,
// an unprivileged user) and proves, before serving, that it cannot open
// any of the -deny paths: the message log, the keys, the configuration.
// While it runs it tries them again every 10 s and shows the outcome on
// its page and in the qapi_confinement_refused metric.
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
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/qapi-az/qapi/monitor"
	"github.com/qapi-az/qapi/monitor/confine"
	"github.com/qapi-az/qapi/monitor/stats"
)

func main() {
	if err := run(); err != nil {
		slog.Error("monitor stopped", "err", err)
		os.Exit(1)
	}
}

func run() error {
	state := flag.String("state", "/perm/qapi-monitor", "state directory (history, socket)")
	socket := flag.String("socket", "", "Unix socket for the security server "+
		"(default STATE/monitor.sock)")
	listen := flag.String("listen", "127.0.0.1:8090", "address of the status page and /metrics")
	retention := flag.Duration("retention", 7*24*time.Hour, "how long per-minute history is kept")
	doConfine := flag.Bool("confine", true, "drop to -uid/-gid and confine with Landlock "+
		"(needs root); false for development only")
	uid := flag.Int("uid", 65534, "user to run as after start-up")
	gid := flag.Int("gid", 65534, "group to run as after start-up")
	deny := flag.String("deny", "", "comma-separated paths the monitor must not be able to "+
		"open (message log, keys, configuration); it refuses to run if it can")
	dropQuiet := flag.Duration("drop-quiet", monitor.DefaultThresholds.DropQuiet,
		"how long the events_dropped alert stays raised after the dropped total last grew")
	maxRows := flag.Int("max-rows", stats.DefaultMaxRows, "rows of a role, client and "+
		"service kept apart; past it those seen least recently are folded into one")
	flag.Parse()

	logger := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	slog.SetDefault(logger)

	if err := os.MkdirAll(*state, 0o700); err != nil {
		return fmt.Errorf("create state directory: %w", err)
	}
	if *socket == "" {
		*socket = filepath.Join(*state, "monitor.sock")
	}
	var paths []string
	if *deny != "" {
		paths = strings.Split(*deny, ",")
	}
	st, err := monitor.New(monitor.Config{Socket: *socket, Disk: *state,
		History: filepath.Join(*state, "monitor.db"), Retention: *retention, Deny: paths,
		MaxRows: *maxRows, Thresholds: monitor.Thresholds{DropQuiet: *dropQuiet}})
	if err != nil {
		return err
	}
	defer st.Close()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen for the status page: %w", err)
	}

	if *doConfine {
		port := uint16(ln.Addr().(*net.TCPAddr).Port)
		if err := confine.Apply(confine.Options{UID: *uid, GID: *gid, StateDir: *state,
			ReadOnly: []string{"/proc", "/sys"}, BindTCP: []uint16{port}}); err != nil {
			return err
		}
		if err := confine.Verify(paths); err != nil {
			return err
		}
		slog.Info("confined", "uid", *uid, "gid", *gid, "state", *state,
			"denied", paths, "clause", "2.7")
	} else {
		slog.Warn("NOT CONFINED: the monitor runs with the privileges it was started " +
			"with; use -confine=false for development only (clause 2.7)")
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv := &http.Server{Handler: st.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	go func() {
		err := srv.Serve(ln)
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			slog.Error("status page stopped", "err", err)
			stop()
		}
	}()
	slog.Info("monitoring station listening", "socket", *socket, "page", "http://"+
		ln.Addr().String()+"/")
	return st.Run(ctx)
}
