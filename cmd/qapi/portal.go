package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/qapi-az/qapi/appliance/ident"
	"github.com/qapi-az/qapi/portal"
	"github.com/qapi-az/qapi/portal/incident"
	"github.com/qapi-az/qapi/portal/registry"
)

func init() {
	register("portal", command{
		summary: "operate the portal: applications, certificates, servers, blocks, notices",
		run:     runPortal,
	})
}

// portalCmd is one 'qapi portal' subcommand.
type portalCmd struct {
	args  string // positional arguments, for usage
	help  string
	flags func(fs *flag.FlagSet) func(c *portal.Client, args []string) error
}

const portalConnDefault = "/var/lib/qapi-portal/operator.json"

var portalCmds map[string]portalCmd

func init() {
	ctx := context.Background()
	show := func(v any) error {
		b, _ := json.MarshalIndent(v, "", "  ")
		fmt.Println(string(b))
		return nil
	}
	get := func(path string) func(fs *flag.FlagSet) func(*portal.Client, []string) error {
		return func(*flag.FlagSet) func(*portal.Client, []string) error {
			return func(c *portal.Client, _ []string) error {
				var out json.RawMessage
				if err := c.Do(ctx, "GET", path, nil, &out); err != nil {
					return err
				}
				os.Stdout.Write(out)
				return nil
			}
		}
	}
	post := func(c *portal.Client, path string, in any) error {
		var out json.RawMessage
		if err := c.Do(ctx, "POST", path, in, &out); err != nil {
			return err
		}
		os.Stdout.Write(out)
		return nil
	}
	readJSON := func(path string, v any) error {
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(b, v); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		return nil
	}
	// byID posts body() to /api/KIND/ID/ACTION.
	byID := func(kind, action string, body func(fs *flag.FlagSet) func() (any, error)) func(
		fs *flag.FlagSet) func(*portal.Client, []string) error {
		return func(fs *flag.FlagSet) func(*portal.Client, []string) error {
			var mk func() (any, error)
			if body != nil {
				mk = body(fs)
			}
			return func(c *portal.Client, args []string) error {
				if len(args) != 1 {
					return fmt.Errorf("give one %s id", kind)
				}
				if _, err := strconv.ParseUint(args[0], 10, 64); err != nil {
					return fmt.Errorf("%s id %q is not a number", kind, args[0])
				}
				var in any
				if mk != nil {
					var err error
					if in, err = mk(); err != nil {
						return err
					}
				}
				return post(c, "/api/"+kind+"/"+args[0]+"/"+action, in)
			}
		}
	}
	reason := func(name string) func(fs *flag.FlagSet) func() (any, error) {
		return func(fs *flag.FlagSet) func() (any, error) {
			r := fs.String(name, "", "the "+name+" the participant is told")
			return func() (any, error) { return portal.Reason{Reason: *r}, nil }
		}
	}
	// postFile posts the JSON file named by the one argument to path.
	postFile := func(path string) func(*flag.FlagSet) func(*portal.Client, []string) error {
		return func(*flag.FlagSet) func(*portal.Client, []string) error {
			return func(c *portal.Client, args []string) error {
				if len(args) != 1 {
					return fmt.Errorf("give the application's JSON file")
				}
				var v json.RawMessage
				if err := readJSON(args[0], &v); err != nil {
					return err
				}
				return post(c, path, v)
			}
		}
	}
	oneClient := func(args []string) (ident.Client, error) {
		if len(args) != 1 {
			return ident.Client{}, fmt.Errorf("give one client INSTANCE/CLASS/CODE[/SUBSYSTEM]")
		}
		return ident.ParseClient(args[0])
	}
	date := func(s string) (time.Time, error) {
		t, err := time.Parse(time.DateOnly, s)
		if err != nil {
			return t, fmt.Errorf("date %q is not written as 2026-01-31", s)
		}
		return t, nil
	}

	portalCmds = map[string]portalCmd{
		"applications": {help: "list annex 1 and 2 applications with due dates (3.2, 3.9)",
			flags: func(fs *flag.FlagSet) func(*portal.Client, []string) error {
				overdue := fs.Bool("overdue", false, "only overdue applications")
				return func(c *portal.Client, _ []string) error {
					var apps []registry.Application
					if err := c.Do(ctx, "GET", "/api/applications", nil, &apps); err != nil {
						return err
					}
					tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "ID\tKIND\tSTATE\tRECEIVED\tDUE\tPARTICIPANT")
					for _, a := range apps {
						if *overdue && !a.Overdue {
							continue
						}
						due := "-"
						if !a.Due.IsZero() {
							due = a.Due.Format(time.DateOnly)
						}
						if a.Overdue {
							due += " OVERDUE"
						}
						name := ""
						if a.System != nil {
							name = a.System.Participant + ": " + a.System.System
						} else if a.Service != nil {
							name = a.Service.Participant + ": " + a.Service.Provider
						}
						fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", a.ID, a.Kind, a.State,
							a.Received.Format(time.DateOnly), due, name)
					}
					return tw.Flush()
				}
			}},
		"apply-system": {args: "FILE.json", help: "record an annex 1 application (3.1)",
			flags: postFile("/api/applications/system")},
		"apply-service": {args: "FILE.json", help: "record an annex 2 application (3.8.1)",
			flags: postFile("/api/applications/service")},
		"approve": {args: "ID", help: "approve an annex 1 application with its contract (3.2, 3.3)",
			flags: byID("applications", "approve", func(fs *flag.FlagSet) func() (any, error) {
				sub := fs.String("subsystem", "", "subsystem code for the information system")
				contract := fs.String("contract", "", "JSON file of the contract (3.3.1-3.3.7)")
				return func() (any, error) {
					a := portal.ApproveSystem{Subsystem: *sub}
					if *contract == "" {
						return nil, fmt.Errorf("-contract FILE is required (clause 3.3)")
					}
					if err := readJSON(*contract, &a.Contract); err != nil {
						return nil, err
					}
					return a, nil
				}
			})},
		"reject": {args: "ID", help: "reject an application (3.4, 3.10)",
			flags: byID("applications", "reject", reason("reason"))},
		"tested": {args: "ID", help: "record that an annex 2 application's test passed (3.8.2)",
			flags: byID("applications", "tested", reason("reason"))},
		"connect": {args: "ID", help: "connect the services of a tested annex 2 application (3.9)",
			flags: byID("applications", "connect", nil)},
		"members":  {help: "list members", flags: get("/api/members")},
		"services": {help: "list connected services", flags: get("/api/services")},
		"csrs":     {help: "list certificate requests", flags: get("/api/csrs")},
		"csr-approve": {args: "ID", help: "issue the certificate a request asks for",
			flags: byID("csrs", "approve", nil)},
		"csr-reject": {args: "ID", help: "reject a certificate request",
			flags: byID("csrs", "reject", reason("reason"))},
		"certs": {help: "list issued certificates", flags: get("/api/certs")},
		"revoke": {args: "SERIAL", help: "revoke a certificate (hex serial)",
			flags: func(fs *flag.FlagSet) func(*portal.Client, []string) error {
				r := fs.Int("reason", 0, "RFC 5280 reason code (1 keyCompromise, 4 superseded)")
				return func(c *portal.Client, args []string) error {
					if len(args) != 1 {
						return fmt.Errorf("give the certificate's hex serial")
					}
					return post(c, "/api/certs/"+url.PathEscape(args[0])+"/revoke",
						portal.RevokeRequest{Reason: *r})
				}
			}},
		"servers": {help: "list security server registrations", flags: get("/api/servers")},
		"server-approve": {args: "ID", help: "approve a security server's registration",
			flags: byID("servers", "approve", nil)},
		"server-reject": {args: "ID", help: "reject a registration",
			flags: byID("servers", "reject", reason("reason"))},
		"block": {args: "CLIENT", help: "block a participant at once (3.7)",
			flags: func(fs *flag.FlagSet) func(*portal.Client, []string) error {
				clause := fs.String("clause", "", "3.7.1 (harms the portal) or 3.7.2 "+
					"(security or personal-data breach)")
				r := fs.String("reason", "", "why")
				return func(c *portal.Client, args []string) error {
					cl, err := oneClient(args)
					if err != nil {
						return err
					}
					return post(c, "/api/block", portal.BlockRequest{Client: cl,
						Clause: *clause, Reason: *r})
				}
			}},
		"unblock": {args: "CLIENT", help: "lift a block",
			flags: func(*flag.FlagSet) func(*portal.Client, []string) error {
				return func(c *portal.Client, args []string) error {
					cl, err := oneClient(args)
					if err != nil {
						return err
					}
					return post(c, "/api/unblock", portal.BlockRequest{Client: cl})
				}
			}},
		"blocks":   {help: "list blocks in force", flags: get("/api/blocks")},
		"breaches": {help: "list breach notices (3.6)", flags: get("/api/breaches")},
		"breach": {args: "MEMBER", help: "send a written breach notice: a month to remedy (3.6)",
			flags: func(fs *flag.FlagSet) func(*portal.Client, []string) error {
				text := fs.String("text", "", "the notice")
				return func(c *portal.Client, args []string) error {
					cl, err := oneClient(args)
					if err != nil {
						return err
					}
					return post(c, "/api/breaches", portal.BreachRequest{Member: cl,
						Text: *text})
				}
			}},
		"remedied": {args: "ID", help: "close a breach notice as remedied",
			flags: byID("breaches", "remedied", nil)},
		"disconnect": {args: "MEMBER", help: "disconnect a participant (3.5, 3.6) and " +
			"revoke its certificates",
			flags: func(fs *flag.FlagSet) func(*portal.Client, []string) error {
				dissolved := fs.Bool("dissolved", false, "dissolved without a successor (3.5)")
				breach := fs.Uint64("breach", 0, "the unremedied breach notice (3.6)")
				return func(c *portal.Client, args []string) error {
					cl, err := oneClient(args)
					if err != nil {
						return err
					}
					return post(c, "/api/disconnect", portal.DisconnectRequest{Member: cl,
						Dissolved: *dissolved, Breach: *breach})
				}
			}},
		"announce-version": {help: "announce a new service version and the old one's " +
			"end of life (3.12)",
			flags: func(fs *flag.FlagSet) func(*portal.Client, []string) error {
				nw := fs.String("new", "", "new version INSTANCE/CLASS/CODE/SUB/SERVICE/VERSION")
				old := fs.String("old", "", "old version, same form")
				eol := fs.String("eol", "", "end of life of the old version, 2026-01-31")
				text := fs.String("text", "", "text for participants")
				return func(c *portal.Client, _ []string) error {
					n, err := ident.ParseService(*nw)
					if err != nil {
						return err
					}
					o, err := ident.ParseService(*old)
					if err != nil {
						return err
					}
					t, err := date(*eol)
					if err != nil {
						return err
					}
					return post(c, "/api/notices/version", portal.VersionNotice{New: n,
						Old: o, EndOfLife: t, Text: *text})
				}
			}},
		"announce-disconnect": {args: "SERVICE", help: "announce a service's disconnection, " +
			"at least a month ahead (3.13, 3.14)",
			flags: func(fs *flag.FlagSet) func(*portal.Client, []string) error {
				on := fs.String("date", "", "disconnection date, 2026-01-31")
				text := fs.String("text", "", "the participant's reason (3.13)")
				return func(c *portal.Client, args []string) error {
					if len(args) != 1 {
						return fmt.Errorf("give one service")
					}
					s, err := ident.ParseService(args[0])
					if err != nil {
						return err
					}
					t, err := date(*on)
					if err != nil {
						return err
					}
					return post(c, "/api/notices/disconnect", portal.DisconnectNotice{
						Service: s, Effective: t, Text: *text})
				}
			}},
		"notices": {help: "list service notices", flags: get("/api/notices")},
		"incidents": {help: "list security incidents reported by servers (6.8)",
			flags: func(fs *flag.FlagSet) func(*portal.Client, []string) error {
				kind := fs.String("kind", "", "only this kind (replay, bad-signature, ...)")
				server := fs.String("server", "", "only from this server OWNER/CODE")
				client := fs.String("client", "", "only about this client")
				since := fs.Duration("since", 0, "only the last DURATION (e.g. 24h)")
				asJSON := fs.Bool("json", false, "print JSON")
				return func(c *portal.Client, _ []string) error {
					q := url.Values{}
					for k, v := range map[string]string{"kind": *kind, "server": *server,
						"client": *client} {
						if v != "" {
							q.Set(k, v)
						}
					}
					if *since > 0 {
						q.Set("since", time.Now().Add(-*since).UTC().Format(time.RFC3339))
					}
					var recs []incident.Record
					if err := c.Do(ctx, "GET", "/api/incidents?"+q.Encode(), nil,
						&recs); err != nil {
						return err
					}
					if *asJSON {
						return show(recs)
					}
					tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "ID\tTIME\tKIND\tSERVER\tCLIENT\tMESSAGE\tDETAIL")
					for _, r := range recs {
						fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID,
							r.Time.UTC().Format(time.RFC3339), r.Kind, r.Server, r.Client,
							r.MessageID, r.Detail)
					}
					return tw.Flush()
				}
			}},
		"publish": {help: "publish a new global configuration of every instance now",
			flags: func(*flag.FlagSet) func(*portal.Client, []string) error {
				return func(c *portal.Client, _ []string) error {
					return post(c, "/api/publish", nil)
				}
			}},
		"anchor": {args: "INSTANCE", help: "print the configuration anchor a security " +
			"server installs (4.1.2.3-4.1.2.5)",
			flags: func(*flag.FlagSet) func(*portal.Client, []string) error {
				return func(c *portal.Client, args []string) error {
					if len(args) != 1 {
						return fmt.Errorf("give the instance, e.g. AZ")
					}
					var out json.RawMessage
					if err := c.Do(ctx, "GET", "/api/anchor/"+url.PathEscape(args[0]), nil,
						&out); err != nil {
						return err
					}
					os.Stdout.Write(out)
					return nil
				}
			}},
	}
}

func portalUsage() {
	fmt.Fprintln(os.Stderr, "usage: qapi portal [-conn FILE] COMMAND [flags] [args]\n\n"+
		"The connection file is what qapi-portal wrote into its data directory\n"+
		"(default "+portalConnDefault+", or $QAPI_PORTAL_CONN).\n\ncommands:")
	names := make([]string, 0, len(portalCmds))
	for n := range portalCmds {
		names = append(names, n)
	}
	sortStrings(names)
	for _, n := range names {
		c := portalCmds[n]
		fmt.Fprintf(os.Stderr, "  %-36s %s\n", strings.TrimSpace(n+" "+c.args), c.help)
	}
}

func runPortal(args []string) int {
	fs := flag.NewFlagSet("portal", flag.ContinueOnError)
	def := os.Getenv("QAPI_PORTAL_CONN")
	if def == "" {
		def = portalConnDefault
	}
	conn := fs.String("conn", def, "operator connection file")
	fs.Usage = portalUsage
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() == 0 {
		portalUsage()
		return 2
	}
	name := fs.Arg(0)
	pc, ok := portalCmds[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "qapi portal: unknown command %q\n\n", name)
		portalUsage()
		return 2
	}
	sub := flag.NewFlagSet("portal "+name, flag.ContinueOnError)
	do := pc.flags(sub)
	if err := sub.Parse(interspersed(sub, fs.Args()[1:])); err != nil {
		return 2
	}
	c, err := portal.Dial(*conn)
	if err != nil {
		fmt.Fprintln(os.Stderr, "qapi portal:", err)
		return 1
	}
	if err := do(c, sub.Args()); err != nil {
		fmt.Fprintf(os.Stderr, "qapi portal %s: %v\n", name, err)
		return 1
	}
	return 0
}

// interspersed moves the flags of args in front of the positional
// arguments, so that 'qapi portal approve 3 -subsystem REG' works like
// 'qapi portal approve -subsystem REG 3'.
func interspersed(fs *flag.FlagSet, args []string) []string {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			pos = append(pos, a)
			continue
		}
		flags = append(flags, a)
		name := strings.TrimLeft(a, "-")
		if strings.Contains(name, "=") {
			continue
		}
		f := fs.Lookup(name)
		if f == nil {
			continue
		}
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
			continue
		}
		if i+1 < len(args) {
			i++
			flags = append(flags, args[i])
		}
	}
	return append(flags, pos...)
}

func sortStrings(s []string) { sort.Strings(s) }
