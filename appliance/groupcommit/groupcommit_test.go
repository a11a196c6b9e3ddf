package groupcommit

import (
	"slices"
	"testing"
	"time"
)

// TestNextTakesWhatQueued: what is queued behind the first request joins
// its batch until the batch's weight reaches Max, and the rest waits for
// the next batch.
func TestNextTakesWhatQueued(t *testing.T) {
	ch := make(chan int, 10)
	for i := 2; i <= 6; i++ {
		ch <- i
	}
	c := Collector[int]{Max: 7, Weight: func(n int) int { return n }}
	for _, want := range [][]int{{1, 2, 3, 4}, {0, 5, 6}, {9}} {
		got := c.Next(want[0], ch, nil)
		if !slices.Equal(got, want) {
			t.Errorf("batch %v, want %v", got, want)
		}
	}
}

// TestLoneRequestNotDelayed: after a batch of one, Next returns at once
// even with a long Delay; after a shared batch it waits for a request that
// comes later, until Delay.
func TestLoneRequestNotDelayed(t *testing.T) {
	ch := make(chan int)
	c := Collector[int]{Delay: time.Hour}
	done := make(chan []int)
	go func() { done <- c.Next(1, ch, nil) }()
	select {
	case got := <-done:
		if len(got) != 1 {
			t.Fatalf("lone batch %v", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a lone request waited for the Delay of an hour")
	}

	// After a batch of several, Next waits for requests sent later; Max
	// ends this batch at three.
	c.shared, c.Max = true, 3
	go func() { done <- c.Next(1, ch, nil) }()
	ch <- 2
	ch <- 3
	select {
	case got := <-done:
		if len(got) != 3 {
			t.Fatalf("shared batch %v, want [1 2 3]", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the shared batch did not end at Max")
	}
}

// TestSharedWaitEnds: after a shared batch, Next returns once Delay
// passes with nothing more queued.
func TestSharedWaitEnds(t *testing.T) {
	c := Collector[int]{Delay: 20 * time.Millisecond, shared: true}
	if got := c.Next(1, make(chan int), nil); len(got) != 1 {
		t.Errorf("batch %v, want [1]", got)
	}
	if c.shared {
		t.Error("a batch of one leaves the collector counting commits as shared")
	}
}
