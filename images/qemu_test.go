package images

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/qapi-az/qapi/gokrazy"
	"github.com/qapi-az/qapi/images/gpt"
	"github.com/qapi-az/qapi/internal/sampleis"
	"github.com/qapi-az/qapi/internal/swtpmtest"
	"github.com/qapi-az/qapi/internal/testenv"
)

// OVMF firmware files of Debian's ovmf package.
const (
	ovmfCode = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	ovmfVars = "/usr/share/OVMF/OVMF_VARS_4M.fd"
)

// vm is one QEMU boot of a disk image with a software TPM.
type vm struct {
	t       *testing.T
	dir     string
	serial  string
	qmp     string // QEMU's QMP socket
	started time.Time
	qemu    *exec.Cmd
	swtpm   *exec.Cmd
	exited  chan struct{} // closed once QEMU has exited
	// Host loopback ports forwarded to the guest's health endpoint, client
	// proxy, management API and monitoring station on the internal
	// interface; to the health, management and monitoring ports on the
	// external interface, where none may answer; and to the server proxy
	// there.
	healthPort, clientPort, managePort, monitorPort             int
	externalHealthPort, externalManagePort, externalMonitorPort int
	serverPort                                                  int
}

// freePorts returns n distinct loopback ports that were free a moment ago.
// All n are held open until the last is chosen, so that none repeats.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// boot starts swtpm with the state in tpmDir and QEMU on disk, with the
// firmware variables in vars. The serial console goes to a file printed
// when the test fails. When another process took a forwarded port in the
// moment between choosing and binding it, QEMU refuses to start; boot then
// tries again with other ports.
func boot(t *testing.T, name, disk, vars, tpmDir string) *vm {
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for try := 1; ; try++ {
		v := &vm{t: t, dir: dir, serial: filepath.Join(dir, "serial.log"),
			qmp: filepath.Join(dir, "qmp.sock")}
		p := freePorts(t, 8)
		v.healthPort, v.clientPort, v.managePort, v.monitorPort = p[0], p[1], p[2], p[3]
		v.externalHealthPort, v.externalManagePort, v.externalMonitorPort = p[4], p[5], p[6]
		v.serverPort = p[7]
		qerr, ok := v.start(disk, vars, tpmDir)
		if ok {
			t.Cleanup(func() {
				v.stop()
				if t.Failed() {
					b, _ := os.ReadFile(v.serial)
					t.Logf("%s: QEMU said: %s\nserial console:\n%s", name, qerr.String(), b)
				}
			})
			return v
		}
		v.stop()
		if try == 3 {
			t.Fatalf("%s: QEMU did not start: %s", name, qerr.String())
		}
		t.Logf("%s: QEMU could not bind a forwarded port, trying other ports: %s", name,
			strings.TrimSpace(qerr.String()))
	}
}

// start starts swtpm and QEMU and returns what QEMU prints. It reports
// false when QEMU exits at once because a forwarded port is taken.
func (v *vm) start(disk, vars, tpmDir string) (*bytes.Buffer, bool) {
	t := v.t
	t.Helper()
	sock := filepath.Join(v.dir, "swtpm.sock")
	os.Remove(sock)
	v.swtpm = exec.Command("swtpm", "socket", "--tpm2", "--tpmstate", "dir="+tpmDir,
		"--ctrl", "type=unixio,path="+sock)
	v.swtpm.Stderr = io.Discard
	if err := v.swtpm.Start(); err != nil {
		t.Fatalf("swtpm: %v", err)
	}
	for range 100 {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	// eth0 (external) on 10.0.2.0/24, eth1 (internal) on 10.0.3.0/24, as
	// gokrazy.Default addresses them; the internal ports reach the host.
	internal := fmt.Sprintf("user,id=n1,net=10.0.3.0/24,"+
		"hostfwd=tcp:127.0.0.1:%d-10.0.3.15:%d,hostfwd=tcp:127.0.0.1:%d-10.0.3.15:%d,"+
		"hostfwd=tcp:127.0.0.1:%d-10.0.3.15:%d,hostfwd=tcp:127.0.0.1:%d-10.0.3.15:%d",
		v.healthPort, gokrazy.HealthPort, v.clientPort, gokrazy.ClientPort,
		v.managePort, gokrazy.ManagePort, v.monitorPort, gokrazy.MonitorPort)
	external := fmt.Sprintf("user,id=n0,net=10.0.2.0/24,"+
		"hostfwd=tcp:127.0.0.1:%d-10.0.2.15:%d,hostfwd=tcp:127.0.0.1:%d-10.0.2.15:%d,"+
		"hostfwd=tcp:127.0.0.1:%d-10.0.2.15:%d,hostfwd=tcp:127.0.0.1:%d-10.0.2.15:%d",
		v.externalHealthPort, gokrazy.HealthPort, v.externalManagePort, gokrazy.ManagePort,
		v.externalMonitorPort, gokrazy.MonitorPort, v.serverPort, gokrazy.ServerPort)
	args := []string{
		"-accel", "tcg", "-m", "1024", "-nodefaults", "-display", "none", "-vga", "none",
		"-no-reboot",
		"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=" + ovmfCode,
		"-drive", "if=pflash,format=raw,unit=1,file=" + vars,
		"-drive", "if=none,id=disk,format=raw,file=" + disk,
		"-device", "virtio-blk-pci,drive=disk,bootindex=1",
		"-chardev", "socket,id=chrtpm,path=" + sock,
		"-tpmdev", "emulator,id=tpm0,chardev=chrtpm", "-device", "tpm-tis,tpmdev=tpm0",
		"-netdev", external,
		"-device", "virtio-net-pci,netdev=n0,romfile=",
		"-netdev", internal, "-device", "virtio-net-pci,netdev=n1,romfile=",
		"-device", "virtio-rng-pci",
		"-serial", "file:" + v.serial,
		"-qmp", "unix:" + v.qmp + ",server=on,wait=off",
	}
	v.qemu = exec.Command("qemu-system-x86_64", args...)
	qerr := &bytes.Buffer{}
	v.qemu.Stdout, v.qemu.Stderr = qerr, qerr
	v.started = time.Now()
	if err := v.qemu.Start(); err != nil {
		t.Fatalf("qemu: %v", err)
	}
	v.exited = make(chan struct{})
	go func() {
		v.qemu.Wait()
		close(v.exited)
	}()
	// QEMU binds the forwarded ports before the guest runs.
	select {
	case <-v.exited:
		return qerr, !strings.Contains(qerr.String(), "Could not set up host forwarding")
	case <-time.After(time.Second):
		return qerr, true
	}
}

// stop kills QEMU and swtpm and waits for both.
func (v *vm) stop() {
	if v.qemu != nil && v.qemu.Process != nil {
		v.qemu.Process.Kill()
		<-v.exited
	}
	if c := v.swtpm; c != nil && c.Process != nil && c.ProcessState == nil {
		c.Process.Kill()
		c.Wait()
	}
}

// qemuExited reports whether QEMU has exited.
func (v *vm) qemuExited() bool {
	select {
	case <-v.exited:
		return true
	default:
		return false
	}
}

// shutdown presses the machine's power button and waits for it to power
// off, so that /perm is unmounted cleanly.
func (v *vm) shutdown(timeout time.Duration) {
	v.t.Helper()
	c, err := net.Dial("unix", v.qmp)
	if err != nil {
		v.t.Fatalf("QMP: %v", err)
	}
	defer c.Close()
	dec := json.NewDecoder(c)
	var greeting map[string]any
	if err := dec.Decode(&greeting); err != nil {
		v.t.Fatalf("QMP greeting: %v", err)
	}
	for _, cmd := range []string{"qmp_capabilities", "system_powerdown"} {
		if _, err := fmt.Fprintf(c, `{"execute":%q}`+"\n", cmd); err != nil {
			v.t.Fatalf("QMP %s: %v", cmd, err)
		}
		var resp map[string]any
		if err := dec.Decode(&resp); err != nil {
			v.t.Fatalf("QMP %s: %v", cmd, err)
		}
	}
	select {
	case <-v.exited:
	case <-time.After(timeout):
		v.t.Fatalf("the machine did not power off within %v of the power button", timeout)
	}
	v.stop()
}

// console returns what the serial console has shown so far.
func (v *vm) console() string {
	b, _ := os.ReadFile(v.serial)
	return string(b)
}

// waitConsole waits until the console shows s.
func (v *vm) waitConsole(s string, timeout time.Duration) {
	v.t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(v.console(), s) {
		if time.Now().After(deadline) {
			v.t.Fatalf("console did not show %q within %v", s, timeout)
		}
		if v.qemuExited() {
			v.t.Fatalf("QEMU exited before the console showed %q", s)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// waitConsoleLine waits until a console line starting with prefix
// contains s.
func (v *vm) waitConsoleLine(prefix, s string, timeout time.Duration) {
	v.t.Helper()
	has := func() bool {
		for _, l := range strings.Split(v.console(), "\n") {
			if strings.HasPrefix(l, prefix) && strings.Contains(l, s) {
				return true
			}
		}
		return false
	}
	deadline := time.Now().Add(timeout)
	for !has() {
		if time.Now().After(deadline) {
			v.t.Fatalf("console showed no line %q...%q within %v", prefix, s, timeout)
		}
		if v.qemuExited() {
			v.t.Fatalf("QEMU exited before the console showed %q...%q", prefix, s)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// healthyUptime returns the kernel's uptime, in seconds, that the init
// reported once the health URL answered 200, or "?".
func (v *vm) healthyUptime() string {
	for _, f := range strings.Fields(v.console()) {
		if u, ok := strings.CutPrefix(f, "uptimeSeconds="); ok {
			return u
		}
	}
	return "?"
}

// get polls a URL through a forwarded port until it answers with any
// status, and returns the status, body and the time since QEMU started.
func (v *vm) get(port int, path string, timeout time.Duration) (int, []byte, time.Duration) {
	v.t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	url := fmt.Sprintf("http://127.0.0.1:%d%s", port, path)
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := c.Do(req)
		if err == nil {
			body, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			cancel()
			if rerr == nil {
				return resp.StatusCode, body, time.Since(v.started)
			}
		} else {
			cancel()
		}
		if v.qemuExited() {
			v.t.Fatalf("GET %s: QEMU exited before it answered", path)
		}
		if time.Now().After(deadline) {
			v.t.Fatalf("GET %s: no answer within %v (last error %v)", path, timeout, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// tryGet makes one GET through a forwarded port with a short timeout.
func (v *vm) tryGet(port int, path string) (int, []byte, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d%s", port, path))
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

// manageStatus sends GET /api/status without a token to the management
// API through a forwarded port, over TLS 1.3 without checking the
// certificate (the test has not read the connection file), until it
// answers with any status or timeout passes; zero timeout tries once. It
// returns the status.
func (v *vm) manageStatus(port int, timeout time.Duration) (int, error) {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}}}
	defer c.CloseIdleConnections()
	url := fmt.Sprintf("https://127.0.0.1:%d/api/status", port)
	deadline := time.Now().Add(timeout)
	for {
		resp, err := c.Get(url)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			return resp.StatusCode, nil
		}
		if !time.Now().Before(deadline) {
			return 0, err
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// health is what qapi-firstboot's GET /healthz answers.
type health struct {
	KeyMode     string            `json:"keyMode"`
	Signing     string            `json:"signingPublicKeySHA256"`
	Auth        string            `json:"authenticationPublicKeySHA256"`
	SigningKey  []byte            `json:"signingPublicKey"` // PKIX DER
	AuthKey     []byte            `json:"authenticationPublicKey"`
	CreatedNow  bool              `json:"createdThisBoot"`
	EKIssuer    string            `json:"endorsementIssuer"`
	Error       string            `json:"error"`
	Memory      map[string]string `json:"memory"`
	status      int
	firstAnswer time.Duration
}

func (v *vm) health(timeout time.Duration) health {
	v.t.Helper()
	status, body, at := v.get(v.healthPort, "/healthz", timeout)
	var h health
	if err := json.Unmarshal(body, &h); err != nil {
		v.t.Fatalf("/healthz answered %d %q: %v", status, body, err)
	}
	h.status, h.firstAnswer = status, at
	return h
}

// bootTimeout is how long a boot may take until /healthz answers: TCG on a
// loaded 2-core machine.
const bootTimeout = 6 * time.Minute

// TestBoot boots the image in QEMU (TCG, OVMF, swtpm) three times: a first
// boot on a disk larger than the image, which makes and seals the keys; a
// reboot of the same machine, once the certificates issued for the sealed
// keys are on perm, where the security server signs with them; and the same
// disk in a machine with another TPM.
func TestBoot(t *testing.T) {
	testenv.Short(t, "boots QEMU three times")
	needBuildTools(t)
	for _, c := range []string{"qemu-system-x86_64", "swtpm", "debugfs"} {
		testenv.NeedCommand(t, c)
	}
	testenv.NeedFile(t, ovmfCode)
	testenv.NeedFile(t, ovmfVars)

	// The provider's information system runs on the host; the guest
	// reaches the host's loopback as its gateway, 10.0.2.2.
	is := sampleis.New()
	isSrv := httptest.NewServer(is)
	defer isSrv.Close()
	isPort := isSrv.Listener.Addr().(*net.TCPAddr).Port

	dir := t.TempDir()
	perm := filepath.Join(dir, "perm")
	portal := newTestPortal(t)
	portal.serverPerm(t, perm, fmt.Sprintf("http://10.0.2.2:%d/", isPort))
	// The machine's TPM comes with an endorsement key certificate from its
	// vendor, swtpm's local CA, whose certificates perm holds.
	tpmState := filepath.Join(dir, "tpm")
	ekRoots := swtpmtest.Manufacture(t, tpmState)
	if err := os.WriteFile(filepath.Join(perm, strings.TrimPrefix(gokrazy.EKRootsPath,
		"/perm/")), ekRoots, 0o644); err != nil {
		t.Fatal(err)
	}
	c := testConfig(t, filepath.Join(dir, "disk.img"))
	c.PermDir = perm
	if _, err := Assemble(context.Background(), c, builtPrograms(t)); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(c.Output)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("image: %d bytes, %d allocated", fi.Size(), allocated(fi))
	// The machine's disk is twice the image: first boot grows perm.
	if err := os.Truncate(c.Output, 2*c.Size); err != nil {
		t.Fatal(err)
	}
	vars := filepath.Join(dir, "OVMF_VARS.fd")
	if err := copyFile(ovmfVars, vars, 0o644); err != nil {
		t.Fatal(err)
	}
	// First boot: keys made and sealed, the slot marked good, perm grown
	// to the disk's end. The security server, started once the keys exist,
	// opens the same sealed keys and waits for its certificates.
	v := boot(t, "first", c.Output, vars, tpmState)
	h := v.health(bootTimeout)
	if h.status != 200 || h.KeyMode != "tpm" || !h.CreatedNow || h.Signing == "" {
		t.Fatalf("first boot: /healthz %d %+v; want 200, tpm keys created this boot", h.status, h)
	}
	if !strings.Contains(h.EKIssuer, "swtpm-localca") {
		t.Fatalf("first boot: /healthz names the EK certificate's issuer %q; want the "+
			"TPM's endorsement checked against swtpm's local CA before the first seal",
			h.EKIssuer)
	}
	for name, k := range map[string][]byte{h.Signing: h.SigningKey, h.Auth: h.AuthKey} {
		if sum := sha256.Sum256(k); hex.EncodeToString(sum[:]) != name {
			t.Fatalf("first boot: /healthz gave a public key whose SHA-256 is not %s", name)
		}
	}
	t.Logf("first boot: QEMU start to first answered request: %v; memory %v",
		h.firstAnswer.Round(100*time.Millisecond), h.Memory)

	v.waitConsole("qapi init: network configured", time.Second)
	if status, _, err := v.tryGet(v.externalHealthPort, "/healthz"); err == nil {
		t.Errorf("the health port answered %d on the external interface; the firewall "+
			"must drop it there", status)
	}
	v.waitConsole("keys sealed by the TPM", time.Minute)

	// The security server, waiting for its certificates, serves the
	// management API over TLS on the internal interface and refuses a
	// request without the token; the external interface does not carry it.
	status, err := v.manageStatus(v.managePort, 2*time.Minute)
	if err != nil || status != http.StatusUnauthorized {
		t.Fatalf("first boot: management API on the internal interface, GET /api/status "+
			"without a token: %d, %v; want 401", status, err)
	}
	if status, err := v.manageStatus(v.externalManagePort, 0); err == nil {
		t.Errorf("the management API answered %d on the external interface; it must "+
			"not be reachable there", status)
	}

	// The monitoring station confined itself before serving (clause 2.7)
	// and serves its status on the internal interface only.
	v.waitConsoleLine("qapi-monitor: ", `"msg":"confined"`, time.Minute)
	if status, _, _ := v.get(v.monitorPort, "/api/status", time.Minute); status != 200 {
		t.Errorf("first boot: the monitoring station's GET /api/status answered %d", status)
	}
	if status, _, err := v.tryGet(v.externalMonitorPort, "/api/status"); err == nil {
		t.Errorf("the monitoring station answered %d on the external interface", status)
	}
	v.waitConsole("marked the booted slot good", time.Minute)
	if !strings.Contains(v.console(), "grew the perm partition") {
		t.Error("first boot on a larger disk did not grow perm")
	}
	if strings.Contains(v.console(), "PERM HAS NO FILE SYSTEM") ||
		strings.Contains(v.console(), "PERM FORMATTED") {
		t.Error("the initramfs found no ext4 on the image's perm partition")
	}
	v.shutdown(time.Minute)
	tab := readTable(t, c.Output)
	if tab.NeedsGrow() || tab.Partitions[3].LastLBA < uint64(c.Size/gpt.SectorSize) {
		t.Errorf("perm after first boot: %+v; want it grown to the disk's end",
			tab.Partitions[3])
	}
	entries := mdir(t, c.Output, tab, "/loader/entries")
	if !strings.Contains(entries, gokrazy.EntryName(gokrazy.SlotAPartition, 0)) {
		t.Errorf("slot A not marked good after a healthy boot:\n%s", entries)
	}

	// The certification centre issues the certificates for the sealed
	// public keys, and the operator publishes the configuration pinning
	// the authentication certificate; they go onto perm.
	files, signCert := portal.register(t, h.SigningKey, h.AuthKey)
	permWrite(t, c.Output, tab, files)

	// Reboot of the same machine: the same keys unseal, and the security
	// server signs and authenticates with them.
	v = boot(t, "reboot", c.Output, vars, tpmState)
	again := v.health(bootTimeout)
	if again.status != 200 || again.CreatedNow || again.Signing != h.Signing ||
		again.Auth != h.Auth {
		t.Fatalf("reboot: /healthz %d %+v; want the first boot's keys %s, %s", again.status,
			again, h.Signing, h.Auth)
	}
	t.Logf("reboot: first answered request %v after QEMU start",
		again.firstAnswer.Round(100*time.Millisecond))
	status, body, at := v.get(v.clientPort, "/listClients", time.Minute)
	if status != 200 || !strings.Contains(string(body), "1001") {
		t.Fatalf("client proxy GET /listClients: %d %s", status, body)
	}
	t.Logf("reboot: security server answered listClients %v after QEMU start",
		at.Round(100*time.Millisecond))

	// The signing certificate the server uses is for the sealed signing
	// key (the server refuses a certificate not for its key store's key),
	// and the server proxy proves the sealed authentication key in its TLS
	// handshake.
	if !bytes.Equal(mustPKIX(t, signCert.PublicKey), again.SigningKey) {
		t.Error("the signing certificate on perm is not for the sealed signing key")
	}
	if got := v.serverCert(); !bytes.Equal(mustPKIX(t, got.PublicKey), again.AuthKey) {
		t.Errorf("the server proxy shows a certificate for another key than the sealed "+
			"authentication key: %s", got.Subject)
	}

	// A SOAP exchange through the appliance: the client proxy signs it
	// with the sealed signing key and sends it over TLS to the server proxy
	// (itself), which checks the signature and the access right, calls the
	// information system and returns the signed answer.
	fin := sampleis.Persons()[0].FIN
	req := sampleis.GetPersonRequest(sampleis.Header{Client: testPolice,
		Service: testService, ID: "image-boot-1", UserID: "AZ0000001"}, fin)
	exStart := time.Now()
	resp, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d/", v.clientPort),
		"text/xml; charset=utf-8", bytes.NewReader(req))
	if err != nil {
		t.Fatalf("SOAP request to the client proxy: %v", err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), fin) || is.Hits() != 1 {
		t.Fatalf("getPerson through the appliance: %d, %d hits on the information "+
			"system:\n%s", resp.StatusCode, is.Hits(), body)
	}
	t.Logf("reboot: getPerson exchange through the appliance took %v under TCG",
		time.Since(exStart).Round(time.Millisecond))
	if after := v.health(time.Minute); after.status == 200 {
		t.Logf("reboot: memory with every program running, after the exchange: %v; "+
			"the kernel's uptime when healthy: %s s", after.Memory, v.healthyUptime())
	}

	// The security server told the monitoring station of the exchange.
	seen := func() bool {
		_, m, err := v.tryGet(v.monitorPort, "/metrics")
		return err == nil && strings.Contains(string(m), "qapi_exchanges_total{") &&
			strings.Contains(string(m), sampleis.CodeGetPerson)
	}
	for deadline := time.Now().Add(time.Minute); !seen() && time.Now().Before(deadline); {
		time.Sleep(time.Second)
	}
	if !seen() {
		_, m, err := v.tryGet(v.monitorPort, "/metrics")
		t.Errorf("the monitoring station's /metrics counts no %s exchange (%v):\n%s",
			sampleis.CodeGetPerson, err, m)
	}
	v.stop()

	// The same disk with another TPM: nothing unseals, and both programs
	// say so.
	other := filepath.Join(dir, "other-tpm")
	if err := os.MkdirAll(other, 0o700); err != nil {
		t.Fatal(err)
	}
	v = boot(t, "other-tpm", c.Output, vars, other)
	refused := v.health(bootTimeout)
	if refused.status != 503 || refused.Error == "" || refused.Signing != "" {
		t.Fatalf("other TPM: /healthz %d %+v; want 503 with the reason", refused.status, refused)
	}
	v.waitConsole("qapi-firstboot: time=", time.Minute)
	v.waitConsole("KEYS REFUSED", time.Minute)
	t.Logf("other TPM: refused: %s", refused.Error)
	const otherTPM = "sealed by another TPM"
	serverRefusal := func(text string) bool {
		for _, line := range strings.Split(text, "\n") {
			if strings.HasPrefix(line, "qapi-server: ") && strings.Contains(line, otherTPM) {
				return true
			}
		}
		return false
	}
	deadline := time.Now().Add(time.Minute)
	for !serverRefusal(v.console()) && time.Now().Before(deadline) {
		time.Sleep(250 * time.Millisecond)
	}
	why := ""
	if strings.Contains(v.console(), "qapi-server: panic:") {
		why = "; qapi-server panicked instead (server.New's cleanup on error uses the " +
			"nil *Server it returns)"
	}
	if !serverRefusal(v.console()) {
		t.Errorf("the console shows no refusal of qapi-server with %q%s", otherTPM, why)
	}
	v.shutdown(time.Minute)
	if log := permFile(t, c.Output, tab, "/log/qapi-firstboot.log"); !strings.Contains(log,
		"KEYS REFUSED") {
		t.Errorf("/perm/log/qapi-firstboot.log lacks the refusal:\n%s", log)
	}
	if log := permFile(t, c.Output, tab, "/log/qapi-server.log"); !strings.Contains(log,
		otherTPM) {
		t.Errorf("/perm/log/qapi-server.log lacks the refusal %q%s", otherTPM, why)
	}
}

// serverCert makes a TLS handshake with the server proxy on the external
// interface and returns the certificate it shows. The handshake proves
// that the server holds the certificate's private key; the server refuses
// the connection afterwards, as the test shows no certificate of its own.
func (v *vm) serverCert() *x509.Certificate {
	v.t.Helper()
	d := &net.Dialer{Timeout: 10 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", fmt.Sprintf("127.0.0.1:%d", v.serverPort),
		&tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13})
	if err != nil {
		v.t.Fatalf("TLS handshake with the server proxy: %v", err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0]
}

// mustPKIX returns the PKIX DER form of a public key.
func mustPKIX(t *testing.T, pub any) []byte {
	t.Helper()
	b, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// permWrite writes files, by path relative to /perm/qapi, into the perm
// file system of a machine that is off, with debugfs, and reads each back.
func permWrite(t *testing.T, img string, tab *gpt.Table, files map[string][]byte) {
	t.Helper()
	host := t.TempDir()
	var cmds strings.Builder
	i := 0
	for name, b := range files {
		src := filepath.Join(host, fmt.Sprint(i))
		i++
		if err := os.WriteFile(src, b, 0o600); err != nil {
			t.Fatal(err)
		}
		dst := path.Join("/qapi", name)
		// mkdir fails harmlessly when the folder exists; rm when the file
		// does not.
		fmt.Fprintf(&cmds, "mkdir %s\nrm %s\nwrite %s %s\n", path.Dir(dst), dst, src, dst)
	}
	script := filepath.Join(host, "cmds")
	if err := os.WriteFile(script, []byte(cmds.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("debugfs", "-w", "-f", script,
		fmt.Sprintf("%s?offset=%d", img, tab.Partitions[3].Offset())).CombinedOutput()
	if err != nil {
		t.Fatalf("debugfs write: %v\n%s", err, out)
	}
	for name, b := range files {
		if got := permFile(t, img, tab, path.Join("/qapi", name)); got != string(b) {
			t.Fatalf("/perm/qapi/%s does not read back after debugfs write:\n%s", name, out)
		}
	}
}

// permFile reads a file of the perm file system with debugfs.
func permFile(t *testing.T, img string, tab *gpt.Table, path string) string {
	t.Helper()
	out, err := exec.Command("debugfs", "-R", "cat "+path,
		fmt.Sprintf("%s?offset=%d", img, tab.Partitions[3].Offset())).Output()
	if err != nil {
		t.Fatalf("debugfs cat %s: %v", path, err)
	}
	return string(out)
}

// TestBootFormatsPerm boots, once, an image whose perm partition holds
// noise where its file system began, on a disk of 12 GiB. The initramfs
// writes the empty perm file system it carries and grows it online past
// 8 GiB, where the file system needs a second block of group descriptors
// (from the ones it reserves); the appliance comes up on it and makes and
// seals its keys there. After the power button, e2fsck finds the file
// system sound and filling the partition, and the sealed keys and the
// logs are on it. Booted again, the machine neither formats nor grows perm
// and unseals the same keys.
func TestBootFormatsPerm(t *testing.T) {
	testenv.Short(t, "boots QEMU")
	needBuildTools(t)
	for _, c := range []string{"qemu-system-x86_64", "swtpm", "debugfs", "e2fsck",
		"dumpe2fs"} {
		testenv.NeedCommand(t, c)
	}
	testenv.NeedFile(t, ovmfCode)
	testenv.NeedFile(t, ovmfVars)

	dir := t.TempDir()
	c := testConfig(t, filepath.Join(dir, "disk.img"))
	if _, err := Assemble(context.Background(), c, builtPrograms(t)); err != nil {
		t.Fatal(err)
	}
	perm := readTable(t, c.Output).Partitions[3]
	noise := make([]byte, 4<<20) // the superblock, group descriptors, bitmaps
	rand.NewChaCha8([32]byte{'p', 'e', 'r', 'm'}).Read(noise)
	f, err := os.OpenFile(c.Output, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.WriteAt(noise, perm.Offset())
	if err == nil {
		err = f.Truncate(12 << 30)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	vars := filepath.Join(dir, "OVMF_VARS.fd")
	if err := copyFile(ovmfVars, vars, 0o644); err != nil {
		t.Fatal(err)
	}
	tpmState := filepath.Join(dir, "tpm")
	if err := os.MkdirAll(tpmState, 0o700); err != nil {
		t.Fatal(err)
	}

	v := boot(t, "format", c.Output, vars, tpmState)
	h := v.health(bootTimeout)
	if h.status != 200 || h.KeyMode != "tpm" || !h.CreatedNow || h.Signing == "" {
		t.Fatalf("boot on a formatted perm: /healthz %d %+v; want 200, tpm keys created "+
			"this boot", h.status, h)
	}
	t.Logf("boot on a formatted perm: QEMU start to first answered request: %v",
		h.firstAnswer.Round(100*time.Millisecond))
	v.waitConsoleLine("", "PERM FORMATTED", time.Second)
	v.waitConsoleLine("", "grew the perm file system", time.Second)
	if strings.Contains(v.console(), "PERM HAS NO FILE SYSTEM") {
		t.Error("the console says perm has no file system after formatting it")
	}
	if strings.Contains(v.console(), "WARNING: CPU:") {
		t.Error("the kernel warned while the perm file system was formatted and grown")
	}
	v.waitConsole("keys generated and sealed to this TPM", time.Minute)
	for _, l := range strings.Split(v.console(), "\n") {
		if strings.Contains(l, "qapi-init: ") && strings.Contains(l, "perm") {
			t.Logf("console: %s", strings.TrimSpace(l))
		}
	}
	v.shutdown(time.Minute)

	tab := readTable(t, c.Output)
	perm = tab.Partitions[3]
	if tab.NeedsGrow() {
		t.Errorf("perm after the boot: %+v; want it grown to the disk's end", perm)
	}
	fs := fmt.Sprintf("%s?offset=%d", c.Output, perm.Offset())
	if out, err := exec.Command("e2fsck", "-fn", fs).CombinedOutput(); err != nil {
		t.Errorf("e2fsck -fn on the formatted and grown perm: %v\n%s", err, out)
	}
	out, err := exec.Command("dumpe2fs", "-h", fs).Output()
	if err != nil {
		t.Fatalf("dumpe2fs -h on perm: %v", err)
	}
	var blocks, perGroup int64
	for _, l := range strings.Split(string(out), "\n") {
		k, val, _ := strings.Cut(l, ":")
		switch k {
		case "Block count":
			fmt.Sscan(val, &blocks)
		case "Blocks per group":
			fmt.Sscan(val, &perGroup)
		}
	}
	// The kernel leaves unused a last group too small for its metadata.
	if fit := perm.Size() / 4096; blocks <= fit-perGroup || blocks > fit {
		t.Errorf("perm's file system has %d blocks in a partition of %d blocks of "+
			"4096 bytes; want it to fill the partition", blocks, fit)
	}
	t.Logf("perm: %d blocks of 4096 bytes in a partition of %d bytes", blocks, perm.Size())

	sealed, err := exec.Command("debugfs", "-R", "ls "+
		strings.TrimPrefix(gokrazy.SealedDir, "/perm"), fs).Output()
	if err != nil {
		t.Fatalf("debugfs ls: %v", err)
	}
	for _, k := range gokrazy.KeyFiles(false) {
		if !strings.Contains(string(sealed), filepath.Base(k)) {
			t.Errorf("the formatted perm has no %s after the boot:\n%s", k, sealed)
		}
	}
	if log := permFile(t, c.Output, tab, "/log/qapi-firstboot.log"); !strings.Contains(log,
		"keys generated and sealed to this TPM") {
		t.Errorf("/perm/log/qapi-firstboot.log on the formatted perm lacks the first "+
			"boot:\n%s", log)
	}

	v = boot(t, "format-reboot", c.Output, vars, tpmState)
	again := v.health(bootTimeout)
	if again.status != 200 || again.CreatedNow || again.Signing != h.Signing ||
		again.Auth != h.Auth {
		t.Fatalf("reboot after formatting: /healthz %d %+v; want the first boot's keys "+
			"%s, %s", again.status, again, h.Signing, h.Auth)
	}
	for _, said := range []string{"PERM FORMATTED", "grew the perm file system",
		"PERM HAS NO FILE SYSTEM"} {
		if strings.Contains(v.console(), said) {
			t.Errorf("the reboot after formatting says %q: perm was touched again", said)
		}
	}
	t.Logf("reboot after formatting: first answered request %v after QEMU start, "+
		"same keys", again.firstAnswer.Round(100*time.Millisecond))
}
