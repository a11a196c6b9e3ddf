package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/qapi-az/qapi/appliance/manage"
)

func init() {
	register("notices", command{
		summary: "list the service notices in force (3.12, 3.14) on this security server",
		run:     func(args []string) int { return runNotices(args, os.Stdout) },
	})
}

func runNotices(args []string, out io.Writer) int {
	fs := flag.NewFlagSet("notices", flag.ContinueOnError)
	def := os.Getenv("QAPI_MANAGE_CONN")
	if def == "" {
		def = manageConnDefault
	}
	conn := fs.String("conn", def, "management connection file")
	asJSON := fs.Bool("json", false, "print the list as JSON")
	fs.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: qapi notices [-conn FILE] [-json]\n\n"+
			"Lists the notices of the global configuration: new service versions and\n"+
			"the end of old ones (3.12), announced disconnections (3.14), and services\n"+
			"already disconnected. OURS marks a service this server provides.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	c, err := manage.DialAPI(*conn)
	if err != nil {
		fmt.Fprintln(os.Stderr, "qapi notices:", err)
		return 1
	}
	var list manage.NoticeList
	if err := c.Do(context.Background(), "GET", "/api/notices", nil, &list); err != nil {
		fmt.Fprintln(os.Stderr, "qapi notices:", err)
		return 1
	}
	if *asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		enc.Encode(list)
		return 0
	}
	printNotices(out, list)
	return 0
}

// printNotices writes the list as a table, one notice a line.
func printNotices(w io.Writer, list manage.NoticeList) {
	fmt.Fprintf(w, "global configuration %s, serial %d; notices: %d\n", list.Instance,
		list.Serial, len(list.Notices))
	if len(list.Notices) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KIND\tDATE\tSERVICE\tOURS\tTEXT")
	for _, n := range list.Notices {
		ours := ""
		if n.Ours {
			ours = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", n.Kind,
			n.Effective.UTC().Format(time.RFC3339), n.Service, ours, n.Text)
	}
	tw.Flush()
}
