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
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/qapi-az/qapi/appliance/events"
	"github.com/qapi-az/qapi/appliance/globalconf"
	"github.com/qapi-az/qapi/appliance/ident"
	"github.com/qapi-az/qapi/appliance/keys"
	"github.com/qapi-az/qapi/appliance/proxy"
	"github.com/qapi-az/qapi/appliance/server"
)

func main() {
	configPath := flag.String("config", "/perm/qapi/qapi-server.json",
		"the configuration `file` (docs/configuration.md)")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile to `file` until "+
		"the server stops (for qapi-bench)")
	memProfile := flag.String("memprofile", "", "write a heap profile (allocations "+
		"since start included) to `file` when the server stops")
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
	if *memProfile != "" {
		if perr := writeHeapProfile(*memProfile); perr != nil {
			fmt.Fprintln(os.Stderr, "qapi-server:", perr)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "qapi-server:", err)
		os.Exit(1)
	}
}

// memoryLimit is the Go runtime's soft memory limit unless GOMEMLIMIT sets
// one: the appliance's budget is 64 MB resident per server, and without a
// limit the heap of a busy server briefly doubles past it between
// collections. The mapped pages of the message log and the databases, about
// 13 MB under load, count against the budget too: at 48 MiB a server
// serving 64 exchanges at once reached 62-65 MB, at 40 MiB 55-58 MB with no
// CPU cost seen.
const memoryLimit = 40 << 20

// gcPercent is the Go runtime's GOGC unless the environment sets one: a
// collection every time the heap doubles (Go's default) cost a busy server
// a tenth of its CPU; letting it grow to three times the live data keeps
// the peak resident memory within the budget, since the soft memory limit
// above forces collections sooner when the heap nears it.
const gcPercent = 200

func run(configPath string) error {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(memoryLimit)
	}
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
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

	store, err := server.OpenKeyStore(cfg)
	if err != nil {
		return err
	}
	defer store.Close()
	if cfg.KeyStore == server.KeyStoreDev {
		// Clause 6.2.3 wants the keys protected; these are in plain files.
		logger.Warn(keys.DevMode, "keyDir", cfg.KeyDirPath())
	} else {
		logger.Info("keys sealed by the TPM", "dir", cfg.TPM.Dir)
	}
	errLog := slog.NewLogLogger(handler, slog.LevelWarn)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	// The status sent to the monitoring station and the management API's
	// global configuration need the server, which starts after the API:
	// both ask once the server exists.
	var running atomic.Pointer[server.Server]
	if cfg.Manage != nil {
		api, err := server.StartManage(cfg, store, server.ManageOptions{
			Conf: runningConf{&running}, ErrorLog: errLog,
			Faults: func() []string {
				if srv := running.Load(); srv != nil {
					return srv.Faults()
				}
				return nil
			}})
		if err != nil {
			return err
		}
		defer api.Close()
		logger.Info("management API started", "addr", api.Addr(), "conn", api.ConnFile())
	}

	var sink events.Sink = events.Discard
	if cfg.MonitorSocket != "" {
		ss := events.NewSocketSink(cfg.MonitorSocketPath(), events.SocketOptions{
			Status: func() events.Status {
				if srv := running.Load(); srv != nil {
					return srv.Status()
				}
				return events.Status{Time: time.Now()}
			}})
		defer ss.Close()
		sink = ss
	}
	ls := newLogSink(logger, sink, func(svc ident.Service) []globalconf.Notice {
		srv := running.Load()
		if srv == nil {
			return nil
		}
		conf, err := srv.GlobalConf().Current()
		if err != nil {
			return nil
		}
		return conf.Warnings(svc)
	})
	defer ls.close()

	opts := server.Options{Keys: store, Events: ls, ErrorLog: errLog,
		Archived: func(written, pruned []string, err error) {
			if err != nil {
				logger.Error("archiving the message log failed; retried next period",
					"err", err)
				return
			}
			if len(written)+len(pruned) > 0 {
				logger.Info("message log archived", "written", written, "pruned", pruned)
			}
		}}
	srv, err := newServer(ctx, logger, cfg, opts)
	if err != nil {
		return err
	}
	running.Store(srv)
	if err := srv.Start(); err != nil {
		srv.Shutdown(context.Background())
		return err
	}
	logger.Info("security server started", "member", cfg.Identity.Member,
		"serverCode", cfg.Identity.ServerCode,
		"clientHTTP", srv.Addr(server.RoleClientHTTP),
		"clientHTTPS", srv.Addr(server.RoleClientHTTPS),
		"server", srv.Addr(server.RoleServer))

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

// registrationWait is how often a server waiting for registration looks
// for its certificates and anchor.
const registrationWait = 10 * time.Second

// newServer builds the server. With a management API configured, a server
// whose certificates or anchor are not there yet waits for them: `qapi
// register` puts them there through the API.
func newServer(ctx context.Context, logger *slog.Logger, cfg *server.Config,
	opts server.Options) (*server.Server, error) {
	for {
		srv, err := server.New(cfg, opts)
		if err == nil || cfg.Manage == nil || !errors.Is(err, fs.ErrNotExist) {
			return srv, err
		}
		logger.Warn("waiting for registration: certificates or anchor missing; "+
			"register with 'qapi register' through the management API", "err", err)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("stopped before registration: %w", err)
		case <-time.After(registrationWait):
		}
	}
}

// logSink logs one line per exchange and passes the record on. Emit never
// blocks: lines wait in a buffer written by one goroutine, and are dropped
// and counted when it is full. An exchange of a service with an end-of-life
// (3.12) or disconnection (3.14) notice is logged as a warning whose
// notice attribute names them, as the client proxy's X-Qapi-Notice does.
type logSink struct {
	logger  *slog.Logger
	next    events.Sink
	notices func(ident.Service) []globalconf.Notice
	ch      chan events.Record
	done    chan struct{}
	dropped atomic.Uint64
}

func newLogSink(logger *slog.Logger, next events.Sink,
	notices func(ident.Service) []globalconf.Notice) *logSink {
	s := &logSink{logger: logger, next: next, notices: notices,
		ch: make(chan events.Record, 4096), done: make(chan struct{})}
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
		var notices []string
		if svc, err := ident.ParseService(r.Service); err == nil && s.notices != nil {
			for _, n := range s.notices(svc) {
				notices = append(notices, proxy.NoticeValue(n))
			}
		}
		if len(notices) > 0 {
			attrs = append(attrs, "notice", notices)
		}
		if r.FaultCode != "" {
			attrs = append(attrs, "faultCode", r.FaultCode)
		}
		if r.FaultCode != "" || len(notices) > 0 {
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

// runningConf is the global configuration of the running server, for the
// management API, which starts before the server. Until the server runs it
// has none, and the API fetches the configuration its anchor names.
type runningConf struct {
	srv *atomic.Pointer[server.Server]
}

func (r runningConf) Current() (*globalconf.Conf, error) {
	if srv := r.srv.Load(); srv != nil {
		return srv.GlobalConf().Current()
	}
	return nil, errors.New("the security server is not running yet")
}

// writeHeapProfile writes the heap profile, whose alloc_space and
// alloc_objects samples count every allocation since the start, to path.
func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		f.Close()
		return fmt.Errorf("writing the heap profile: %w", err)
	}
	return f.Close()
}
