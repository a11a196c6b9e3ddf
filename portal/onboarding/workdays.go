package onboarding

import (
	"fmt"
	"slices"
	"time"
)

// Calendar counts working days: every day but Saturday, Sunday and the
// listed holidays. The zero Calendar has no holidays.
type Calendar struct {
	// Holidays are non-working dates; only their year, month and day count.
	Holidays []time.Time
}

// ParseHolidays reads dates written as 2006-01-02.
func ParseHolidays(dates []string) (Calendar, error) {
	var c Calendar
	for _, d := range dates {
		t, err := time.Parse(time.DateOnly, d)
		if err != nil {
			return Calendar{}, fmt.Errorf("holiday %q is not a date like 2026-03-20: %w", d, err)
		}
		c.Holidays = append(c.Holidays, t)
	}
	return c, nil
}

// IsWorkingDay reports whether the calendar day of t is a working day.
func (c Calendar) IsWorkingDay(t time.Time) bool {
	if wd := t.Weekday(); wd == time.Saturday || wd == time.Sunday {
		return false
	}
	y, m, d := t.Date()
	return !slices.ContainsFunc(c.Holidays, func(h time.Time) bool {
		hy, hm, hd := h.Date()
		return hy == y && hm == m && hd == d
	})
}

// AddWorkingDays returns the end of the n-th working day after the day of
// start (the day a request arrives does not count): the instant by which a
// duty of n working days must be done. Clauses 3.2 and 3.9 give the
// operator 7 working days.
func (c Calendar) AddWorkingDays(start time.Time, n int) time.Time {
	y, m, d := start.Date()
	day := time.Date(y, m, d, 0, 0, 0, 0, start.Location())
	for n > 0 {
		day = day.AddDate(0, 0, 1)
		if c.IsWorkingDay(day) {
			n--
		}
	}
	return day.AddDate(0, 0, 1).Add(-time.Nanosecond)
}
