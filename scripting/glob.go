package scripting

import "unicode/utf8"

// globMatch reports whether key matches a hook pattern: '*' matches any
// run of characters, '/' included, and '?' exactly one character (a UTF-8
// rune, so "?" matches "é"). Every other character matches itself.
//
// It is the classic iterative wildcard match: on a mismatch it backtracks
// only to the most recent '*', so it runs in O(len(pattern)·len(key)) at
// worst and never recurses.
func globMatch(pattern, key string) bool {
	p, k := 0, 0
	starP, starK := -1, 0
	for k < len(key) {
		if p < len(pattern) {
			switch c := pattern[p]; c {
			case '*':
				starP, starK = p, k
				p++
				continue
			case '?':
				_, n := utf8.DecodeRuneInString(key[k:])
				p++
				k += n
				continue
			default:
				if c == key[k] {
					p++
					k++
					continue
				}
			}
		}
		if starP < 0 {
			return false
		}
		// Let the last '*' swallow one more character and retry.
		_, n := utf8.DecodeRuneInString(key[starK:])
		starK += n
		p, k = starP+1, starK
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}
