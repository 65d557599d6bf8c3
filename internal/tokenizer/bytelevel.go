package tokenizer

import "unicode/utf8"

// byteToRune and runeToByte are GPT-2's byte-to-unicode tables: printable
// Latin-1 bytes stand for themselves, the other 68 bytes for U+0100 on.
var (
	byteToRune [256]rune
	runeToByte = make(map[rune]byte, 256)
)

func init() {
	n := rune(0)
	for b := 0; b < 256; b++ {
		if (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF) {
			byteToRune[b] = rune(b)
		} else {
			byteToRune[b] = 256 + n
			n++
		}
		runeToByte[byteToRune[b]] = byte(b)
	}
}

// byteLevelDecode maps a token spelled in byte-level characters back to raw
// bytes. ok is false when some character is outside the table (or the token
// is not valid UTF-8); the Hugging Face ByteLevel decoder then keeps the
// token's own bytes.
func byteLevelDecode(tok string) (raw string, ok bool) {
	buf := make([]byte, 0, len(tok))
	for i := 0; i < len(tok); {
		r, size := utf8.DecodeRuneInString(tok[i:])
		if r == utf8.RuneError && size <= 1 {
			return "", false
		}
		b, found := runeToByte[r]
		if !found {
			return "", false
		}
		buf = append(buf, b)
		i += size
	}
	return string(buf), true
}

// decodeToken is what the ByteLevel decoder makes of one token.
func decodeToken(tok string) string {
	if raw, ok := byteLevelDecode(tok); ok {
		return raw
	}
	return tok
}
