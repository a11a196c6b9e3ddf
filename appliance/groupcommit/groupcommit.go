// Package groupcommit gathers the requests that queue up behind one, so
// that a single durable commit (one disk sync) serves them all: the
// message log commits its records (2.2.2) this way, and with them the
// replay store's seen ids (6.2.4).
package groupcommit

import "time"

// Collector gathers batches for one committing goroutine. Its zero value
// takes only what is already queued, one weight unit per request, with no
// bound. It is not safe for concurrent use.
type Collector[T any] struct {
	// Max bounds a batch: Next takes no more once its weight reaches Max
	// (the last request taken may pass it); no bound when not positive.
	Max int
	// Delay is how long Next waits for more requests after the first,
	// and only when the batch before carried more than one request: a
	// lone caller is never delayed, while under load, when commits are
	// shared anyway, fewer commits carry more.
	Delay time.Duration
	// Weight is a request's share of Max; 1 when nil.
	Weight func(T) int

	shared bool
	timer  *time.Timer
}

// Next returns batch[:0] with first and what queued on ch behind it,
// waiting for more as Delay says, up to Max.
func (c *Collector[T]) Next(first T, ch <-chan T, batch []T) []T {
	batch = append(batch[:0], first)
	n := c.weight(first)
	var expired <-chan time.Time
	if c.Delay > 0 && c.shared {
		if c.timer == nil {
			c.timer = time.NewTimer(c.Delay)
		} else {
			c.timer.Reset(c.Delay)
		}
		defer c.timer.Stop()
		expired = c.timer.C
	}
	for c.Max <= 0 || n < c.Max {
		if expired == nil {
			select {
			case r := <-ch:
				batch = append(batch, r)
				n += c.weight(r)
				continue
			default:
			}
			break
		}
		select {
		case r := <-ch:
			batch = append(batch, r)
			n += c.weight(r)
			continue
		case <-expired:
		}
		break
	}
	c.shared = len(batch) > 1
	return batch
}

func (c *Collector[T]) weight(r T) int {
	if c.Weight == nil {
		return 1
	}
	return c.Weight(r)
}
