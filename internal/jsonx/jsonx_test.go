package jsonx

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// wantMembers fails unless got holds exactly the keys and compact values of want.
func wantMembers(t *testing.T, got []Member, want []string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d members %v, want %d %v", len(got), got, len(want), want)
	}
	for i, m := range got {
		if s := m.Key + "=" + Compact(m.Val, -1); s != want[i] {
			t.Errorf("member %d is %s, want %s", i, s, want[i])
		}
	}
}

func TestObjectMembers(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []string
	}{
		{"empty object", `{}`, nil},
		{"white space around", " \n{ } \t\n", nil},
		{"file order kept", `{"b": 1, "a": [1, 2], "c": {"x": null}}`, []string{`b=1`, `a=[1,2]`, `c={"x":null}`}},
		{"huge number", `{"n": 1e999}`, []string{`n=1e999`}},
		{"escaped key", `{"a\u0062": "\u00e9"}`, []string{`ab="\u00e9"`}},
		{"keys differing in case", `{"a": 1, "A": 2}`, []string{`a=1`, `A=2`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ObjectMembers([]byte(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			wantMembers(t, got, tc.want)
		})
	}
}

func TestObjectMembersRefusals(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		problem  Problem
		key      string
		msg      string
	}{
		{"empty", ``, NotJSON, "", "not valid JSON: EOF"},
		{"truncated", `{"a": `, BadValue, "a", `value of "a" is not valid JSON: EOF`},
		{"unclosed", `{"a": 1`, NotJSON, "", "not valid JSON: EOF"},
		{"missing colon", `{"a" 1}`, BadValue, "a", `value of "a" is not valid JSON: expected colon after object key`},
		{"number key", `{1: 2}`, NotJSON, "", "not valid JSON: invalid character '1'"},
		{"array", `[1, 2]`, NotObject, "", "is an array, want a JSON object"},
		{"string", `"x"`, NotObject, "", "is a string, want a JSON object"},
		{"number", `1e999`, NotObject, "", "is a number, want a JSON object"},
		{"boolean", `true`, NotObject, "", "is a boolean, want a JSON object"},
		{"null", `null`, NotObject, "", "is null, want a JSON object"},
		{"bad value", `{"a": tru}`, BadValue, "a", `value of "a" is not valid JSON: invalid character '}'`},
		{"duplicate", `{"a": 1, "b": 2, "a": 3}`, DuplicateKey, "a", `duplicate key "a"`},
		{"duplicate after escape", `{"a": 1, "\u0061": 3}`, DuplicateKey, "a", `duplicate key "a"`},
		{"second object", `{} {}`, TrailingData, "", "data after the JSON object: {"},
		{"trailing number", `{} 1e999`, TrailingData, "", "data after the JSON object: 1e999"},
		{"trailing garbage", `{"a": 1} x`, TrailingData, "", "data after the JSON object: invalid character 'x'"},
		{"trailing brace", `{}}`, TrailingData, "", "data after the JSON object: invalid character '}'"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ObjectMembers([]byte(tc.in))
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v (%T), want *Error", err, err)
			}
			if e.Problem != tc.problem || e.Key != tc.key {
				t.Errorf("problem %d key %q, want %d %q", e.Problem, e.Key, tc.problem, tc.key)
			}
			if !strings.HasPrefix(err.Error(), tc.msg) {
				t.Errorf("message %q, want it to begin %q", err, tc.msg)
			}
		})
	}
}

func TestOptions(t *testing.T) {
	dups := Options{AllowDuplicates: true}
	got, err := dups.ObjectMembers([]byte(`{"a": 1, "b": 2, "a": 3}`))
	if err != nil {
		t.Fatal(err)
	}
	wantMembers(t, got, []string{"a=1", "b=2", "a=3"})

	// Repeated keys allowed, trailing data still refused (as Python's json.load does).
	for _, in := range []string{`{"a": 1} x`, `{"a": 1}}`, `{"a": 1},`, `{"a": 1} {}`, `{"a": 1} 2`, `{"a": 1} [`} {
		var e *Error
		if _, err := dups.ObjectMembers([]byte(in)); !errors.As(err, &e) || e.Problem != TrailingData {
			t.Errorf("%s: error %v, want TrailingData", in, err)
		}
	}
}

func TestKindIsNullCompact(t *testing.T) {
	for _, tc := range []struct {
		raw, kind string
		null      bool
	}{
		{`{"a": 1}`, "an object", false},
		{` [ ]`, "an array", false},
		{`"null"`, "a string", false},
		{`-1.5e3`, "a number", false},
		{`false`, "a boolean", false},
		{` null `, "null", true},
		{`  `, "empty", false},
	} {
		if got := Kind(json.RawMessage(tc.raw)); got != tc.kind {
			t.Errorf("Kind(%q) = %q, want %q", tc.raw, got, tc.kind)
		}
		if got := IsNull(json.RawMessage(tc.raw)); got != tc.null {
			t.Errorf("IsNull(%q) = %v, want %v", tc.raw, got, tc.null)
		}
	}
	for _, tc := range []struct {
		raw   string
		limit int
		want  string
	}{
		{`[ 1, 2,  3 ]`, 7, `[1,2,3]`},
		{`[ 1, 2,  3 ]`, 6, `[1,2,3...`},
		{`[ 1, 2,  3 ]`, 0, `...`},
		{`[ 1, 2,  3 ]`, -1, `[1,2,3]`},
		{`{"a" : tru`, 80, `{"a" : tru`},
	} {
		if got := Compact(json.RawMessage(tc.raw), tc.limit); got != tc.want {
			t.Errorf("Compact(%q, %d) = %q, want %q", tc.raw, tc.limit, got, tc.want)
		}
	}
}

// FuzzObjectMembers checks that ObjectMembers never panics, that every
// error is an *Error, and that an accepted object has unique keys whose
// values are valid JSON and agree with encoding/json.
func FuzzObjectMembers(f *testing.F) {
	for _, s := range []string{
		`{}`, `{"a": 1, "b": [true, null], "c": {"d": "e"}}`, `{"a": 1, "a": 2}`, `[]`, `null`, `1e999`,
		`{} {}`, `{} x`, `{"a": "\u0061", "\u0061": 1}`, `{"a":`, "{\"\xff\": 1}", ` {"x": {"x": {"x": 1}}} `,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		members, err := ObjectMembers(data)
		for _, o := range []Options{{AllowDuplicates: true}} {
			relaxed, rerr := o.ObjectMembers(data)
			if err == nil && (rerr != nil || len(relaxed) != len(members)) {
				t.Fatalf("options %+v refuse or change what the strict walk accepts: %v", o, rerr)
			}
		}
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Problem < NotJSON || e.Problem > TrailingData {
				t.Fatalf("error %v (%T) is not a jsonx *Error", err, err)
			}
			return
		}
		seen := map[string]bool{}
		for _, m := range members {
			if seen[m.Key] {
				t.Fatalf("accepted duplicate key %q", m.Key)
			}
			seen[m.Key] = true
			if !json.Valid(m.Val) {
				t.Fatalf("value of %q is not valid JSON: %q", m.Key, m.Val)
			}
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(data, &obj); err != nil {
			t.Fatalf("accepted what encoding/json refuses: %v", err)
		}
		if len(obj) != len(members) {
			t.Fatalf("%d members, encoding/json sees %d", len(members), len(obj))
		}
	})
}
