package main

import (
	"fmt"
	"strings"
)

// The installer edits config.toml as text, so that every comment and every other setting stays
// byte for byte. To do that safely it still has to know where each table and key is: a table must
// never be defined twice, and a "[header]" inside a multi-line string is not a header. scan is a
// small TOML structure scanner: it tracks table headers and key definitions with their full
// paths and byte offsets, and skips over values (strings, arrays, inline tables, scalars) without
// interpreting more than it needs to. It rejects what it cannot follow, such as a file that ends
// inside a multi-line string or array.

// header is a "[table]" or "[[array.of.tables]]" line.
type header struct {
	path  []string
	array bool
	line  int
	end   int // offset just after the header line (after its newline, or len(src) at EOF)
}

// keyDef is one key definition, "a.b = value" in a table or inside an inline table.
type keyDef struct {
	path     []string // full path: table path + dotted key
	line     int
	valStart int // byte range of the value in the file
	valEnd   int
	str      *string // the decoded value when it is a string
	root     bool    // defined before any table header
	table    int     // length of the table path the key was defined in (a header's or an inline table's)
}

type document struct {
	headers []header
	keys    []keyDef
}

type scanner struct {
	src  []byte
	p    int
	line int
	doc  document
}

func scan(src []byte) (*document, error) {
	s := &scanner{src: src, line: 1}
	if err := s.run(); err != nil {
		return nil, err
	}
	return &s.doc, nil
}

func (s *scanner) errorf(format string, args ...any) error {
	return fmt.Errorf("line %d: %s", s.line, fmt.Sprintf(format, args...))
}

func (s *scanner) eof() bool { return s.p >= len(s.src) }

func (s *scanner) peek() byte {
	if s.eof() {
		return 0
	}
	return s.src[s.p]
}

func (s *scanner) hasPrefix(p string) bool { return strings.HasPrefix(string(s.src[s.p:]), p) }

// skipSpace skips spaces and tabs.
func (s *scanner) skipSpace() {
	for !s.eof() && (s.src[s.p] == ' ' || s.src[s.p] == '\t') {
		s.p++
	}
}

// skipComment skips a "#" comment up to (not including) the end of the line.
func (s *scanner) skipComment() {
	if s.peek() != '#' {
		return
	}
	for !s.eof() && s.src[s.p] != '\n' {
		s.p++
	}
}

// newline consumes "\n" or "\r\n"; it reports whether it did.
func (s *scanner) newline() bool {
	if s.hasPrefix("\r\n") {
		s.p += 2
	} else if s.peek() == '\n' {
		s.p++
	} else {
		return false
	}
	s.line++
	return true
}

// skipBlank skips whitespace, comments and newlines (inside arrays and between statements).
func (s *scanner) skipBlank() {
	for {
		s.skipSpace()
		s.skipComment()
		if !s.newline() {
			return
		}
	}
}

// endOfLine expects only whitespace and a comment before the end of the line or of the file.
func (s *scanner) endOfLine() error {
	s.skipSpace()
	s.skipComment()
	if s.eof() || s.newline() {
		return nil
	}
	return s.errorf("unexpected %q after a value or header", s.peek())
}

func (s *scanner) run() error {
	var table []string
	for {
		s.skipBlank()
		if s.eof() {
			return nil
		}
		if s.peek() == '[' {
			line := s.line
			s.p++
			array := s.peek() == '['
			if array {
				s.p++
			}
			s.skipSpace()
			path, err := s.key()
			if err != nil {
				return err
			}
			s.skipSpace()
			closing := "]"
			if array {
				closing = "]]"
			}
			if !s.hasPrefix(closing) {
				return s.errorf("table header not closed with %q", closing)
			}
			s.p += len(closing)
			if err := s.endOfLine(); err != nil {
				return err
			}
			s.doc.headers = append(s.doc.headers, header{path: path, array: array, line: line, end: s.p})
			table = path
			continue
		}
		if err := s.keyValue(table, len(s.doc.headers) == 0); err != nil {
			return err
		}
		if err := s.endOfLine(); err != nil {
			return err
		}
	}
}

// keyValue parses "key = value" and records it (and, for inline tables, the keys inside).
func (s *scanner) keyValue(table []string, root bool) error {
	line := s.line
	k, err := s.key()
	if err != nil {
		return err
	}
	s.skipSpace()
	if s.peek() != '=' {
		return s.errorf("expected '=' after key %q", strings.Join(k, "."))
	}
	s.p++
	s.skipSpace()
	full := append(append([]string{}, table...), k...)
	start := s.p
	str, err := s.value(full, root)
	if err != nil {
		return err
	}
	s.doc.keys = append(s.doc.keys, keyDef{path: full, line: line, valStart: start, valEnd: s.p, str: str, root: root, table: len(table)})
	return nil
}

// key parses a dotted key: simple keys separated by dots, with optional spaces around the dots.
func (s *scanner) key() ([]string, error) {
	var path []string
	for {
		part, err := s.simpleKey()
		if err != nil {
			return nil, err
		}
		path = append(path, part)
		save := s.p
		s.skipSpace()
		if s.peek() != '.' {
			s.p = save
			return path, nil
		}
		s.p++
		s.skipSpace()
	}
}

func isBare(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

func (s *scanner) simpleKey() (string, error) {
	switch c := s.peek(); {
	case c == '"' && !s.hasPrefix(`"""`):
		return s.basicString()
	case c == '\'' && !s.hasPrefix(`'''`):
		return s.literalString()
	case isBare(c):
		start := s.p
		for !s.eof() && isBare(s.src[s.p]) {
			s.p++
		}
		return string(s.src[start:s.p]), nil
	case s.eof():
		return "", s.errorf("expected a key at the end of the file")
	default:
		return "", s.errorf("expected a key, found %q", c)
	}
}

// basicString parses a single-line "..." string and decodes its escapes.
func (s *scanner) basicString() (string, error) {
	s.p++ // opening quote
	var b strings.Builder
	for {
		if s.eof() || s.src[s.p] == '\n' || s.src[s.p] == '\r' {
			return "", s.errorf("unterminated string")
		}
		c := s.src[s.p]
		s.p++
		switch c {
		case '"':
			return b.String(), nil
		case '\\':
			if s.eof() {
				return "", s.errorf("unterminated string")
			}
			e := s.src[s.p]
			s.p++
			switch e {
			case 'b':
				b.WriteByte('\b')
			case 't':
				b.WriteByte('\t')
			case 'n':
				b.WriteByte('\n')
			case 'f':
				b.WriteByte('\f')
			case 'r':
				b.WriteByte('\r')
			case 'e':
				b.WriteByte(0x1b)
			case '"', '\\':
				b.WriteByte(e)
			case 'u', 'U', 'x':
				n := map[byte]int{'x': 2, 'u': 4, 'U': 8}[e]
				if s.p+n > len(s.src) {
					return "", s.errorf("bad escape in string")
				}
				var r rune
				if _, err := fmt.Sscanf(string(s.src[s.p:s.p+n]), "%x", &r); err != nil {
					return "", s.errorf("bad escape in string")
				}
				b.WriteRune(r)
				s.p += n
			default:
				return "", s.errorf("bad escape \\%c in string", e)
			}
		default:
			b.WriteByte(c)
		}
	}
}

// literalString parses a single-line '...' string.
func (s *scanner) literalString() (string, error) {
	s.p++
	start := s.p
	for {
		if s.eof() || s.src[s.p] == '\n' || s.src[s.p] == '\r' {
			return "", s.errorf("unterminated string")
		}
		if s.src[s.p] == '\'' {
			v := string(s.src[start:s.p])
			s.p++
			return v, nil
		}
		s.p++
	}
}

// multiline skips a """...""" or ”'...”' string; it does not decode it.
func (s *scanner) multiline(delim string) error {
	line := s.line
	s.p += 3
	for {
		if s.eof() {
			return fmt.Errorf("line %d: the file ends inside a multi-line string", line)
		}
		if s.newline() {
			continue
		}
		if delim == `"""` && s.src[s.p] == '\\' {
			s.p++
			if !s.newline() {
				s.p++
			}
			continue
		}
		if s.hasPrefix(delim) {
			s.p += 3
			// Up to two quotes right before the delimiter belong to the string.
			for i := 0; i < 2 && s.peek() == delim[0]; i++ {
				s.p++
			}
			return nil
		}
		s.p++
	}
}

// value skips one value. Keys inside an inline table are recorded under path. It returns the
// decoded string for single-line strings.
func (s *scanner) value(path []string, root bool) (*string, error) {
	switch c := s.peek(); {
	case s.hasPrefix(`"""`):
		return nil, s.multiline(`"""`)
	case s.hasPrefix(`'''`):
		return nil, s.multiline(`'''`)
	case c == '"':
		v, err := s.basicString()
		return &v, err
	case c == '\'':
		v, err := s.literalString()
		return &v, err
	case c == '[':
		// Elements are not addressable by key path; inline tables inside arrays are scanned
		// (for syntax) under a path no lookup uses.
		return nil, s.sequence(']', "an array", "array", func() error {
			_, err := s.value(append(append([]string{}, path...), "[]"), false)
			return err
		})
	case c == '{':
		return nil, s.sequence('}', "an inline table", "inline table", func() error {
			return s.keyValue(path, root)
		})
	default:
		return nil, s.scalar(c)
	}
}

// sequence skips an array or an inline table, whose opening bracket is at s.p: elements read by
// element, separated by commas (a trailing one allowed), up to closer. Newlines and comments may
// stand between elements (TOML 1.1 allows them in inline tables too; they are accepted). what
// names the sequence in the error for a file that ends inside it ("an array"), name in the error
// for a bad separator ("array").
func (s *scanner) sequence(closer byte, what, name string, element func() error) error {
	line := s.line
	s.p++
	for {
		s.skipBlank()
		if s.eof() {
			return fmt.Errorf("line %d: the file ends inside %s", line, what)
		}
		if s.peek() == closer {
			s.p++
			return nil
		}
		if err := element(); err != nil {
			return err
		}
		s.skipBlank()
		if s.peek() == ',' {
			s.p++
		} else if s.peek() != closer {
			if s.eof() {
				return fmt.Errorf("line %d: the file ends inside %s", line, what)
			}
			return s.errorf("expected ',' or '%c' in %s, found %q", closer, name, s.peek())
		}
	}
}

// scalar skips a number, boolean or date-time, whose first byte is c: everything up to a
// delimiter. It is not checked further than that it is not empty.
func (s *scanner) scalar(c byte) error {
	start := s.p
	s.skipScalar()
	// "1979-05-27 07:32:00": a date and a time separated by one space.
	if s.p-start == 10 && s.hasPrefix(" ") && s.p+1 < len(s.src) && s.src[s.p+1] >= '0' && s.src[s.p+1] <= '9' && s.src[start+4] == '-' {
		s.p++
		s.skipScalar()
	}
	if s.p == start {
		if s.eof() {
			return s.errorf("expected a value at the end of the file")
		}
		return s.errorf("expected a value, found %q", c)
	}
	return nil
}

// skipScalar moves past the bytes of a bare value, up to a space, a separator, a closing bracket,
// a comment or the end of the line.
func (s *scanner) skipScalar() {
	for !s.eof() && !strings.ContainsRune(" \t,]}#\r\n", rune(s.src[s.p])) {
		s.p++
	}
}
