// Command qapi-server is the security server daemon: the client-side proxy
// for the member's information systems and the server-side proxy for other
// security servers, configured by one JSON file (docs/configuration.md).
//
//	qapi-server -config /perm/qapi/qapi-server.json
//
// It logs JSON lines to stderr: one line per exchange and side, with the
// message id, client, service, result and durations, never a message body.
// SIGTERM or SIGINT stops it gracefully: exchanges under way finish, then
// the message log is flushed and closed. SIGHUP fetches the global
// configuration (or reads its file) again at once.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/qapi-az/qapi/appliance/events"
	"github.com/qapi-az/qapi/appliance/keys"
	"github.com/qapi-az/qapi/appliance/server"
)

func main() {
	configPath := flag.String("config", "/perm/qapi/qapi-server.json",
		"the configuration `file` (docs/configuration.md)")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile to `file` until "+
		"the server stops (for qapi-bench)")
	flag.Parse()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "qapi-server:", err)
			os.Exit(1)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "qapi-server:", err)
			os.Exit(1)
		}
	}
	err := run(*configPath)
	if *cpuProfile != "" {
		pprof.StopCPUProfile()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "qapi-server:", err)
		os.Exit(1)
	}
}

// memoryLimit is the Go runtime's soft memory limit unless GOMEMLIMIT sets
// one: the appliance's budget is 64 MB resident per server, and without a
// limit the heap of a busy server briefly doubles past it between
// collections.
const memoryLimit = 48 << 20

func run(configPath string) error {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(memoryLimit)
	}
	cfg, err := server.LoadConfig(configPath)
	if err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		return fmt.Errorf("logLevel: %w", err)
	}
	handler := slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level})
	logger := slog.New(handler)

	store, err := keys.NewFileStore(cfg.KeyDirPath())
	if err != nil {
		return err
	}
	defer store.Close()
	// Clause 6.2.3 wants the keys protected; this build keeps them in files.
	logger.Warn(keys.DevMode, "keyDir", store.Dir())

	var sink events.Sink = events.Discard
	if cfg.MonitorSocket != "" {
		ss := events.NewSocketSink(cfg.MonitorSocketPath(), events.SocketOptions{})
		defer ss.Close()
		sink = ss
	}
	ls := newLogSink(logger, sink)
	defer ls.close()

	srv, err := server.New(cfg, server.Options{Keys: store, Events: ls,
		ErrorLog: slog.NewLogLogger(handler, slog.LevelWarn)})
	if err != nil {
		return err
	}
	if err := srv.Start(); err != nil {
		srv.Shutdown(context.Background())
		return err
	}
	logger.Info("security server started", "member", cfg.Identity.Member,
		"serverCode", cfg.Identity.ServerCode,
		"clientHTTP", srv.Addr(server.RoleClientHTTP),
		"clientHTTPS", srv.Addr(server.RoleClientHTTPS),
		"server", srv.Addr(server.RoleServer))

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	var serveErr error
wait:
	for {
		select {
		case <-hup:
			took, err := srv.ReloadGlobalConf()
			if err != nil {
				logger.Error("global configuration not reloaded", "err", err)
			} else {
				logger.Info("global configuration reloaded", "newVersion", took)
			}
		case <-ctx.Done():
			logger.Info("stopping: signal received")
			break wait
		case serveErr = <-srv.Err():
			logger.Error("stopping: a listener failed", "err", serveErr)
			break wait
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	logger.Info("stopped", "logLinesDropped", ls.dropped.Load())
	return serveErr
}

// logSink logs one line per exchange and passes the record on. Emit never
// blocks: lines wait in a buffer written by one goroutine, and are dropped
// and counted when it is full.
type logSink struct {
	logger  *slog.Logger
	next    events.Sink
	ch      chan events.Record
	done    chan struct{}
	dropped atomic.Uint64
}

func newLogSink(logger *slog.Logger, next events.Sink) *logSink {
	s := &logSink{logger: logger, next: next, ch: make(chan events.Record, 4096),
		done: make(chan struct{})}
	go s.run()
	return s
}

func (s *logSink) Emit(r events.Record) {
	s.next.Emit(r)
	select {
	case s.ch <- r:
	default:
		s.dropped.Add(1)
	}
}

func (s *logSink) run() {
	defer close(s.done)
	for r := range s.ch {
		attrs := []any{"role", r.Role, "messageId", r.MessageID, "client", r.Client,
			"service", r.Service, "result", r.Result,
			"totalMs", ms(r.Done.Sub(r.Received)), "processingMs", ms(r.ProcessingTime()),
			"requestBytes", r.RequestBytes, "responseBytes", r.ResponseBytes}
		if !r.Forwarded.IsZero() && !r.Answered.IsZero() {
			attrs = append(attrs, "nextHopMs", ms(r.Answered.Sub(r.Forwarded)))
		}
		if r.FaultCode != "" {
			attrs = append(attrs, "faultCode", r.FaultCode)
			s.logger.Warn("exchange", attrs...)
			continue
		}
		s.logger.Info("exchange", attrs...)
	}
}

func (s *logSink) close() {
	close(s.ch)
	<-s.done
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
