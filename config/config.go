package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"
)

// Sentinel errors.
var (
	ErrBadDuration = errors.New("bad duration")
	ErrBadSize     = errors.New("bad size")
)

// Duration is a time.Duration written in TOML as a string such as "10s",
// "1m30s" or "250ms" (time.ParseDuration syntax), or as an integer number
// of seconds. The zero value means "use the section's default".
type Duration time.Duration

// UnmarshalText implements encoding.TextUnmarshaler for go-toml.
func (d *Duration) UnmarshalText(b []byte) error {
	s := string(bytes.TrimSpace(b))
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n < 0 || n > int64(1<<63-1)/int64(time.Second) {
			return &valueError{raw: s, err: fmt.Errorf("%w %q: want e.g. \"10s\" or \"250ms\"", ErrBadDuration, s)}
		}
		*d = Duration(time.Duration(n) * time.Second)
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return &valueError{raw: s, err: fmt.Errorf("%w %q: want e.g. \"10s\" or \"250ms\"", ErrBadDuration, s)}
	}
	*d = Duration(v)
	return nil
}

// UnmarshalTOML receives the raw TOML value, so that a bare integer
// (which go-toml would otherwise store as nanoseconds) means seconds.
func (d *Duration) UnmarshalTOML(b []byte) error {
	s := strings.TrimSpace(string(b))
	if n := len(s); n >= 2 && (s[0] == '"' && s[n-1] == '"' || s[0] == '\'' && s[n-1] == '\'') {
		s = s[1 : n-1]
	}
	return d.UnmarshalText([]byte(s))
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// Or returns d as a time.Duration, or def when d is zero.
func (d Duration) Or(def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return time.Duration(d)
}

// Size is a byte count written in TOML as an integer or a string with a
// binary suffix: "256KiB", "4MiB", "1GiB" (also "k", "m", "g", "KB"...,
// all powers of 1024). The zero value means "use the section's default".
type Size int64

// UnmarshalText implements encoding.TextUnmarshaler for go-toml.
func (s *Size) UnmarshalText(b []byte) error {
	t := strings.TrimSpace(string(b))
	mult := int64(1)
	lower := strings.ToLower(t)
	for _, u := range []struct {
		suf string
		m   int64
	}{{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"kb", 1 << 10}, {"mb", 1 << 20}, {"gb", 1 << 30}, {"k", 1 << 10}, {"m", 1 << 20}, {"g", 1 << 30}, {"b", 1}} {
		if strings.HasSuffix(lower, u.suf) {
			mult = u.m
			t = strings.TrimSpace(t[:len(t)-len(u.suf)])
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return fmt.Errorf("%w %q: want e.g. 65536 or \"256KiB\"", ErrBadSize, string(b))
	}
	*s = Size(n * mult)
	return nil
}

// MinTimeout is the shortest timeout a section accepts: below a
// millisecond a timeout only fails every request, which is surely a
// mistake (a missing unit is already refused: "30" is not a duration).
const MinTimeout = time.Millisecond

// CheckTimeouts returns an error naming the first of keys whose duration
// is set (non-zero) but under MinTimeout. keys and ds pair up.
func CheckTimeouts(section string, keys []string, ds ...Duration) error {
	for i, d := range ds {
		if d != 0 && time.Duration(d) < MinTimeout {
			return fmt.Errorf("%s.%s: must be at least %v (or absent for the default), got %v", section, keys[i], MinTimeout, time.Duration(d))
		}
	}
	return nil
}

// Or returns s as an int, or def when s is zero.
func (s Size) Or(def int) int {
	if s == 0 {
		return def
	}
	return int(s)
}

// Load decodes the TOML file at path into v (a pointer to a struct whose
// fields are the sections). Unknown keys are rejected with their path, as
// are values of the wrong type.
func Load(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return Decode(b, v)
}

// Decode is Load on bytes already read.
func Decode(b []byte, v any) error {
	d := toml.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	d.EnableUnmarshalerInterface()
	if err := d.Decode(v); err != nil {
		var sm *toml.StrictMissingError
		if errors.As(err, &sm) {
			keys := make([]string, 0, len(sm.Errors))
			for _, e := range sm.Errors {
				row, _ := e.Position()
				keys = append(keys, fmt.Sprintf("%s (line %d)", strings.Join(e.Key(), "."), row))
			}
			return fmt.Errorf("unknown key(s): %s", strings.Join(keys, ", "))
		}
		var ve *valueError
		if errors.As(err, &ve) {
			// go-toml does not say where an UnmarshalTOML error came
			// from: find the key that holds the value it refused.
			if k := keyOf(b, ve.raw); k != "" {
				return fmt.Errorf("%s: %w", k, ve.err)
			}
			return ve.err
		}
		var de *toml.DecodeError
		if errors.As(err, &de) {
			row, col := de.Position()
			msg := typeMismatch(de.Error())
			k := strings.Join(de.Key(), ".")
			if k != "" {
				return fmt.Errorf("line %d, column %d (%s): %s", row, col, k, msg)
			}
			return fmt.Errorf("line %d, column %d: %s", row, col, msg)
		}
		return err
	}
	return exactKeys(b, reflect.TypeOf(v))
}

// exactKeys reports a key that names a field only in another case. TOML
// keys are case-sensitive, but go-toml matches struct fields without
// regard to case, so "[RATE_LIMIT]" after "[rate_limit]" would silently
// override it, and "Listen" would pass for "listen".
func exactKeys(b []byte, t reflect.Type) error {
	var doc map[string]any
	if toml.Unmarshal(b, &doc) != nil {
		return nil // the typed decode has accepted it; nothing to add
	}
	return walkKeys(b, doc, t, "")
}

func walkKeys(b []byte, m map[string]any, t reflect.Type, prefix string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return nil
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		f, name, ok := tomlField(t, k)
		if !ok {
			continue // unknown: DisallowUnknownFields has its say
		}
		if name != k {
			at := ""
			if n := keyLine(b, k); n > 0 {
				at = fmt.Sprintf(" (line %d)", n)
			}
			return fmt.Errorf("%s%s%s: keys are case-sensitive; this one is %q", prefix, k, at, name)
		}
		if sub, ok := m[k].(map[string]any); ok {
			if err := walkKeys(b, sub, f.Type, prefix+k+"."); err != nil {
				return err
			}
		}
	}
	return nil
}

// keyLine returns the first line (from 1) that starts with key, as a key
// or a table header, or 0: a best guess for an error message.
func keyLine(b []byte, key string) int {
	for i, line := range bytes.Split(b, []byte("\n")) {
		rest, ok := bytes.CutPrefix(bytes.TrimLeft(line, " \t[\""), []byte(key))
		if ok && (len(rest) == 0 || bytes.IndexByte([]byte(" \t=.]\""), rest[0]) >= 0) {
			return i + 1
		}
	}
	return 0
}

// tomlField finds the field of struct t that go-toml decodes key into,
// ignoring case as go-toml does, and the key it is named by.
func tomlField(t reflect.Type, key string) (reflect.StructField, string, bool) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		if strings.EqualFold(name, key) {
			return f, name, true
		}
	}
	return reflect.StructField{}, "", false
}

// mismatchRE matches go-toml's wrong-type message, which names Go types:
// "toml: cannot decode TOML string into struct field
// ratelimit.Config.WindowSeconds of type int".
var mismatchRE = regexp.MustCompile(`cannot decode TOML ([\w ]+?) into (?:struct field \S+ of type |a Go value of type )?(\S+)`)

// typeMismatch rewrites go-toml's wrong-type message in TOML's terms
// ("want an integer, got a string"); other messages pass unchanged.
func typeMismatch(msg string) string {
	m := mismatchRE.FindStringSubmatch(msg)
	if m == nil {
		return msg
	}
	want := "a value of another type"
	switch t := strings.TrimPrefix(m[2], "*"); {
	case strings.HasPrefix(t, "int"), strings.HasPrefix(t, "uint"):
		want = "an integer"
	case strings.HasPrefix(t, "float"):
		want = "a number"
	case t == "bool":
		want = "true or false"
	case t == "string":
		want = "a string"
	case strings.HasPrefix(t, "[]"):
		want = "an array"
	case t == "config.Size":
		want = `an integer or a size such as "256KiB"`
	case t == "config.Duration":
		want = `a duration such as "10s", or an integer (seconds)`
	case strings.Contains(t, "."):
		want = "a table"
	}
	got := map[string]string{"string": "a string", "integer": "an integer", "float": "a number",
		"boolean": "true or false", "bool": "true or false", "array": "an array", "table": "a table",
		"inline table": "a table", "datetime": "a date-time", "local datetime": "a date-time",
		"local date": "a date", "local time": "a time"}[strings.ToLower(m[1])]
	if got == "" {
		got = "a " + m[1]
	}
	return fmt.Sprintf("want %s, got %s", want, got)
}

// valueError is a value a custom unmarshaler refused; raw is the value as
// written, without quotes.
type valueError struct {
	raw string
	err error
}

func (e *valueError) Error() string { return e.err.Error() }
func (e *valueError) Unwrap() error { return e.err }

// keyOf returns the dotted path of the first key in the TOML document b
// whose value, written as text, is raw; "" if there is none.
func keyOf(b []byte, raw string) string {
	var doc map[string]any
	if toml.Unmarshal(b, &doc) != nil {
		return ""
	}
	return findKey(doc, "", raw)
}

func findKey(m map[string]any, prefix, raw string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		path := k
		if prefix != "" {
			path = prefix + "." + k
		}
		switch v := m[k].(type) {
		case map[string]any:
			if p := findKey(v, path, raw); p != "" {
				return p
			}
		default:
			if strings.TrimSpace(fmt.Sprint(v)) == raw {
				return path
			}
		}
	}
	return ""
}
