package server

import (
	"context"

	"github.com/qapi-az/qapi/appliance/messagelog"
)

// DiscardMessageLog makes the proxies of a server made with o keep no
// message log, for benchmarks that measure what the log costs.
func DiscardMessageLog(o *Options) { o.proxyLog = discardLog{} }

type discardLog struct{}

func (discardLog) Append(context.Context, ...messagelog.Record) error { return nil }
