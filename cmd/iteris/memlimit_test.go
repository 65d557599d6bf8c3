package main

import "testing"

func TestGoMemoryLimit(t *testing.T) {
	env := func(v string) func(string) string {
		return func(k string) string {
			if k == "GOMEMLIMIT" {
				return v
			}
			return ""
		}
	}
	for _, c := range []struct {
		name   string
		budget int64
		env    string
		limit  int64
		ok     bool
	}{
		{"the budget", 8 << 30, "", 8 << 30, true},
		{"the user's GOMEMLIMIT wins", 8 << 30, "2GiB", 0, false},
		{"GOMEMLIMIT=off is the user's too", 8 << 30, "off", 0, false},
		{"no budget", 0, "", 0, false},
	} {
		limit, ok := goMemoryLimit(c.budget, env(c.env))
		if limit != c.limit || ok != c.ok {
			t.Errorf("%s: goMemoryLimit(%d, GOMEMLIMIT=%q) = %d, %v; want %d, %v", c.name, c.budget, c.env, limit, ok, c.limit, c.ok)
		}
	}
}
