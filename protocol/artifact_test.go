package protocol

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestRef(t *testing.T) {
	r := RefOf([]byte("abc"))
	const abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" // sha256("abc")
	if r.String() != abc {
		t.Fatalf("RefOf(abc) = %s", r)
	}
	p, err := ParseRef(abc)
	if err != nil || p != r {
		t.Fatalf("ParseRef: %v, %v", p, err)
	}
	j, err := json.Marshal(struct{ R Ref }{r})
	if err != nil || string(j) != `{"R":"`+abc+`"}` {
		t.Fatalf("json: %s, %v", j, err)
	}
	var back struct{ R Ref }
	if err := json.Unmarshal(j, &back); err != nil || back.R != r {
		t.Fatalf("json back: %v, %v", back.R, err)
	}
	if r.IsZero() || !(Ref{}).IsZero() {
		t.Fatal("IsZero")
	}
	for _, bad := range []string{"", abc[:63], abc + "0", strings.ToUpper(abc), "../" + abc[3:], abc[:63] + "g", abc[:62] + "\n0"} {
		_, err := ParseRef(bad)
		wantErr(t, err, ErrBadRef)
		if err := json.Unmarshal([]byte(`{"R":"`+strings.ReplaceAll(bad, "\n", `\n`)+`"}`), &back); err == nil {
			t.Fatalf("json accepted ref %q", bad)
		}
	}
}

func TestValidateJobID(t *testing.T) {
	for _, ok := range []string{"a", "0", "job-1", "j_2", strings.Repeat("x", MaxJobIDLen)} {
		if err := ValidateJobID(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "-a", "_a", "A", "a.b", "a b", "a/b", "a*", "a>", strings.Repeat("x", MaxJobIDLen+1), "é"} {
		wantErr(t, ValidateJobID(bad), ErrBadJobID)
	}
}

func TestKindAndCodecNames(t *testing.T) {
	for k, want := range map[Kind]string{KindRows: "rows", KindFactors: "factors", KindSequences: "sequences", KindPrompts: "prompts", KindFiles: "files", 0: "kind(0)", 6: "kind(6)"} {
		if k.String() != want || k.Valid() != !strings.HasPrefix(want, "kind(") {
			t.Errorf("kind %d: %q valid=%v", k, k, k.Valid())
		}
	}
	for c, want := range map[Codec]string{CodecRaw: "raw", CodecZstd: "zstd", CodecShuffle4Zstd: "shuffle4+zstd", 3: "codec(3)"} {
		if c.String() != want || c.Valid() != !strings.HasPrefix(want, "codec(") {
			t.Errorf("codec %d: %q valid=%v", c, c, c.Valid())
		}
	}
}
