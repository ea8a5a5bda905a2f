package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"regexp"
	"strconv"
	"time"

	"github.com/sigbase/sigbase/store"
)

// A request's query string is checked against docs/API.md "Firebase REST
// query parameters": what is supported is parsed, what is ignored on purpose
// is checked for form, and anything else is a 400 that names it, never
// silently ignored.

// requestKind is what a request does, which decides the parameters it takes.
type requestKind int

const (
	kindRead requestKind = iota
	kindWatch
	kindWrite
)

// params are the parsed parameters of a request.
type params struct {
	pretty, silent bool
	shallow        bool
	query          store.Query
}

// paramKinds lists the parameters sigbase takes and where.
var paramKinds = map[string][]requestKind{
	"print":          {kindRead, kindWatch, kindWrite},
	"auth":           {kindRead, kindWatch, kindWrite},
	"access_token":   {kindRead, kindWatch, kindWrite},
	"ns":             {kindRead, kindWatch, kindWrite},
	"format":         {kindRead, kindWatch, kindWrite},
	"timeout":        {kindRead, kindWatch, kindWrite},
	"writeSizeLimit": {kindRead, kindWatch, kindWrite},
	"shallow":        {kindRead},
	"orderBy":        {kindRead, kindWatch},
	"limitToFirst":   {kindRead, kindWatch},
	"limitToLast":    {kindRead, kindWatch},
	"startAt":        {kindRead, kindWatch},
	"endAt":          {kindRead, kindWatch},
	"equalTo":        {kindRead, kindWatch},
	"last_event_id":  {kindWatch},
	"session":        {kindWatch},
	"ondisconnect":   {kindWatch},
}

// refusedParams are Firebase parameters sigbase refuses on purpose.
var refusedParams = map[string]string{
	"callback":               "JSONP is not served (it would let any site read a room); use CORS",
	"download":               "rooms are not served as files",
	"auth_variable_override": "sigbase has no security rules; scope access with a sigbase token",
}

var kindNames = map[requestKind]string{kindRead: "reads", kindWatch: "watches", kindWrite: "writes"}

// timeoutParam is Firebase's form: a positive number with ms, s or min.
var timeoutParam = regexp.MustCompile(`^([0-9]+)(ms|s|min)$`)

func parseParams(r *http.Request, at store.Path, kind requestKind) (params, error) {
	var p params
	if r.URL.RawQuery == "" {
		return p, nil // most requests: no map to build
	}
	values := r.URL.Query()
	for name, vs := range values {
		if why, ok := refusedParams[name]; ok {
			return p, badRequest("query parameter " + strconv.Quote(name) + " is not supported: " + why)
		}
		kinds, known := paramKinds[name]
		if !known {
			return p, badRequest("unknown query parameter " + strconv.Quote(clipParam(name)) + " (docs/API.md lists the supported ones)")
		}
		if !hasKind(kinds, kind) {
			return p, badRequest("query parameter " + strconv.Quote(name) + " does not apply to " + kindNames[kind])
		}
		if len(vs) > 1 && name != "ondisconnect" {
			return p, badRequest("query parameter " + strconv.Quote(name) + " given more than once")
		}
	}
	get := func(name string) (string, bool) {
		vs, ok := values[name]
		if !ok {
			return "", false
		}
		return vs[0], true
	}
	if v, ok := get("print"); ok {
		switch v {
		case "pretty":
			p.pretty = true
		case "silent":
			p.silent = true
		default:
			return p, badRequest(`print must be "pretty" or "silent"`)
		}
	}
	if v, ok := get("format"); ok && v != "export" {
		return p, badRequest(`format must be "export"`)
	}
	if v, ok := get("timeout"); ok && !validTimeout(v) {
		return p, badRequest(`timeout must be a positive number with ms, s or min, at most 15min (e.g. "10s")`)
	}
	if v, ok := get("writeSizeLimit"); ok {
		switch v {
		case "tiny", "small", "medium", "large", "unlimited":
		default:
			return p, badRequest(`writeSizeLimit must be tiny, small, medium, large or unlimited`)
		}
	}
	if v, ok := get("shallow"); ok {
		switch v {
		case "true":
			p.shallow = true
		case "false":
		default:
			return p, badRequest(`shallow must be true or false`)
		}
	}
	var err error
	if p.query, err = parseQuery(get); err != nil {
		return p, err
	}
	if !p.query.IsZero() {
		if err := p.query.Check(); err != nil {
			return p, err
		}
		if at.Depth() != 1 {
			return p, badRequest("invalid query: queries work on a key's children: /rooms/{room}/{key}")
		}
		if p.shallow {
			return p, badRequest("invalid query: shallow cannot be combined with orderBy, limits or bounds")
		}
	}
	return p, nil
}

func hasKind(kinds []requestKind, k requestKind) bool {
	for _, x := range kinds {
		if x == k {
			return true
		}
	}
	return false
}

func clipParam(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

func validTimeout(v string) bool {
	m := timeoutParam.FindStringSubmatch(v)
	if m == nil {
		return false
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil || n <= 0 {
		return false
	}
	unit := map[string]time.Duration{"ms": time.Millisecond, "s": time.Second, "min": time.Minute}[m[2]]
	return n <= int64(15*time.Minute/unit)
}

// parseQuery reads orderBy and its filters; values are JSON, as in
// Firebase (orderBy="$key", startAt="b", limitToFirst=2).
func parseQuery(get func(string) (string, bool)) (store.Query, error) {
	var q store.Query
	if v, ok := get("orderBy"); ok {
		if err := json.Unmarshal([]byte(v), &q.OrderBy); err != nil || q.OrderBy == "" {
			return q, badRequest(`invalid query: orderBy must be a JSON string: "$key", "$value" or "<child>" (quotes included)`)
		}
	}
	limit := func(name string, n *int) error {
		v, ok := get(name)
		if !ok {
			return nil
		}
		i, err := strconv.Atoi(v)
		if err != nil || i <= 0 {
			return badRequest("invalid query: " + name + " must be a positive integer")
		}
		*n = i
		return nil
	}
	if err := limit("limitToFirst", &q.LimitToFirst); err != nil {
		return q, err
	}
	if err := limit("limitToLast", &q.LimitToLast); err != nil {
		return q, err
	}
	for name, dst := range map[string]*[]byte{"startAt": &q.StartAt, "endAt": &q.EndAt, "equalTo": &q.EqualTo} {
		v, ok := get(name)
		if !ok {
			continue
		}
		var buf bytes.Buffer
		if err := json.Compact(&buf, []byte(v)); err != nil || buf.Len() == 0 || buf.Bytes()[0] == '{' || buf.Bytes()[0] == '[' {
			return q, badRequest("invalid query: " + name + " must be a JSON string, number, boolean or null (strings in quotes)")
		}
		*dst = buf.Bytes()
	}
	return q, nil
}
