package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/qapi-az/qapi/internal/sampleis"
)

// proc is a started program.
type proc struct {
	name   string
	cmd    *exec.Cmd
	exited chan struct{}
}

func start(name, bin string, logPath string, args ...string) (*proc, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, exited: make(chan struct{})}
	go func() { cmd.Wait(); f.Close(); close(p.exited) }()
	return p, nil
}

// stop ends the program gracefully, or kills it after 10 s.
func (p *proc) stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.exited
	}
}

// cpuTime returns the user and system CPU time the process pid has used.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name, field 2, may hold spaces; the fields after its
	// closing parenthesis start with field 3.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	var utime, stime int64
	if _, err := fmt.Sscan(f[11], &utime); err != nil {
		return 0, err
	}
	if _, err := fmt.Sscan(f[12], &stime); err != nil {
		return 0, err
	}
	const ticks = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / ticks, nil
}

// memory returns the process's memory figures from /proc/PID/status, in
// kB: VmRSS, VmHWM, and the anonymous and file-backed parts of VmRSS (the
// message log's and the databases' memory-mapped files count as the
// latter).
func (p *proc) memory() (map[string]int, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m := map[string]int{}
	s := bufio.NewScanner(f)
	for s.Scan() {
		name, rest, ok := strings.Cut(s.Text(), ":")
		if !ok {
			continue
		}
		switch name {
		case "VmRSS", "VmHWM", "RssAnon", "RssFile":
			var v int
			if _, err := fmt.Sscanf(strings.TrimSpace(rest), "%d kB", &v); err == nil {
				m[name] = v
			}
		}
	}
	return m, s.Err()
}

func waitListening(addrs ...string) error {
	deadline := time.Now().Add(20 * time.Second)
	for _, a := range addrs {
		for {
			c, err := net.DialTimeout("tcp", a, time.Second)
			if err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("nothing listens on %s after 20 s; see the logs", a)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

func run(o options, out io.Writer) error {
	if o.size > 10240 {
		return fmt.Errorf("-size %d is over the 10240 bytes of clause 5.2", o.size)
	}
	work, err := os.MkdirTemp(o.dir, "qapi-bench-")
	if err != nil {
		return err
	}
	if o.keep {
		fmt.Fprintln(out, "working folder:", work)
	} else {
		defer os.RemoveAll(work)
	}
	bin := o.bin
	if bin == "" {
		bin = filepath.Join(work, "bin")
		if err := buildPrograms(bin); err != nil {
			return err
		}
	}
	c, p, isAddr, err := setup(work, o.serverLogLevel)
	if err != nil {
		return err
	}
	isArgs := []string{"-listen", isAddr}
	if o.cpuProfile != "" {
		isArgs = append(isArgs, "-cpuprofile", o.cpuProfile+"-register.pprof")
		f, err := os.Create(o.cpuProfile + "-load.pprof")
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	isProc, err := start("qapi-sampleis", filepath.Join(bin, "qapi-sampleis"),
		filepath.Join(work, "sampleis.log"), isArgs...)
	if err != nil {
		return err
	}
	defer isProc.stop()
	var servers []*proc
	for _, n := range []*node{p, c} {
		args := []string{"-config", filepath.Join(n.dir, "qapi-server.json")}
		if o.cpuProfile != "" {
			role := map[*node]string{c: "client", p: "provider"}[n]
			args = append(args, "-cpuprofile", o.cpuProfile+"-"+role+".pprof")
		}
		sp, err := start("qapi-server "+n.code, filepath.Join(bin, "qapi-server"),
			filepath.Join(n.dir, "server.log"), args...)
		if err != nil {
			return err
		}
		defer sp.stop()
		servers = append(servers, sp)
	}
	if err := waitListening(isAddr, p.serverAddr, c.clientAddr); err != nil {
		return err
	}

	chainURL := "http://" + c.clientAddr + "/"
	isURL := "http://" + isAddr + "/"
	host, _ := os.Hostname()
	fmt.Fprintf(out, "qapi-bench %s, %s/%s, %d CPUs, GOMAXPROCS %d, host %s\n",
		time.Now().UTC().Format(time.RFC3339), runtime.GOOS, runtime.GOARCH,
		runtime.NumCPU(), runtime.GOMAXPROCS(0), host)
	sync, err := syncLatency(work)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "request %d bytes (searchPersons), message logging on, %d clients\n",
		len(request(o.size, "x")), o.clients)
	fmt.Fprintf(out, "files in %s: a 4 KiB write + fdatasync takes %.2f ms (median of 20)\n\n",
		work, float64(sync.Microseconds())/1000)

	// Warm up connections and caches; not measured.
	if _, err := load(chainURL, o.size, o.clients, 2*time.Second, 0); err != nil {
		return err
	}
	pids := map[string]int{"client SS": servers[1].cmd.Process.Pid,
		"provider SS": servers[0].cmd.Process.Pid, "register": isProc.cmd.Process.Pid,
		"load generator": os.Getpid()}
	for _, r := range []struct {
		name  string
		url   string
		rate  int
		dur   time.Duration
		label string
	}{
		{"chain", chainURL, 0, o.duration, "IS -> client SS -> provider SS -> IS"},
		{"direct", isURL, 0, o.duration, "straight at the register"},
		{"rate", chainURL, o.rate, o.rateDuration,
			fmt.Sprintf("%d requests/s through the chain", o.rate)},
	} {
		before := map[string]time.Duration{}
		for name, pid := range pids {
			if before[name], err = cpuTime(pid); err != nil {
				return fmt.Errorf("%s (pid %d) is no longer running; its log is in %s "+
					"(run with -keep): %w", name, pid, work, err)
			}
		}
		res, err := load(r.url, o.size, o.clients, r.dur, r.rate)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "%-7s %-38s %s\n", r.name, r.label, res)
		if r.name != "chain" || res.n == 0 {
			continue
		}
		// CPU per exchange does not depend on what else loads the machine:
		// 2 cores divided by its sum bound the throughput of an idle box.
		var line []string
		var total time.Duration
		for _, name := range []string{"client SS", "provider SS", "register",
			"load generator"} {
			after, err := cpuTime(pids[name])
			if err != nil {
				return fmt.Errorf("%s (pid %d) is no longer running; its log is in %s "+
					"(run with -keep): %w", name, pids[name], work, err)
			}
			per := (after - before[name]) / time.Duration(res.n)
			total += per
			line = append(line, fmt.Sprintf("%s %.2f", name, float64(per.Microseconds())/1000))
		}
		fmt.Fprintf(out, "        CPU ms per exchange: %s; total %.2f\n", strings.Join(line, ", "),
			float64(total.Microseconds())/1000)
	}
	fmt.Fprintln(out)
	for _, sp := range servers {
		m, err := sp.memory()
		if err != nil {
			return err
		}
		mb := func(k string) float64 { return float64(m[k]) / 1024 }
		fmt.Fprintf(out, "%-18s VmRSS %5.1f MB (anonymous %5.1f, files %5.1f)  VmHWM %5.1f MB\n",
			sp.name, mb("VmRSS"), mb("RssAnon"), mb("RssFile"), mb("VmHWM"))
	}
	return nil
}

// syncLatency returns the median time of a 4 KiB write and fdatasync in
// dir: what each durable commit of the message log and the replay store
// costs at least, twice (bbolt syncs data, then its meta page).
func syncLatency(dir string) (time.Duration, error) {
	f, err := os.CreateTemp(dir, "sync-")
	if err != nil {
		return 0, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	buf := make([]byte, 4096)
	var ds []time.Duration
	for i := range 20 {
		t0 := time.Now()
		if _, err := f.WriteAt(buf, int64(i)*4096); err != nil {
			return 0, err
		}
		if err := syscall.Fdatasync(int(f.Fd())); err != nil {
			return 0, err
		}
		ds = append(ds, time.Since(t0))
	}
	slices.Sort(ds)
	return ds[len(ds)/2], nil
}

var seq atomic.Int64

// request returns a searchPersons request of exactly size bytes (or the
// smallest possible when size is smaller) with message id id. The load
// runs build the same bytes from a requestTemplate.
func request(size int, id string) []byte {
	h := sampleis.Header{Client: client, Service: service, ID: id, UserID: "AZ0000001"}
	q := sampleis.Search{Surname: "Əliyev", MaxResults: 1}
	base := sampleis.SearchPersonsRequest(h, q)
	if pad := size - len(base) - len("<pr:purpose></pr:purpose>"); pad > 0 {
		q.Purpose = strings.Repeat("a", pad)
	}
	return sampleis.SearchPersonsRequest(h, q)
}

// requestTemplate is the request of request, cut around its message id
// and its purpose, so that a load run builds each request by copying.
type requestTemplate struct {
	size int
	// head + id + mid + purpose + tail is the request with a purpose;
	// head + id + bare the request without.
	head, mid, tail, bare []byte
	purpose               []byte // "aaa...", longer than any purpose
}

// Markers stand for the id and the purpose while the template is built;
// request escapes neither.
const (
	idMarker      = "@ID@"
	purposeMarker = "@PURPOSE@"
)

func newRequestTemplate(size int) *requestTemplate {
	h := sampleis.Header{Client: client, Service: service, ID: idMarker,
		UserID: "AZ0000001"}
	q := sampleis.Search{Surname: "Əliyev", MaxResults: 1}
	bare := string(sampleis.SearchPersonsRequest(h, q))
	q.Purpose = purposeMarker
	full := string(sampleis.SearchPersonsRequest(h, q))
	head, rest, _ := strings.Cut(full, idMarker)
	mid, tail, _ := strings.Cut(rest, purposeMarker)
	_, bare, _ = strings.Cut(bare, idMarker)
	return &requestTemplate{size: size, head: []byte(head), mid: []byte(mid),
		tail: []byte(tail), bare: []byte(bare),
		purpose: bytes.Repeat([]byte("a"), max(size, 0))}
}

// appendRequest appends to dst the bytes request(t.size, id) returns.
func (t *requestTemplate) appendRequest(dst []byte, id string) []byte {
	if !plainID(id) {
		return append(dst, request(t.size, id)...)
	}
	dst = append(dst, t.head...)
	dst = append(dst, id...)
	pad := t.size - len(t.head) - len(id) - len(t.mid) - len(t.tail)
	if pad <= 0 {
		return append(dst, t.bare...)
	}
	dst = append(dst, t.mid...)
	dst = append(dst, t.purpose[:pad]...)
	return append(dst, t.tail...)
}

// plainID reports whether id is written as it is in XML, as the ids of
// the load runs are (an empty id is left out).
func plainID(id string) bool {
	if id == "" {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c < 0x21 || c > 0x7e || strings.IndexByte(`<>&'"`, c) >= 0 {
			return false
		}
	}
	return true
}

// checkAnswer returns what is wrong with the answer to the request with
// message id id, or "": it must be HTTP 200, hold no SOAP fault, and be a
// whole searchPersons response carrying that id.
//
// It looks at the bytes rather than parse them, which would cost the
// load generator as much as a tenth of an exchange's CPU time: the
// security servers check what they pass on. Where it errs, it errs
// towards counting a failure.
func checkAnswer(status int, body []byte, id string) string {
	if status != http.StatusOK {
		return fmt.Sprintf("HTTP %d: %.200s", status, body)
	}
	switch {
	case hasFault(body):
		return fmt.Sprintf("HTTP 200 with a SOAP fault: %.300s", body)
	case !bytes.Contains(body, []byte("searchPersonsResponse")):
		return fmt.Sprintf("the answer is not a searchPersons response: %.200s", body)
	case !bytes.HasSuffix(bytes.TrimRight(body, " \t\r\n"), []byte(":Envelope>")):
		return "the answer does not end with the Envelope's end tag"
	case !bytes.Contains(body, []byte(">"+id+"<")):
		return fmt.Sprintf("the answer does not carry the message id %q", id)
	}
	return ""
}

// hasFault reports whether body holds a tag named Fault, in any
// namespace: "Fault" after '<' or a prefix's ':', and before '>', '/' or
// white space.
func hasFault(body []byte) bool {
	const name = "Fault"
	for i := 0; ; {
		k := bytes.Index(body[i:], []byte(name))
		if k < 0 {
			return false
		}
		k += i
		i = k + len(name)
		if k == 0 || i == len(body) || body[k-1] != '<' && body[k-1] != ':' {
			continue
		}
		if c := body[i]; c == '>' || c == '/' || c == ' ' || c == '\t' || c == '\n' ||
			c == '\r' {
			return true
		}
	}
}

type result struct {
	n, errors int
	elapsed   time.Duration
	lat       []time.Duration
	firstErr  string
}

func (r result) String() string {
	if len(r.lat) == 0 {
		return "no successful request: " + r.firstErr
	}
	slices.Sort(r.lat)
	q := func(f float64) float64 {
		return float64(r.lat[int(f*float64(len(r.lat)-1))].Microseconds()) / 1000
	}
	s := fmt.Sprintf("%7.0f req/s  p50 %6.2f ms  p99 %6.2f ms  max %7.2f ms  (%d ok",
		float64(r.n)/r.elapsed.Seconds(), q(0.5), q(0.99), q(1), r.n)
	if r.errors > 0 {
		s += fmt.Sprintf(", %d failed: %s", r.errors, r.firstErr)
	}
	return s + ")"
}

// load sends requests from conc goroutines for dur; with rate > 0 it
// starts rate requests a second on a fixed schedule instead, each on a
// free goroutine, measuring from its scheduled start.
func load(url string, size, conc int, dur time.Duration, rate int) (result, error) {
	post, err := newPoster(url, conc*2, 30*time.Second)
	if err != nil {
		return result{}, err
	}
	defer post.Close()
	tmpl := newRequestTemplate(size)
	buffers := sync.Pool{New: func() any { return new(exchangeBuffers) }}
	var (
		mu  sync.Mutex
		res result
	)
	one := func(scheduled time.Time) {
		b := buffers.Get().(*exchangeBuffers)
		defer buffers.Put(b)
		b.id = append(b.id[:0], "bench-"...)
		b.id = strconv.AppendInt(b.id, time.Now().UnixNano(), 10)
		b.id = append(b.id, '-')
		b.id = strconv.AppendInt(b.id, seq.Add(1), 10)
		id := string(b.id)
		b.req = tmpl.appendRequest(b.req[:0], id)

		t0 := time.Now()
		if !scheduled.IsZero() {
			t0 = scheduled
		}
		status, err := post.post(contentType, b.req, &b.answer)
		d := time.Since(t0)
		msg := ""
		if err != nil {
			msg = err.Error()
		} else {
			msg = checkAnswer(status, b.answer.Bytes(), id)
		}
		mu.Lock()
		if msg != "" {
			res.errors++
			if res.firstErr == "" {
				res.firstErr = msg
			}
		} else {
			res.n++
			res.lat = append(res.lat, d)
		}
		mu.Unlock()
	}
	start := time.Now()
	end := start.Add(dur)
	var wg sync.WaitGroup
	if rate > 0 {
		interval := time.Second / time.Duration(rate)
		sem := make(chan struct{}, conc)
		for next := start; next.Before(end); next = next.Add(interval) {
			time.Sleep(time.Until(next))
			sem <- struct{}{}
			wg.Go(func() { one(next); <-sem })
		}
	} else {
		for range conc {
			wg.Go(func() {
				for time.Now().Before(end) {
					one(time.Time{})
				}
			})
		}
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	return res, nil
}

// exchangeBuffers are the buffers of one exchange, used again by the next.
type exchangeBuffers struct {
	id, req []byte
	answer  bytes.Buffer
}

// contentType is the Content-Type of the requests.
const contentType = "text/xml; charset=utf-8"
