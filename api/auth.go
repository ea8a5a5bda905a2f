package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/labstack/echo/v4"
)

// Permissions a token grants.
const (
	PermRead  = "read"
	PermWrite = "write"
)

// anyRoom in a token's room claim grants every room.
const anyRoom = "*"

// maxTokenBytes bounds what the parser is given.
const maxTokenBytes = 4096

// Auth checks access tokens: HS256 JWTs whose claims name the room (or
// "*"), the permissions ("read", "write") and an expiry:
//
//	{"room": "r1", "perm": ["read", "write"], "exp": 1767225600}
//
// perm may also be one comma-separated string. A nil *Auth means auth is
// off: room names are capabilities.
type Auth struct {
	secret []byte // static after NewAuth
}

// MinSecretBytes is the shortest secret NewAuth accepts.
const MinSecretBytes = 16

// NewAuth makes an Auth over a shared secret.
func NewAuth(secret []byte) (*Auth, error) {
	if len(secret) < MinSecretBytes {
		return nil, fmt.Errorf("auth secret of %d bytes: want at least %d", len(secret), MinSecretBytes)
	}
	return &Auth{secret: secret}, nil
}

// tokenClaims are the claims of a sigbase token.
type tokenClaims struct {
	Room string    `json:"room"`
	Perm permClaim `json:"perm"`
	jwt.RegisteredClaims
}

// permClaim reads ["read","write"] or "read,write".
type permClaim []string

func (p *permClaim) UnmarshalJSON(b []byte) error {
	var list []string
	if err := json.Unmarshal(b, &list); err == nil {
		*p = list
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return errors.New(`perm must be a list or a comma-separated string`)
	}
	*p = strings.Split(s, ",")
	return nil
}

// Mint makes a token for a room ("*" for all) with permissions, valid for ttl.
func (a *Auth) Mint(room string, perms []string, ttl time.Duration) (string, error) {
	for _, p := range perms {
		if p != PermRead && p != PermWrite {
			return "", fmt.Errorf("unknown permission %q: want read or write", p)
		}
	}
	if ttl <= 0 {
		return "", errors.New("a token needs a positive lifetime")
	}
	claims := tokenClaims{Room: room, Perm: perms, RegisteredClaims: jwt.RegisteredClaims{
		ExpiresAt: jwt.NewNumericDate(time.Now().Add(ttl)),
		IssuedAt:  jwt.NewNumericDate(time.Now()),
	}}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(a.secret)
}

// grant is what a checked token allows, and until when.
type grant struct {
	room    string
	perms   []string
	expires time.Time
}

// check validates the request's token for a room ("" for requests that
// name none, such as /ice-servers) and a permission. 401: no token, or
// one that is malformed, forged or expired; 403: a valid token that does
// not cover this room or permission.
func (a *Auth) check(r *http.Request, room, perm string) (grant, error) {
	raw := bearer(r)
	if raw == "" {
		return grant{}, unauthorized("a token is required: Authorization: Bearer <token> or ?auth=<token>")
	}
	if len(raw) > maxTokenBytes {
		return grant{}, unauthorized("token too long")
	}
	var claims tokenClaims
	_, err := jwt.ParseWithClaims(raw, &claims, func(*jwt.Token) (any, error) { return a.secret, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}), jwt.WithExpirationRequired())
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return grant{}, unauthorized("token expired")
	case err != nil:
		return grant{}, unauthorized("invalid token")
	}
	g := grant{room: claims.Room, perms: claims.Perm, expires: claims.ExpiresAt.Time}
	if room != "" && g.room != anyRoom && g.room != room {
		return grant{}, &apiError{status: http.StatusForbidden, msg: "token is not valid for this room"}
	}
	if perm == "metrics" {
		if g.room != anyRoom {
			return grant{}, &apiError{status: http.StatusForbidden, msg: `metrics need a token for room "*"`}
		}
		perm = PermRead
	}
	if !slices.Contains(g.perms, perm) {
		return grant{}, &apiError{status: http.StatusForbidden, msg: "token does not grant " + perm}
	}
	return g, nil
}

// bearer takes the token from Authorization: Bearer, or from ?auth= (which
// EventSource needs, since it cannot send headers), or from ?access_token=
// (where some Firebase clients put theirs).
func bearer(r *http.Request) string {
	if h := r.Header.Get(echo.HeaderAuthorization); h != "" {
		scheme, token, ok := strings.Cut(h, " ")
		if ok && strings.EqualFold(scheme, "Bearer") {
			return strings.TrimSpace(token)
		}
		return ""
	}
	if t := r.URL.Query().Get("auth"); t != "" {
		return t
	}
	return r.URL.Query().Get("access_token")
}

func unauthorized(msg string) error {
	return &apiError{status: http.StatusUnauthorized, msg: msg}
}

// authorize checks a request when auth is on; with auth off it allows all.
func authorize(c echo.Context, a *Auth, room, perm string) (grant, error) {
	if a == nil {
		return grant{}, nil
	}
	return a.check(c.Request(), room, perm)
}

// requireToken guards routes that name no room (/ice-servers, /metrics).
func requireToken(a *Auth, perm string) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if _, err := authorize(c, a, "", perm); err != nil {
				return err
			}
			return next(c)
		}
	}
}
