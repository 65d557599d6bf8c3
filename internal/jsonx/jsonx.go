// Package jsonx walks JSON objects strictly: it splits an object into its
// members in file order with a json.Decoder token walk, so that repeated
// keys, which encoding/json silently collapses to the last one, can be
// refused, and it names and shortens JSON values for error messages.
//
// It is shared by the safetensors header parser and the PEFT adapter config
// parser; each wraps the errors returned here with its own sentinel and
// names the file and the field.
package jsonx

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Member is one key/value pair of a JSON object, in file order.
type Member struct {
	// Key is the member's decoded key.
	Key string
	// Val is the member's value exactly as written (whitespace aside).
	Val json.RawMessage
}

// Problem says what ObjectMembers found wrong with its input.
type Problem int

// The problems ObjectMembers reports.
const (
	// NotJSON: the input is not valid JSON (Err says why).
	NotJSON Problem = iota + 1
	// NotObject: the input is a JSON value other than an object (Kind
	// names it).
	NotObject
	// BadValue: the value of member Key is not valid JSON (Err says why).
	BadValue
	// DuplicateKey: the key Key occurs twice.
	DuplicateKey
	// TrailingData: something follows the object (Err shows what).
	TrailingData
)

// Error is the error ObjectMembers returns. Its message is plain (no file
// or field names, no sentinel): callers wrap it, or format their own
// message from the fields.
type Error struct {
	// Problem says what is wrong.
	Problem Problem
	// Key is the member concerned, for BadValue and DuplicateKey.
	Key string
	// Kind names the value found, as Kind does, for NotObject.
	Kind string
	// Err is the decoder's error for NotJSON and BadValue, and for
	// TrailingData the decoder's error or the token found after the object.
	Err error
}

// Error returns the plain message, for example `duplicate key "a"`.
func (e *Error) Error() string {
	switch e.Problem {
	case NotJSON:
		return fmt.Sprintf("not valid JSON: %v", e.Err)
	case NotObject:
		return fmt.Sprintf("is %s, want a JSON object", e.Kind)
	case BadValue:
		return fmt.Sprintf("value of %q is not valid JSON: %v", e.Key, e.Err)
	case DuplicateKey:
		return fmt.Sprintf("duplicate key %q", e.Key)
	case TrailingData:
		return fmt.Sprintf("data after the JSON object: %v", e.Err)
	}
	return fmt.Sprintf("jsonx problem %d: %v", int(e.Problem), e.Err)
}

// Unwrap returns the decoder error, if any.
func (e *Error) Unwrap() error { return e.Err }

// Options relax the checks of ObjectMembers. The zero value is strict.
type Options struct {
	// AllowDuplicates keeps every occurrence of a repeated key, in file
	// order, instead of refusing the object (Python's json.loads keeps the
	// last value of a repeated key, in the place of the first).
	AllowDuplicates bool
}

// ObjectMembers splits data, which must be exactly one JSON object, into its
// members in file order, refusing repeated keys and anything after the
// object. Errors are *Error.
func ObjectMembers(data []byte) ([]Member, error) {
	return Options{}.ObjectMembers(data)
}

// ObjectMembers is the package-level ObjectMembers with the checks that o
// relaxes.
func (o Options) ObjectMembers(data []byte) ([]Member, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber() // a number too large for a float64 is still a number
	tok, err := dec.Token()
	if err != nil {
		return nil, &Error{Problem: NotJSON, Err: err}
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, &Error{Problem: NotObject, Kind: tokenKind(tok)}
	}
	var out []Member
	var seen map[string]struct{}
	if !o.AllowDuplicates {
		seen = make(map[string]struct{})
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, &Error{Problem: NotJSON, Err: err}
		}
		key, ok := tok.(string)
		if !ok { // the decoder refuses non-string keys itself
			return nil, &Error{Problem: NotJSON, Err: fmt.Errorf("object key %v", tok)}
		}
		var val json.RawMessage
		if err := dec.Decode(&val); err != nil {
			return nil, &Error{Problem: BadValue, Key: key, Err: err}
		}
		if seen != nil {
			if _, dup := seen[key]; dup {
				return nil, &Error{Problem: DuplicateKey, Key: key}
			}
			seen[key] = struct{}{}
		}
		out = append(out, Member{Key: key, Val: val})
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return nil, &Error{Problem: NotJSON, Err: err}
	}
	switch tok, err := dec.Token(); {
	case err == io.EOF:
	case err == nil:
		return nil, &Error{Problem: TrailingData, Err: errors.New(fmt.Sprint(tok))}
	default:
		return nil, &Error{Problem: TrailingData, Err: err}
	}
	return out, nil
}

// tokenKind names the JSON kind of a decoder token, as Kind does.
func tokenKind(tok json.Token) string {
	switch t := tok.(type) {
	case json.Delim:
		if t == '[' {
			return "an array"
		}
		return "an object"
	case string:
		return "a string"
	case json.Number, float64:
		return "a number"
	case bool:
		return "a boolean"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%T", tok)
}

// Kind names the JSON kind of a raw value for messages: "an object", "an
// array", "a string", "a number", "a boolean", "null", or "empty" when raw is
// only white space. It looks at the first byte only; raw is assumed valid.
func Kind(raw json.RawMessage) string {
	s := bytes.TrimSpace(raw)
	if len(s) == 0 {
		return "empty"
	}
	switch s[0] {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

// IsNull reports whether raw is the JSON null (surrounding white space
// aside).
func IsNull(raw json.RawMessage) bool {
	return bytes.Equal(bytes.TrimSpace(raw), []byte("null"))
}

// Compact returns raw without insignificant white space (raw as is when it
// is not valid JSON), cut to its first limit bytes followed by "..." when
// it is longer than limit bytes (a negative limit never cuts). It is meant
// for messages.
func Compact(raw json.RawMessage, limit int) string {
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		b.Reset()
		b.Write(raw)
	}
	s := b.String()
	if limit >= 0 && len(s) > limit {
		s = s[:limit] + "..."
	}
	return s
}
