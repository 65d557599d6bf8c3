package linalg

import (
	"fmt"
	"strconv"
	"strings"
)

// EnvThreadTimeout is OpenBLAS's variable for how long an idle worker
// thread of its pthread server busy-waits (calling sched_yield) for the
// next call before it sleeps on a condition variable: 2^n cycles of the
// time-stamp counter, n clamped to [4, 30]; unset or 0, the build's
// THREAD_TIMEOUT of 28. OpenBLAS reads it once, in the constructor that
// runs inside dlopen (openblas_read_env, then blas_thread_init).
const EnvThreadTimeout = "OPENBLAS_THREAD_TIMEOUT"

// threadTimeout is the exponent iteris sets when the user has not: 2^16
// cycles, about 20 microseconds, roughly what waking a sleeping thread
// costs. The library's 2^28 (about 0.1 s) keeps a worker spinning through
// the whole gap between two products; in a forward pass those gaps are the
// engine's own element-wise work (attention, SiLU, norms) on the same cores,
// and the spinning worker takes a core from it (bench/forward.sh, 155.7M
// Llama on 2 cores: 555 tok/s and 3.67 CPU s per forward with the library's
// timeout, 636 and 3.13 with 2^12 or 2^16, in one session).
const threadTimeout = 16

// timeoutDecision is the OPENBLAS_THREAD_TIMEOUT to set before loading
// (empty for none) and why.
type timeoutDecision struct {
	Set    string
	Reason string
}

// chooseThreadTimeout keeps the user's OPENBLAS_THREAD_TIMEOUT, even an
// empty or invalid one (the library then applies its own rules), and
// otherwise sets threadTimeout. It is a pure function.
func chooseThreadTimeout(env string, envSet bool) timeoutDecision {
	if envSet {
		return timeoutDecision{Reason: fmt.Sprintf("%s=%q is set in the environment (%s); iteris never overrides it",
			EnvThreadTimeout, env, describeTimeout(env))}
	}
	v := strconv.Itoa(threadTimeout)
	return timeoutDecision{Set: v, Reason: fmt.Sprintf("%s=%s set for the load: %s, instead of the library's 2^28",
		EnvThreadTimeout, v, describeTimeout(v))}
}

// describeTimeout says what OpenBLAS 0.3 makes of an OPENBLAS_THREAD_TIMEOUT
// value: atoi of it, 0 or less meaning the default, clamped to [4, 30].
func describeTimeout(v string) string {
	n := atoiPrefix(v)
	switch {
	case n <= 0:
		return "idle threads spin 2^28 cycles, the library's default"
	case n < 4:
		n = 4
	case n > 30:
		n = 30
	}
	return fmt.Sprintf("idle threads spin 2^%d cycles before they sleep", n)
}

// atoiPrefix is C's atoi: optional blanks and sign, then the leading digits;
// 0 when there are none.
func atoiPrefix(s string) int {
	s = strings.TrimLeft(s, " \t\n\v\f\r")
	neg := false
	if s != "" && (s[0] == '-' || s[0] == '+') {
		neg = s[0] == '-'
		s = s[1:]
	}
	n := 0
	for _, c := range []byte(s) {
		if c < '0' || c > '9' || n > 1<<20 {
			break
		}
		n = n*10 + int(c-'0')
	}
	if neg {
		return -n
	}
	return n
}
