package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/qapi-az/qapi/tpm"
)

func init() {
	register("tpm", command{
		summary: "TPM diagnostics: qapi tpm " +
			"status|endorsement|pcrs|seal|unseal|approve|advance|counter",
		run: runTPM,
	})
}

const tpmUsage = `usage:
  qapi tpm status [-device PATH]               vendor, storage root key, lockout state
  qapi tpm endorsement -roots PEM [-intermediates PEM] [-device PATH]
                                               check the storage root key against
                                               the endorsement key certificate
  qapi tpm pcrs [-device PATH] [-pcrs 0,7]     the SHA-256 PCR values
  qapi tpm seal [-device PATH] [-pcrs 7 | -authority PEM [-base B]] -out BLOB SECRETFILE
  qapi tpm unseal [-device PATH] [-approval JSON] -out FILE BLOB
  qapi tpm approve -key PEM [-device PATH] [-pcrs 7] [-pcr 7=HEX ...]
                   [-version N [-counter INDEX]] [-base B] -out JSON
  qapi tpm advance -key PEM -version N [-counter INDEX] [-base B] -out JSON
  qapi tpm counter -authority PEM [-device PATH] [-index INDEX] read | advance JSON

-device defaults to /dev/tpmrm0, then /dev/tpm0. approve signs, with the
operator's key, an approval of the given PCR values (-pcr) or of this TPM's
current ones (-pcrs); -version binds it to the anti-rollback counter.
advance signs the order that moves the counter to -version; only the
operator's key (-authority on the box) moves it. -base is the counter's
value at version 1 on the boxes meant (1 unless counter read says other).`

func runTPM(args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, tpmUsage)
		return 2
	}
	sub := args[0]
	fs := flag.NewFlagSet("qapi tpm "+sub, flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprintln(os.Stderr, tpmUsage) }
	device := fs.String("device", "", "TPM device `path`")
	pcrList := fs.String("pcrs", "7", "comma-separated PCR `indexes`")
	authority := fs.String("authority", "", "PEM `file` of the operator's public key")
	approvalFile := fs.String("approval", "", "approval JSON `file`")
	out := fs.String("out", "", "output `file`")
	keyFile := fs.String("key", "", "PEM `file` of the operator's private key")
	roots := fs.String("roots", "", "PEM `file` of the TPM manufacturers' root certificates")
	inter := fs.String("intermediates", "", "PEM `file` of their intermediate certificates")
	version := fs.Uint64("version", 0, "image `version` the approval is for")
	index := fs.String("index", "", "NV `index` of the counter (default 0x01005141)")
	counterFlag := fs.String("counter", "", "NV `index` of the counter an approval names")
	base := fs.Uint64("base", 0, "the counter's `base` on the boxes meant (0 means 1)")
	var given []tpm.PCRValue
	fs.Func("pcr", "approve `N=HEX`: PCR N's expected SHA-256 value", func(s string) error {
		v, err := tpmParsePCRValue(s)
		given = append(given, v)
		return err
	})
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	pcrs, err := tpmParseIndexes(*pcrList)
	if err != nil {
		return tpmFail(sub, err)
	}

	// approve and advance may run on the operator's machine, without a TPM.
	switch sub {
	case "approve":
		err := tpmApprove(*keyFile, *out, *device, pcrs, given, *version, *counterFlag, *base)
		if err != nil {
			return tpmFail(sub, err)
		}
		return 0
	case "advance":
		if err := tpmSignAdvance(*keyFile, *out, *version, *counterFlag, *base); err != nil {
			return tpmFail(sub, err)
		}
		return 0
	}

	switch sub {
	case "status", "endorsement", "pcrs", "seal", "unseal", "counter":
	default:
		fmt.Fprintf(os.Stderr, "qapi tpm: unknown subcommand %q\n\n%s\n", sub, tpmUsage)
		return 2
	}
	if sub == "endorsement" && *roots == "" {
		return tpmFail(sub, errors.New("give -roots PEM, the TPM manufacturers' root "+
			"certificates"))
	}
	t, err := tpmOpen(*device)
	if err != nil {
		return tpmFail(sub, err)
	}
	defer t.Close()

	switch sub {
	case "status":
		err = tpmStatus(t)
	case "endorsement":
		err = tpmEndorsement(t, *roots, *inter)
	case "pcrs":
		err = tpmPCRs(t, pcrs)
	case "seal":
		err = tpmSeal(t, fs.Args(), *out, pcrs, *authority, *base)
	case "unseal":
		err = tpmUnseal(t, fs.Args(), *out, *approvalFile)
	case "counter":
		err = tpmCounter(t, fs.Args(), *index, *authority)
	}
	if err != nil {
		return tpmFail(sub, err)
	}
	return 0
}

func tpmFail(sub string, err error) int {
	fmt.Fprintf(os.Stderr, "qapi tpm %s: %v\n", sub, err)
	return 1
}

func tpmStatus(t *tpm.TPM) error {
	s, err := t.Status()
	if err != nil {
		return err
	}
	fmt.Printf("manufacturer      %q\n", s.Manufacturer)
	fmt.Printf("storage root key  %x\n", s.SRKName)
	lock := "no"
	if s.InLockout {
		lock = "YES: objects with a password are refused"
	}
	fmt.Printf("lockout           %s (%d of %d failed tries, one forgiven every %s)\n",
		lock, s.FailedTries, s.MaxTries, s.Recovery)
	return nil
}

func tpmEndorsement(t *tpm.TPM, roots, intermediates string) error {
	r, err := tpmReadCertPool(roots)
	if err != nil {
		return err
	}
	var i *x509.CertPool
	if intermediates != "" {
		if i, err = tpmReadCertPool(intermediates); err != nil {
			return err
		}
	}
	e, err := t.CheckEndorsement(r, i)
	if err != nil {
		return err
	}
	fmt.Printf("endorsement key certificate  issuer %q, serial %s\n",
		e.Certificate.Issuer.String(), e.Certificate.SerialNumber)
	fmt.Printf("root                         %q\n", e.Chain[len(e.Chain)-1].Subject.String())
	fmt.Printf("storage root key             %x (resident in the endorsed TPM)\n", e.SRKName)
	return nil
}

// tpmReadCertPool reads the PEM certificates of file.
func tpmReadCertPool(file string) (*x509.CertPool, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("%s holds no PEM certificate", file)
	}
	return p, nil
}

func tpmPCRs(t *tpm.TPM, pcrs []int) error {
	vals, err := t.ReadPCRs(pcrs)
	if err != nil {
		return err
	}
	for _, v := range vals {
		fmt.Printf("%2d  %x\n", v.Index, v.Value)
	}
	return nil
}

func tpmSeal(t *tpm.TPM, args []string, out string, pcrs []int, authority string,
	base uint64) error {
	if len(args) != 1 || out == "" {
		return errors.New("name the secret file and -out BLOB")
	}
	secret, err := os.ReadFile(args[0])
	if err != nil {
		return err
	}
	opts := tpm.SealOptions{PCRs: pcrs, Base: base}
	if authority != "" {
		if opts.Authority, err = tpmReadPublicKey(authority); err != nil {
			return err
		}
	}
	b, err := t.Seal(secret, opts)
	if err != nil {
		return err
	}
	return tpm.CreateBlobFile(out, b)
}

func tpmUnseal(t *tpm.TPM, args []string, out, approvalFile string) error {
	if len(args) != 1 || out == "" {
		return errors.New("name the blob and -out FILE (the secret is never printed)")
	}
	b, err := tpm.ReadBlobFile(args[0])
	if err != nil {
		return err
	}
	var a *tpm.Approval
	if approvalFile != "" {
		data, err := os.ReadFile(approvalFile)
		if err != nil {
			return err
		}
		if a, err = tpm.ParseApproval(data); err != nil {
			return err
		}
	}
	secret, err := t.Unseal(b, a)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(secret); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func tpmApprove(keyFile, out, device string, pcrs []int, given []tpm.PCRValue,
	version uint64, counter string, base uint64) error {
	if keyFile == "" || out == "" {
		return errors.New("give -key PEM and -out JSON")
	}
	key, err := tpmReadPrivateKey(keyFile)
	if err != nil {
		return err
	}
	a := &tpm.Approval{PCRs: given, Version: version, Base: base}
	if version != 0 {
		if a.Counter, err = tpmCounterIndex(counter); err != nil {
			return err
		}
	}
	if len(given) == 0 {
		t, err := tpmOpen(device)
		if err != nil {
			return fmt.Errorf("no -pcr values given, and reading them: %w", err)
		}
		a.PCRs, err = t.ReadPCRs(pcrs)
		t.Close()
		if err != nil {
			return err
		}
	}
	if err := a.Sign(key); err != nil {
		return err
	}
	data, err := tpm.MarshalApproval(a)
	if err != nil {
		return err
	}
	return os.WriteFile(out, append(data, '\n'), 0o644)
}

// tpmCounterIndex parses -counter, DefaultCounterIndex if empty.
func tpmCounterIndex(s string) (uint32, error) {
	if s == "" {
		return tpm.DefaultCounterIndex, nil
	}
	return tpmParseIndex(s)
}

func tpmSignAdvance(keyFile, out string, version uint64, counter string, base uint64) error {
	if keyFile == "" || out == "" || version == 0 {
		return errors.New("give -key PEM, -version N and -out JSON")
	}
	key, err := tpmReadPrivateKey(keyFile)
	if err != nil {
		return err
	}
	a := &tpm.Advance{Version: version, Base: base}
	if a.Counter, err = tpmCounterIndex(counter); err != nil {
		return err
	}
	if err := a.Sign(key); err != nil {
		return err
	}
	data, err := tpm.MarshalAdvance(a)
	if err != nil {
		return err
	}
	return os.WriteFile(out, append(data, '\n'), 0o644)
}

func tpmCounter(t *tpm.TPM, args []string, index, authority string) error {
	var idx uint32
	if index != "" {
		var err error
		if idx, err = tpmParseIndex(index); err != nil {
			return err
		}
	}
	if len(args) == 0 || args[0] == "advance" && len(args) != 2 {
		return errors.New("say read, or advance JSON (the operator's signed advance)")
	}
	if authority == "" {
		return errors.New("give -authority PEM, the operator's public key: the counter " +
			"is the operator's, and only the operator's signed advance moves it")
	}
	key, err := tpmReadPublicKey(authority)
	if err != nil {
		return err
	}
	c, err := t.Counter(idx, key)
	if err != nil {
		return err
	}
	switch args[0] {
	case "read":
	case "advance":
		data, err := os.ReadFile(args[1])
		if err != nil {
			return err
		}
		adv, err := tpm.ParseAdvance(data)
		if err != nil {
			return err
		}
		if err := c.Advance(adv); err != nil {
			return err
		}
	default:
		return fmt.Errorf("unknown counter action %q: say read or advance", args[0])
	}
	v, err := c.Read()
	if err != nil {
		return err
	}
	fmt.Printf("anti-rollback counter %#x: %d (the lowest image version this box boots); "+
		"base %d\n", c.Index(), v, c.Base())
	return nil
}

func tpmOpen(device string) (*tpm.TPM, error) {
	if device != "" {
		return tpm.Open(device)
	}
	return tpm.Open()
}

func tpmParseIndexes(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return nil, fmt.Errorf("PCR %q is not a number", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func tpmParsePCRValue(s string) (tpm.PCRValue, error) {
	i, h, ok := strings.Cut(s, "=")
	n, err := strconv.Atoi(i)
	if !ok || err != nil {
		return tpm.PCRValue{}, fmt.Errorf("%q is not N=HEX", s)
	}
	v, err := hex.DecodeString(h)
	if err != nil || len(v) != 32 {
		return tpm.PCRValue{}, fmt.Errorf("PCR %d: %q is not a SHA-256 value in hex", n, h)
	}
	return tpm.PCRValue{Index: n, Value: v}, nil
}

func tpmParseIndex(s string) (uint32, error) {
	v, err := strconv.ParseUint(s, 0, 32)
	if err != nil {
		return 0, fmt.Errorf("NV index %q is not a number (write 0x01005141)", s)
	}
	return uint32(v), nil
}

// tpmReadPEM returns the first PEM block of file.
func tpmReadPEM(file string) (*pem.Block, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	b, _ := pem.Decode(data)
	if b == nil {
		return nil, fmt.Errorf("%s holds no PEM block", file)
	}
	return b, nil
}

// tpmReadPrivateKey reads an ECDSA key from a PKCS #8 or SEC 1 PEM file.
func tpmReadPrivateKey(file string) (crypto.Signer, error) {
	b, err := tpmReadPEM(file)
	if err != nil {
		return nil, err
	}
	var k any
	switch b.Type {
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(b.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(b.Bytes)
	default:
		return nil, fmt.Errorf("%s: a %q block is not a private key", file, b.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: the operator's key must be ECDSA P-256, not %T", file, k)
	}
	return ek, nil
}

// tpmReadPublicKey reads an ECDSA public key from a PKIX or certificate PEM
// file.
func tpmReadPublicKey(file string) (*ecdsa.PublicKey, error) {
	b, err := tpmReadPEM(file)
	if err != nil {
		return nil, err
	}
	var k any
	switch b.Type {
	case "PUBLIC KEY":
		k, err = x509.ParsePKIXPublicKey(b.Bytes)
	case "CERTIFICATE":
		var c *x509.Certificate
		if c, err = x509.ParseCertificate(b.Bytes); err == nil {
			k = c.PublicKey
		}
	default:
		return nil, fmt.Errorf("%s: a %q block is not a public key", file, b.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	ek, ok := k.(*ecdsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%s: the operator's key must be ECDSA P-256, not %T", file, k)
	}
	return ek, nil
}
