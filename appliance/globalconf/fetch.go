package globalconf

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// FetcherOptions configure a Fetcher.
type FetcherOptions struct {
	// Anchor says where to fetch and whom to trust (4.1.2.3-4.1.2.5).
	Anchor *Anchor
	// Path is the file that keeps the last good signed configuration, so
	// that a restarted server serves it (while valid) before its first
	// fetch. Empty: keep nothing on disk.
	Path string
	// Interval between fetches; one minute when 0.
	Interval time.Duration
	// Client fetches; a client with a 15-second timeout when nil.
	Client *http.Client
	// MaxBytes bounds a fetched document; 8 MiB when 0.
	MaxBytes int64
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// FetchStatus says how the fetcher is doing, for the console and logs.
type FetchStatus struct {
	// Serial and Expires describe the configuration in use (0 and zero
	// when there is none).
	Serial  uint64
	Expires time.Time
	// LastAttempt and LastSuccess are the times of the last fetch and of
	// the last one that installed or confirmed a configuration.
	LastAttempt time.Time
	LastSuccess time.Time
	// LastError is the last fetch's error, nil after a success.
	LastError error
}

// Fetcher is a Source that fetches the signed configuration over HTTP(S)
// on an interval, verifies it against the anchor, keeps the last good one
// on disk, and serves it while it is valid. Current never touches the
// network. It is safe for concurrent use.
type Fetcher struct {
	opts   FetcherOptions
	static Static

	mu     sync.Mutex
	status FetchStatus
	raw    []byte
}

// NewFetcher returns a fetcher serving the configuration kept at
// opts.Path, if that file exists and verifies; it fetches nothing until
// Refresh or Run. A kept file that does not verify is ignored and its
// error is reported in Status.
func NewFetcher(opts FetcherOptions) (*Fetcher, error) {
	if opts.Anchor == nil || len(opts.Anchor.Certs) == 0 {
		return nil, errors.New("global configuration fetcher needs an anchor with " +
			"certificates; install the anchor with 'qapi register anchor'")
	}
	if len(opts.Anchor.ConfigURLs) == 0 {
		return nil, errors.New("the configuration anchor names no configuration URL")
	}
	if opts.Interval == 0 {
		opts.Interval = time.Minute
	}
	if opts.Client == nil {
		opts.Client = &http.Client{Timeout: 15 * time.Second}
	}
	if opts.MaxBytes == 0 {
		opts.MaxBytes = 8 << 20
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	f := &Fetcher{opts: opts}
	f.static.Now = opts.Now
	if opts.Path != "" {
		b, err := os.ReadFile(opts.Path)
		switch {
		case errors.Is(err, os.ErrNotExist):
		case err != nil:
			f.status.LastError = fmt.Errorf("read kept global configuration: %w", err)
		default:
			c, err := Verify(b, opts.Anchor)
			if err != nil {
				f.status.LastError = fmt.Errorf("kept global configuration %s refused: %w",
					opts.Path, err)
			} else {
				f.install(c, b)
			}
		}
	}
	return f, nil
}

func (f *Fetcher) install(c *Conf, raw []byte) {
	f.static.Set(c)
	f.raw = raw
	f.status.Serial, f.status.Expires = c.Serial, c.Expires
}

// Current returns the configuration in use, or ErrNoConf, or an error
// wrapping ErrStale that also says why fetching failed.
func (f *Fetcher) Current() (*Conf, error) {
	c, err := f.static.Current()
	if err == nil {
		return c, nil
	}
	f.mu.Lock()
	last := f.status.LastError
	f.mu.Unlock()
	if last != nil {
		return nil, fmt.Errorf("%w; the last fetch failed: %v", err, last)
	}
	return nil, err
}

// Status returns the fetcher's state.
func (f *Fetcher) Status() FetchStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.status
}

// Refresh fetches once, trying the anchor's URLs in order, and installs
// the first configuration that verifies, is within its validity period,
// and is either the one in use or has a newer serial. It returns the error
// of the last URL tried when none qualifies; the configuration in use is
// then kept.
func (f *Fetcher) Refresh(ctx context.Context) error {
	var err error
	for _, u := range f.opts.Anchor.ConfigURLs {
		if err = f.fetch(ctx, u); err == nil {
			break
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.status.LastAttempt = f.opts.Now()
	f.status.LastError = err
	if err == nil {
		f.status.LastSuccess = f.status.LastAttempt
	}
	return err
}

func (f *Fetcher) fetch(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("fetch global configuration: %w", err)
	}
	resp, err := f.opts.Client.Do(req)
	if err != nil {
		return fmt.Errorf("fetch global configuration: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("fetch global configuration from %s: HTTP %s", url, resp.Status)
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, f.opts.MaxBytes+1))
	if err != nil {
		return fmt.Errorf("fetch global configuration from %s: %w", url, err)
	}
	if int64(len(raw)) > f.opts.MaxBytes {
		return fmt.Errorf("global configuration from %s refused: larger than %d bytes",
			url, f.opts.MaxBytes)
	}
	c, err := Verify(raw, f.opts.Anchor)
	if err != nil {
		return fmt.Errorf("global configuration from %s refused: %w", url, err)
	}
	if err := c.Check(f.opts.Now()); err != nil {
		return fmt.Errorf("global configuration from %s refused: %w", url, err)
	}

	f.mu.Lock()
	defer f.mu.Unlock()
	if bytes.Equal(raw, f.raw) {
		return nil
	}
	if c.Serial < f.status.Serial {
		return fmt.Errorf("global configuration from %s refused: serial %d is older than "+
			"serial %d in use (a replayed or rolled-back version)", url, c.Serial,
			f.status.Serial)
	}
	// The publisher numbers every version it signs, so one serial names one
	// document; another document under the serial in use means the
	// operator's numbering went back (a restored database) and must not
	// silently replace what every other server holds.
	if f.raw != nil && c.Serial == f.status.Serial {
		return fmt.Errorf("global configuration from %s refused: serial %d is in use "+
			"with other contents; the operator must publish a new serial", url, c.Serial)
	}
	if f.opts.Path != "" {
		if err := writeAtomic(f.opts.Path, raw); err != nil {
			return fmt.Errorf("keep global configuration: %w", err)
		}
	}
	f.install(c, raw)
	return nil
}

func writeAtomic(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".globalconf-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// Run refreshes at once and then every Interval until ctx ends; fetch
// errors are kept in Status and do not stop it. It returns ctx's error.
func (f *Fetcher) Run(ctx context.Context) error {
	t := time.NewTicker(f.opts.Interval)
	defer t.Stop()
	for {
		f.Refresh(ctx)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}
