package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/qapi-az/qapi/appliance/globalconf"
	"github.com/qapi-az/qapi/portal"
)

var binary string

// TestMain builds qapi-portal once for the tests that run it.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "qapi-portal-bin-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "qapi-portal")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		panic(fmt.Sprintf("build: %v\n%s", err, out))
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// tlsFiles writes a self-signed certificate for 127.0.0.1 and its key, the
// public listener's -tls-cert and -tls-key, and returns a pool trusting it.
func tlsFiles(t *testing.T, dir string) (certPath, keyPath string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1),
		Subject:   pkix.Name{CommonName: "portal test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	certPath, keyPath = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		0o600)
	os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY",
		Bytes: keyDER}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certPath, keyPath, pool
}

// running is a started qapi-portal.
type running struct {
	cmd    *exec.Cmd
	public string
	stderr *bytes.Buffer
	done   chan error
	// read is closed once all of stderr is in the buffer.
	read chan struct{}
}

// start runs qapi-portal with args and waits for its "portal started" line.
func start(t *testing.T, args ...string) *running {
	t.Helper()
	cmd := exec.Command(binary, args...)
	pr, pw := io.Pipe()
	cmd.Stderr = pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := &running{cmd: cmd, stderr: &bytes.Buffer{}, done: make(chan error, 1),
		read: make(chan struct{})}
	t.Cleanup(func() { cmd.Process.Kill() })
	up := make(chan string, 1)
	go func() {
		defer close(r.read)
		sc := bufio.NewScanner(pr)
		re := regexp.MustCompile(`msg="portal started" public=(\S+)`)
		for sc.Scan() {
			r.stderr.WriteString(sc.Text() + "\n")
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				up <- m[1]
			}
		}
	}()
	go func() { r.done <- cmd.Wait(); pw.Close() }()
	select {
	case r.public = <-up:
	case err := <-r.done:
		t.Fatalf("qapi-portal exited before it started: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("qapi-portal did not start within 30 s")
	}
	return r
}

// stop sends SIGINT and wants a clean exit.
func (r *running) stop(t *testing.T) {
	t.Helper()
	r.cmd.Process.Signal(syscall.SIGINT)
	select {
	case err := <-r.done:
		<-r.read
		if err != nil {
			t.Errorf("qapi-portal after SIGINT: %v\n%s", err, r.stderr)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("qapi-portal still running 10 s after SIGINT")
	}
}

// TestHTTPSPublication: with -tls-cert the public listener serves the
// signed global configuration over HTTPS, verifiable with the anchor the
// operator API hands out; after a restart on the same data directory the
// certification centre is the same and the configuration's serial goes on.
func TestHTTPSPublication(t *testing.T) {
	dir := t.TempDir()
	certPath, keyPath, pool := tlsFiles(t, t.TempDir())
	args := []string{"-dir", dir, "-listen", "127.0.0.1:0", "-operator", "127.0.0.1:0",
		"-tls-cert", certPath, "-tls-key", keyPath}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool}}}
	get := func(url string) []byte {
		t.Helper()
		resp, err := hc.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: HTTP %d\n%s", url, resp.StatusCode, b)
		}
		return b
	}
	fetch := func(r *running) (*globalconf.Conf, []byte) {
		t.Helper()
		if !strings.HasPrefix(r.public, "https://") {
			t.Fatalf("public URL %s is not https", r.public)
		}
		op, err := portal.Dial(filepath.Join(dir, "operator.json"))
		if err != nil {
			t.Fatal(err)
		}
		var a globalconf.Anchor
		if err := op.Do(context.Background(), "GET", "/api/anchor/AZ", nil, &a); err != nil {
			t.Fatal(err)
		}
		c, err := globalconf.Verify(get(a.ConfigURLs[0]), &a)
		if err != nil {
			t.Fatalf("configuration served over HTTPS: %v", err)
		}
		if err := c.Check(time.Now()); err != nil {
			t.Errorf("a freshly published configuration: %v", err)
		}
		return c, get(r.public + "/ca/cert")
	}

	r := start(t, args...)
	first, caCert := fetch(r)
	r.stop(t)
	if !strings.Contains(r.stderr.String(), `msg="portal stopped"`) {
		t.Errorf("no clean stop logged:\n%s", r.stderr)
	}

	r = start(t, args...)
	again, caAgain := fetch(r)
	r.stop(t)
	if !bytes.Equal(caCert, caAgain) {
		t.Error("the certification centre changed across a restart")
	}
	if again.Serial <= first.Serial {
		t.Errorf("serial went from %d to %d across a restart", first.Serial, again.Serial)
	}
}
